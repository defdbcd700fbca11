"""PersonalizedMemory (UPBE): lookup, per-id updates vs NumPy, masks, save/load."""

import numpy as np
import pytest
import tensorflow as tf

from duia.layers import ghca
from duia.layers import personal_memory
from duia.models import autograph_rules

NUM_BUCKETS, LEVELS, DIM = 10, 2, 2
IDS = np.array([3, 5, 13, 7, 3, 8])  # 13 hashes to bucket 3 too
POSITIVE = np.array([True, True, True, False, True, True])
TARGETS = np.array([
    [[1.0, 0.5], [0.8, 0.9]],
    [[-0.5, 1.0], [0.0, 0.0]],   # level 2 all zeros (negatively correlated): skipped
    [[0.7, -0.2], [1.2, 0.1]],
    [[2.0, 2.0], [2.0, 2.0]],    # negative row: no update of bucket 7
    [[0.9, 0.4], [-0.3, 0.6]],
    [[0.0, 0.0], [0.0, 0.0]],    # everything zero: bucket 8 untouched
], np.float32)
INITIAL = np.arange(NUM_BUCKETS * LEVELS * DIM, dtype=np.float32).reshape(
    NUM_BUCKETS, LEVELS, DIM) / 40.0 - 0.5


def setup_module():
  autograph_rules.skip_tf_keras_conversion()  # first tf.function in seconds, not tens


def np_step(rule, mu, p):
  """Minus the gradient of sigmoid(mu.p)*||mu - p||^2 w.r.t. p (DUIA eq. 9-10), or the pull."""
  s = 1.0 / (1.0 + np.exp(-(mu @ p)))
  if rule == "weighted_pull":
    return 2.0 * s * (mu - p)
  return -(s * (1.0 - s) * np.sum((mu - p) ** 2) * mu - 2.0 * s * (mu - p))


def np_update(rule, rate, memory, rows, targets, mask):
  new = memory.copy()
  for r in set(rows):
    for level in range(memory.shape[1]):
      steps = [np_step(rule, targets[b, level], memory[r, level]) for b in range(len(rows))
               if rows[b] == r and mask[b] and np.any(targets[b, level] != 0)]
      if steps:
        new[r, level] = memory[r, level] + rate * np.mean(steps, axis=0)
  return new


def _layer(rule="gradient", rate=0.1):
  layer = personal_memory.PersonalizedMemory(NUM_BUCKETS, DIM, levels=LEVELS, rate=rate,
                                             update_rule=rule)
  layer.build([None])
  layer.memory.assign(INITIAL)
  return layer


@pytest.mark.parametrize("rule", ["gradient", "weighted_pull"])
def test_update_matches_numpy_reference_and_touches_only_positive_ids(rule):
  layer = _layer(rule)
  out = layer(IDS, targets=TARGETS, update_mask=POSITIVE, training=True)
  rows = IDS % NUM_BUCKETS
  np.testing.assert_array_equal(out, INITIAL[rows])  # read before the update
  expected = np_update(rule, 0.1, INITIAL, rows, TARGETS, POSITIVE)
  got = layer.memory.numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  # Bucket 3 (ids 3, 13, 3) averaged three steps; bucket 5 only level 1.
  assert not np.allclose(got[3], INITIAL[3])
  np.testing.assert_array_equal(got[5, 1], INITIAL[5, 1])
  # Every other bucket, including 7 (negative row) and 8 (zero targets), bit for bit.
  untouched = [b for b in range(NUM_BUCKETS) if b not in (3, 5)]
  np.testing.assert_array_equal(got[untouched], INITIAL[untouched])


def test_zero_init_and_per_level_mask_and_list_targets():
  layer = personal_memory.PersonalizedMemory(NUM_BUCKETS, DIM, rate=0.5,
                                             update_rule="weighted_pull")
  ids = tf.constant([1, 2])
  np.testing.assert_array_equal(layer(ids), np.zeros([2, LEVELS, DIM]))
  level_mask = np.array([[True, False], [False, True]])
  layer(ids, targets=[TARGETS[:2, 0], TARGETS[[0, 2], 1]], update_mask=level_mask,
        training=True)
  memory = layer.memory.numpy()
  # From p = 0: sigmoid(0) = 0.5, so p <- 0.5 * 2 * 0.5 * mu.
  np.testing.assert_allclose(memory[1, 0], 0.5 * TARGETS[0, 0])
  np.testing.assert_array_equal(memory[1, 1], [0.0, 0.0])
  np.testing.assert_array_equal(memory[2, 0], [0.0, 0.0])
  np.testing.assert_allclose(memory[2, 1], 0.5 * TARGETS[2, 1])


