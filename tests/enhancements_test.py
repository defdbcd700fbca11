"""UHSE's attention equals the direct form: gather each position's centers, attend."""

import numpy as np
import tensorflow as tf

from duia.models import config as config_lib
from duia.models import enhancements


def _direct(uhse, v_item, unique_vectors, positions, mask):
  """The textbook computation over [B, L, d] retrieved centers (DUIA 4.4)."""
  pooled = []
  valid = tf.cast(mask, tf.bool)
  for theta_u in uhse.memory.retrieve(unique_vectors):
    theta = tf.gather(theta_u, positions)
    logits = tf.einsum("bld,bd->bl", theta, v_item)
    logits = tf.where(valid, logits, tf.fill(tf.shape(logits), -1e9))
    weights = tf.nn.softmax(logits, axis=-1) * tf.cast(valid, theta.dtype)
    pooled.append(tf.einsum("bl,bld->bd", weights, theta))
  return pooled


def _case(seed: int, query_scale: float = 1.0):
  """A small UHSE (5 x 3 centers, d = 4), 9 distinct items, 6 rows of 7 positions."""
  config = config_lib.DUIAConfig(variant="duia", item_level1=5, item_children=3, memory_dim=4)
  uhse = enhancements.UHSE(config)
  rng = np.random.default_rng(seed)
  unique_vectors = tf.constant(rng.normal(size=(9, 4)), tf.float32)
  uhse.memory.build(unique_vectors.shape)
  v_item = tf.constant(query_scale * rng.normal(size=(6, 4)), tf.float32)
  positions = tf.constant(rng.integers(0, 9, (6, 7)), tf.int32)
  mask = rng.random((6, 7)) < 0.7
  return uhse, unique_vectors, v_item, positions, mask, rng


def test_uhse_attention_matches_the_direct_computation():
  uhse, unique_vectors, v_item, positions, mask, _ = _case(seed=0)
  mask[0] = False  # a user with no history gets zeros
  mask = tf.constant(mask)
  expected = _direct(uhse, v_item, unique_vectors, positions, mask)
  # Some retrieved centers must be negatively correlated (zeroed), or the case is untested.
  zeroed = [np.all(t.numpy() == 0, axis=-1).any() for t in uhse.memory.retrieve(unique_vectors)]
  assert any(zeroed)
  indices = uhse.memory.assign(unique_vectors)
  for level in range(2):
    got = uhse.attend(level, indices[level], v_item, unique_vectors, positions, mask)
    np.testing.assert_allclose(got.numpy(), expected[level].numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(got.numpy()[0], np.zeros(4))


def test_uhse_attention_on_one_history_equals_it_on_the_history_repeated():
  """The `rank` graph's form (one user's positions [1, L], N candidates) must
  give what the batch form gives with the user's row repeated for each."""
  uhse, unique_vectors, v_item, positions, mask, _ = _case(seed=2)
  indices = uhse.memory.assign(unique_vectors)
  for row_mask in (mask[:1], np.zeros_like(mask[:1])):  # some valid positions; none
    repeated = tf.constant(np.repeat(row_mask, 6, axis=0))
    for level in range(2):
      one_row = uhse.attend(level, indices[level], v_item, unique_vectors, positions[:1],
                            tf.constant(row_mask))
      expected = uhse.attend(level, indices[level], v_item, unique_vectors,
                             tf.repeat(positions[:1], 6, axis=0), repeated)
      assert one_row.shape == (6, 4)
      np.testing.assert_allclose(one_row.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_uhse_attention_gradient_matches_the_direct_computation():
  """The regrouped softmax must train like the direct one, including large logits."""
  # Scaled queries give logits of magnitude ~50: a naive exp would overflow.
  uhse, unique_vectors, v_item, positions, mask, rng = _case(seed=1, query_scale=50.0)
  mask = tf.constant(mask)
  indices = uhse.memory.assign(unique_vectors)
  probe = tf.constant(rng.normal(size=(6, 4)), tf.float32)
  for level in range(2):
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(v_item)
      got = uhse.attend(level, indices[level], v_item, unique_vectors, positions, mask)
      expected = _direct(uhse, v_item, unique_vectors, positions, mask)[level]
      got_loss, expected_loss = tf.reduce_sum(got * probe), tf.reduce_sum(expected * probe)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    got_grad = tape.gradient(got_loss, v_item).numpy()
    assert np.all(np.isfinite(got_grad))
    np.testing.assert_allclose(got_grad, tape.gradient(expected_loss, v_item).numpy(),
                               rtol=1e-3, atol=1e-4)


def test_count_per_center_matches_numpy_bincount_per_row():
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 5, size=[3, 7])
  weights = rng.random([3, 7]).astype(np.float32)
  counts = enhancements._count_per_center(tf.constant(ids), tf.constant(weights), 5)
  expected = np.stack([np.bincount(i, weights=w, minlength=5) for i, w in zip(ids, weights)])
  np.testing.assert_allclose(counts.numpy(), expected, rtol=1e-6)


def test_count_per_center_compiles_with_xla():
  # bincount's output size depends on the ids, which XLA cannot compile.
  count = tf.function(lambda i, w: enhancements._count_per_center(i, w, 4), jit_compile=True)
  counts = count(tf.constant([[0, 3, 3]], tf.int64), tf.constant([[1.0, 2.0, 0.5]]))
  np.testing.assert_allclose(counts.numpy(), [[1.0, 0.0, 0.0, 2.5]])
