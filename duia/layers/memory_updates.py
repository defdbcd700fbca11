"""What the memory layers (GHCA, the personalized memory) share: the update
rules of DUIA eq. 4-5 and 9-10, replica all-reduce, the training switch, and
non-trainable state weights that stay identical across replicas.
"""

from typing import Callable, Optional

import tensorflow as tf

UPDATE_RULES = ("gradient", "weighted_pull", "ema")


def memory_step(rule: str, targets: tf.Tensor, memory: tf.Tensor) -> tf.Tensor:
  """The per-row step `delta` of `memory <- memory + rate * mean(delta)`.

  For GHCA the targets are the queries `v` and the memory the centers `mu`
  (DUIA eq. 4-5); for UPBE the targets are the centers and the memory the
  personalized vectors `p` (eq. 9-10). With s = sigmoid(target . memory):

    "gradient":      -dL/dmemory = 2*s*(t - m) - s*(1 - s)*||t - m||^2 * t
    "weighted_pull": 2*s*(t - m)
    "ema":           t - m

  Args:
    rule: one of `UPDATE_RULES`.
    targets: [..., d], treated as constants.
    memory: [..., d], the values being moved.

  Returns:
    [..., d] steps.

  Raises:
    ValueError: for an unknown rule.
  """
  diff = targets - memory
  if rule == "ema":
    return diff
  sig = tf.sigmoid(tf.reduce_sum(targets * memory, axis=-1, keepdims=True))
  if rule == "weighted_pull":
    return 2.0 * sig * diff
  if rule == "gradient":
    sq_dist = tf.reduce_sum(tf.square(diff), axis=-1, keepdims=True)
    return 2.0 * sig * diff - sig * (1.0 - sig) * sq_dist * targets
  raise ValueError(f"update_rule must be one of {UPDATE_RULES}. Received: update_rule={rule!r}")


def all_reduce_sum(values):
  """Sums a nest of tensors over the replicas of a replica context (else no-op).

  Memory updates are computed from per-center (per-row) sums and counts, so
  summing them across replicas before the update gives every replica the same
  step as one device on the global batch (docs/design.md §8).
  """
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync <= 1:
    return values
  return ctx.all_reduce(tf.distribute.ReduceOp.SUM, values)


def when_training(layer: tf.keras.layers.Layer, training,
                  update: Callable[[Optional[tf.Tensor]], None]) -> None:
  """Runs `update(enabled)` iff `training` may be true and the layer is trainable.

  `training` may be None (= False), a Python bool or a boolean tensor. A
  non-constant tensor is passed on as `enabled`, which the update folds into
  its row masks instead of branching: an assign to a mirrored variable inside
  `tf.cond` in a replica context is not allowed (merge_call).
  """
  if not layer.trainable or training is None:
    return
  static = tf.get_static_value(training) if tf.is_tensor(training) else training
  if static is None:
    update(tf.cast(training, tf.bool))
  elif bool(static):
    update(None)


def state_weight(layer, name, shape, initializer="zeros", dtype=None):
  """A non-trainable weight whose replica-context assigns are mirrored.

  ONLY_FIRST_REPLICA: an assign inside `strategy.run` takes the first replica's
  value and broadcasts it, so the copies never drift; updates are all-reduced
  beforehand (`all_reduce_sum`) so that value already covers every replica.
  """
  return layer.add_weight(
      name=name, shape=shape, dtype=dtype, initializer=initializer, trainable=False,
      synchronization=tf.VariableSynchronization.ON_WRITE,
      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