def test_no_update_when_not_training_frozen_or_without_targets():
  layer = _layer()
  layer(IDS, targets=TARGETS, training=False)
  layer(IDS, targets=TARGETS)
  layer(IDS, training=True)
  tf.function(lambda t: layer(IDS, targets=TARGETS, training=t))(tf.constant(False))
  layer.trainable = False
  layer(IDS, targets=TARGETS, training=True)
  np.testing.assert_array_equal(layer.memory.numpy(), INITIAL)
  layer.trainable = True
  tf.function(lambda t: layer(IDS, targets=TARGETS, update_mask=POSITIVE, training=t))(
      tf.constant(True))
  np.testing.assert_allclose(
      layer.memory.numpy(),
      np_update("gradient", 0.1, INITIAL, IDS % NUM_BUCKETS, TARGETS, POSITIVE), rtol=1e-5)


def test_string_ids_hash_to_stable_buckets():
  layer = personal_memory.PersonalizedMemory(NUM_BUCKETS, DIM)
  rows = layer.bucket(tf.constant(["u1", "u2", "u1"])).numpy()
  assert rows[0] == rows[2] and 0 <= rows.min() and rows.max() < NUM_BUCKETS
  assert layer.bucket(tf.constant([-1, 23])).numpy().tolist() == [9, 3]


def test_with_ghca_targets():
  user_centers = ghca.GHCAMemory(num_level1=4, num_children=2, seed=0)
  v_item = tf.random.normal([6, DIM], seed=1)
  targets = user_centers.retrieve(v_item)
  layer = personal_memory.PersonalizedMemory(NUM_BUCKETS, DIM)
  layer(IDS, targets=targets, update_mask=POSITIVE, training=True)
  stacked = np.stack([t.numpy() for t in targets], axis=1)
  np.testing.assert_allclose(
      layer.memory.numpy(),
      np_update("weighted_pull", 0.05, np.zeros_like(INITIAL), IDS % NUM_BUCKETS, stacked,
                POSITIVE), rtol=1e-5, atol=1e-7)


def test_config_round_trip_weights_and_shapes():
  layer = personal_memory.PersonalizedMemory(100, 8, levels=3, rate=0.02, update_rule="gradient",
                                             name="upbe")
  assert layer(tf.constant([1, 2, 3])).shape == (3, 3, 8)
  assert layer.compute_output_shape([3]) == (3, 3, 8)
  assert len(layer.trainable_weights) == 0 and len(layer.non_trainable_weights) == 2
  config = layer.get_config()
  assert personal_memory.PersonalizedMemory.from_config(config).get_config() == config
  assert (tf.keras.utils.get_registered_object("duia>PersonalizedMemory")
          is personal_memory.PersonalizedMemory)
  with pytest.raises(ValueError, match=r"Received: targets.shape=\(3, 2, 8\)"):
    layer(tf.constant([1, 2, 3]), targets=tf.ones([3, 2, 8]), training=True)
  with pytest.raises(ValueError, match=r"Received: ids.shape=\(3, 1\)"):
    layer(tf.constant([[1], [2], [3]]))


def test_saved_model_round_trip_and_serving_is_frozen(tmp_path):
  layer = _layer("weighted_pull")
  layer(IDS, targets=TARGETS, update_mask=POSITIVE, training=True)
  module = tf.Module()
  module.memory = layer
  module.serve = tf.function(lambda ids: layer(ids, training=False),
                             input_signature=[tf.TensorSpec([None], tf.int64)])
  expected = module.serve(tf.constant(IDS)).numpy()
  tf.saved_model.save(module, str(tmp_path))
  loaded = tf.saved_model.load(str(tmp_path))
  memory = [v for v in loaded.memory.variables if v.name.startswith("memory")][0]
  np.testing.assert_array_equal(memory.numpy(), layer.memory.numpy())
  for _ in range(2):
    np.testing.assert_allclose(loaded.serve(tf.constant(IDS)), expected, atol=1e-7)
  np.testing.assert_array_equal(memory.numpy(), layer.memory.numpy())


def test_nonfinite_targets_never_reach_the_memory_and_are_counted():
  layer = _layer("weighted_pull")
  targets = TARGETS.copy()
  targets[0, 0, 0] = np.nan  # id 3, level 0
  targets[1, 1, 1] = np.inf  # id 5, level 1
  layer(IDS, targets=targets, update_mask=POSITIVE, training=True)
  mask = np.stack([POSITIVE, POSITIVE], axis=1)
  mask[0, 0] = mask[1, 1] = False
  expected = INITIAL.copy()
  rows = IDS % NUM_BUCKETS
  for r in set(rows):
    for level in range(LEVELS):
      steps = [np_step("weighted_pull", TARGETS[b, level], INITIAL[r, level])
               for b in range(len(rows))
               if rows[b] == r and mask[b, level] and np.any(TARGETS[b, level] != 0)]
      if steps:
        expected[r, level] = INITIAL[r, level] + 0.1 * np.mean(steps, axis=0)
  np.testing.assert_allclose(layer.memory.numpy(), expected, rtol=1e-5, atol=1e-6)
  assert np.all(np.isfinite(layer.memory.numpy()))
  assert float(layer.nonfinite_skipped.numpy()) == 2.0
