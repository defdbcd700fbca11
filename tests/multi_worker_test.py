"""Training under MultiWorkerMirroredStrategy: two worker processes on loopback ports.

Each worker is this file run as a script with its own TF_CONFIG (the cluster
of both, its own index), as Kubeflow's TFJob or Vertex AI would start them; it
trains the DUIA ranker on its share of four batches with `distribution.make_strategy(
"multi_worker_mirrored")` and prints its weights as JSON. Both workers must end
with the same GHCA centres (and every other weight), and the centres must have
moved: the memories' updates are all-reduced across workers, not kept per
process.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

# Not in `make test-fast`: two worker processes training under MultiWorkerMirroredStrategy.
pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH, TABLE_SIZE, BATCHES = 32, 40, 4


def _train_worker() -> dict:
  """One worker's run (TF_CONFIG set by the test); its weights by name."""
  import duia  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  from duia.models import distribution  # pylint: disable=g-import-not-at-top
  # The strategy first: collective ops must be configured before TensorFlow runs anything.
  strategy = distribution.make_strategy("multi_worker_mirrored")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from duia.models import autograph_rules  # pylint: disable=g-import-not-at-top
  from duia.models import config as config_lib  # pylint: disable=g-import-not-at-top
  from duia.models import duia_ranker  # pylint: disable=g-import-not-at-top
  from duia.models import inputs as inputs_lib  # pylint: disable=g-import-not-at-top
  from tests import model_fixtures  # pylint: disable=g-import-not-at-top
  autograph_rules.skip_tf_keras_conversion()
  tf.keras.utils.set_random_seed(7)  # the same initial weights on both workers

  batches = [model_fixtures.transformed_batch(BATCH, TABLE_SIZE, seed)
             for seed in range(BATCHES)]
  config = config_lib.preset("tiny", {
      "duia": {"variant": "duia", "user_level1": 4, "user_children": 2,
               "item_level1": 4, "item_children": 2, "memory_dim": 8, "sample_rate": 0.5},
      "features": {"user_id_buckets": TABLE_SIZE, "item_id_buckets": TABLE_SIZE}})
  with strategy.scope():
    model = duia_ranker.build_ranker(config, {t: TABLE_SIZE for t in inputs_lib.TABLES})
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    model(batches[0][0])  # create the variables
  before = {w.name: w.numpy() for w in model.weights}
  dataset = tf.data.Dataset.from_tensor_slices(
      tf.nest.map_structure(lambda *t: tf.stack(t), *batches))
  options = tf.data.Options()
  # Worker i takes batches i, i + 2, ...: the workers train on different rows,
  # so only all-reduced updates can leave their memories equal.
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  model.fit(dataset.with_options(options), epochs=1, verbose=0)
  after = {w.name: w.numpy() for w in model.weights}
  return {"replicas": strategy.num_replicas_in_sync,
          "weights": {name: value.tolist() for name, value in after.items()},
          "moved": {name: bool(np.any(after[name] != before[name])) for name in after}}


def _free_ports(count: int):
  """`count` distinct free loopback ports (held open together, so no repeats)."""
  sockets = [socket.socket() for _ in range(count)]
  try:
    for s in sockets:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


@pytest.fixture(scope="module")
def workers():
  cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
  procs = []
  for index in range(2):
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
               TF_CONFIG=json.dumps({"cluster": cluster,
                                     "task": {"type": "worker", "index": index}}))
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")])
    procs.append(subprocess.Popen([sys.executable, os.path.abspath(__file__)], env=env,
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True))
  results = []
  try:
    for proc in procs:
      # A guard against a hang (a worker waiting for its peer), not a time limit.
      out, err = proc.communicate(timeout=900)
      assert proc.returncode == 0, err[-3000:]
      results.append(json.loads(out.strip().splitlines()[-1]))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  return results


def test_both_workers_end_with_the_same_ghca_centres(workers):
  first, second = workers
  assert first["replicas"] == second["replicas"] == 2
  centres = [name for name in first["weights"] if "centers" in name]
  assert centres and any("user_ghca" in n for n in centres) and any(
      "item_ghca" in n for n in centres)
  for name in centres:
    assert first["moved"][name], f"{name} did not move: the memories were not trained"
    np.testing.assert_array_equal(np.array(first["weights"][name]),
                                  np.array(second["weights"][name]), err_msg=name)
  # And every other weight: one model, trained once, on two processes.
  for name, value in first["weights"].items():
    np.testing.assert_allclose(np.array(value), np.array(second["weights"][name]),
                               rtol=0, atol=1e-6, err_msg=name)


if __name__ == "__main__":
  print(json.dumps(_train_worker()))
