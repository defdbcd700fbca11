"""A training step of the whole ranker under MirroredStrategy equals one device's.

Two logical CPUs, global batch 64 split 32 + 32, against one device on the
same 64 rows from the same initial weights: every trainable weight, every DUIA
memory (centers, personalized vectors, hits) and the replicas' copies must
agree. Logical devices must be configured before TensorFlow initialises its
devices, so the check runs this file as a script in a fresh interpreter; the
test reads the JSON it prints.
"""

import json

import pytest

from tests import fresh_interpreter

# Not in `make test-fast`: a fresh interpreter tracing three rankers under MirroredStrategy.
pytestmark = pytest.mark.slow

GLOBAL_BATCH, TABLE_SIZE, STEPS = 64, 40, 2
VARIANTS = ("ple", "duia", "duia_items")


def _run_check() -> dict:
  import duia  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  from duia.models import autograph_rules  # pylint: disable=g-import-not-at-top
  from duia.models import config as config_lib  # pylint: disable=g-import-not-at-top
  from duia.models import duia_ranker  # pylint: disable=g-import-not-at-top
  from duia.models import features  # pylint: disable=g-import-not-at-top
  from duia.models import inputs as inputs_lib  # pylint: disable=g-import-not-at-top
  from tests import model_fixtures  # pylint: disable=g-import-not-at-top
  autograph_rules.skip_tf_keras_conversion()
  XF = features.transformed_name  # pylint: disable=invalid-name

  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

  def batch(seed):
    inputs, labels = model_fixtures.transformed_batch(GLOBAL_BATCH, TABLE_SIZE, seed)
    # An item has one category (as in real logs): UHSE reads a history item's
    # categories at its first occurrence in the batch, so random ones per
    # position would make a half batch see other item vectors than the whole.
    ids = inputs[XF(features.HIST_ITEM_IDS)]
    for key, kinds in ((features.HIST_CAT1, 3), (features.HIST_CAT2, 7)):
      inputs[XF(key)] = tf.where(ids > 0, ids % kinds + 1, 0)
    return inputs, labels

  batches = [batch(seed) for seed in range(STEPS)]

  def make(variant):
    # Every row takes part in the memory updates (sample_rate 1): sampling
    # draws per replica, which one device cannot reproduce.
    config = config_lib.preset("tiny", {
        "duia": {"variant": variant, "user_level1": 4, "user_children": 2,
                 "item_level1": 4, "item_children": 2, "flat_clusters": 6,
                 "memory_dim": 8, "sample_rate": 1.0},
        "features": {"user_id_buckets": TABLE_SIZE, "item_id_buckets": TABLE_SIZE}})
    model = duia_ranker.build_ranker(config, {t: TABLE_SIZE for t in inputs_lib.TABLES})
    # Plain SGD: a weight's change is lr x its gradient, so the comparison
    # sees the gradients themselves. Adam would hide a replica loss scaled by
    # a constant (its step is scale-invariant) and, dividing by sqrt(v) + eps,
    # turns float rounding in a near-zero gradient into up to lr of weight
    # (CI once saw 1.09e-5 on one kernel with Adam(0.01)).
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1))
    model(batches[0][0])  # create the variables
    return model

  def train(model):
    dataset = tf.data.Dataset.from_tensor_slices(
        tf.nest.map_structure(lambda *t: tf.stack(t), *batches))
    fit = model.fit(dataset, epochs=1, verbose=0).history
    evaluation = model.evaluate(dataset.take(1), verbose=0, return_dict=True)
    return fit["loss"][0], fit["valid_consumption_auc"][0], evaluation["loss"]

  result = {}
  for variant in VARIANTS:
    single = make(variant)
    with strategy.scope():
      mirrored = make(variant)
    mirrored.set_weights(single.get_weights())
    initial = [w.copy() for w in single.get_weights()]
    logged = np.array(train(single)), np.array(train(mirrored))
    names = [w.name for w in single.weights]
    diffs = [float(np.max(np.abs(a - b))) if a.size else 0.0
             for a, b in zip(single.get_weights(), mirrored.get_weights())]
    moved = [bool(np.any(a != b)) for a, b in zip(initial, single.get_weights())]
    copies_equal = all(
        np.array_equal(w.values[0].numpy(), w.values[1].numpy())
        for w in mirrored.weights if hasattr(w, "values"))
    worst = int(np.argmax(diffs))
    result[variant] = dict(
        max_diff=diffs[worst], worst=names[worst], copies_equal=copies_equal,
        logged_diff=float(np.max(np.abs(logged[0] - logged[1]))),
        replicas=strategy.num_replicas_in_sync,
        memories_moved=sum(m for w, m in zip(single.weights, moved) if not w.trainable),
        trainable_moved=sum(m for w, m in zip(single.weights, moved) if w.trainable))
  return result


@pytest.fixture(scope="module")
def check():
  # A guard against a hang, not a time limit: the three variants take ~250 s
  # alone on 2 cores (tracing under MirroredStrategy) and timed out at 400 s
  # with other jobs on the machine.
  return fresh_interpreter.run_json(__file__, timeout_s=1200)


@pytest.mark.parametrize("variant", VARIANTS)
def test_mirrored_training_steps_equal_one_device(check, variant):
  result = check[variant]
  assert result["replicas"] == 2, result
  assert result["trainable_moved"] > 0, result
  assert result["memories_moved"] > 0 or variant == "ple", result  # ple has no memories
  # Summation order differs (all-reduce), so equal up to float rounding.
  assert result["max_diff"] < 1e-5, result
  # What fit and evaluate log (last train loss, AUC, eval loss) is the same too.
  assert result["logged_diff"] < 1e-4, result
  assert result["copies_equal"], result


def test_strategy_names():
  from duia.models import distribution  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  assert distribution.make_strategy("none") is tf.distribute.get_strategy()
  assert isinstance(distribution.make_strategy("mirrored"), tf.distribute.MirroredStrategy)
  with pytest.raises(ValueError, match="must be one of .*Received: 'tpu'"):
    distribution.make_strategy("tpu")


if __name__ == "__main__":
  print(json.dumps(_run_check()))
