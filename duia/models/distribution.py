"""Distributed training: the tf.distribute strategy a Trainer run builds under.

The strategy is named in the pipeline's runtime config and reaches `run_fn`
through the Trainer's custom_config under `CONFIG_KEY`:

  "none"                   the default strategy (one device);
  "mirrored"               `MirroredStrategy` over this machine's devices
                           (GPUs, else the CPU);
  "multi_worker_mirrored"  `MultiWorkerMirroredStrategy`, cluster from TF_CONFIG
                           (as Kubeflow's TFJob and Vertex AI set it).

Under a strategy with several replicas, every replica's gradients are summed
(`apply_gradients` all-reduces), so a replica's loss must be its share of the
global-batch mean: `scale_loss` divides by the number of replicas, as Keras's
own `compile()` losses do (TFRS tasks do not). The DUIA memories all-reduce
their per-center sums (`layers.memory_updates.all_reduce_sum`), so their updates equal
one device's on the global batch when every row takes part
(`duia.sample_rate` 1); with row sampling or re-seeding each replica draws
from its own rows, and the replicas' copies stay identical all the same.
"""

import tensorflow as tf

CONFIG_KEY = "distribution_strategy"
STRATEGIES = ("none", "mirrored", "multi_worker_mirrored")


def check_name(name: str) -> str:
  """Returns `name` if it is a known strategy; raises ValueError naming the choices."""
  if name not in STRATEGIES:
    raise ValueError(f"distribution strategy must be one of {STRATEGIES}. Received: {name!r}")
  return name


def make_strategy(name: str = "none") -> tf.distribute.Strategy:
  """The strategy called `name` (see module doc).

  Args:
    name: one of `STRATEGIES`.

  Returns:
    A tf.distribute.Strategy; "none" gives the default (no-op) strategy.
  """
  check_name(name)
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker_mirrored":
    return tf.distribute.MultiWorkerMirroredStrategy()
  return tf.distribute.get_strategy()


def scale_loss(loss: tf.Tensor) -> tf.Tensor:
  """A replica's share of a loss averaged over its local batch.

  Exact for equal per-replica batches (what `experimental_distribute_dataset`
  gives for a global batch divisible by the replica count).
  """
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync <= 1:
    return loss
  return loss / tf.cast(ctx.num_replicas_in_sync, loss.dtype)
