"""HIM's layers: session split and frequency re-ranking, distance attention and
the hinge loss against NumPy, UBP/UBC shapes, gradients and config round trips."""

import numpy as np
import pytest
import tensorflow as tf

from duia.layers import him_hybrid
from duia.layers import him_reorganization
from duia.layers import him_ubc
from duia.layers import him_ubp


def _reorganize(ids, ages, session_days=(1.0, 7.0), top_n=3):
  layer = him_reorganization.SessionReorganization(session_days, top_n)
  out_ids, frequency = layer(tf.constant([ids], tf.int64), tf.constant([ages], tf.float32))
  return out_ids.numpy()[0].tolist(), frequency.numpy()[0].tolist()


def test_session_split_and_frequency_rerank_on_a_hand_made_history():
  # Most recent first, as the data contract orders histories. Sessions: age < 1
  # day, 1 <= age < 7, age >= 7. Item 5 twice today, item 9 three times this week.
  ids = [5, 3, 5, 9, 4, 9, 9, 4, 8, 0, 0]
  ages = [0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 6.9, 6.99, 7.0, 0.0, 0.0]
  out_ids, frequency = _reorganize(ids, ages)
  assert out_ids == [[5, 3, 0], [9, 4, 0], [8, 0, 0]]
  assert frequency == [[2.0, 1.0, 0.0], [3.0, 2.0, 0.0], [1.0, 0.0, 0.0]]


def test_frequency_ties_keep_the_most_recent_first_and_top_n_cuts():
  ids = [7, 6, 6, 7, 2, 1]
  ages = [0.0] * 6
  out_ids, frequency = _reorganize(ids, ages, session_days=(), top_n=3)
  # 7 and 6 both twice: 7 is more recent (earlier position); then 2 (recent) over 1.
  assert out_ids == [[7, 6, 2]]
  assert frequency == [[2.0, 2.0, 1.0]]


def test_the_same_item_in_two_sessions_counts_in_each_separately():
  out_ids, frequency = _reorganize([4, 4, 4], [0.5, 3.0, 3.5])
  assert out_ids == [[4, 0, 0], [4, 0, 0], [0, 0, 0]]
  assert frequency == [[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]


def test_a_history_shorter_than_top_n_and_an_empty_one():
  layer = him_reorganization.SessionReorganization((1.0,), top_n=4)
  out_ids, frequency = layer(tf.constant([[3, 3], [0, 0]], tf.int64),
                             tf.constant([[0.0, 2.0], [0.0, 0.0]]))
  assert out_ids.shape == (2, 2, 4)
  assert out_ids.numpy().tolist() == [[[3, 0, 0, 0], [3, 0, 0, 0]], [[0] * 4, [0] * 4]]
  assert frequency.numpy().sum() == 2.0


def test_reorganization_config_round_trip():
  layer = him_reorganization.SessionReorganization((1.0, 7.0, 30.0), 8, name="r")
  clone = him_reorganization.SessionReorganization.from_config(layer.get_config())
  assert clone.session_days == (1.0, 7.0, 30.0) and clone.top_n == 8
  assert clone.num_sessions == 4


def _numpy_distance_attention(positives, negative, valid):
  distances = np.sqrt(((positives - negative[None, :]) ** 2).sum(-1))
  exp = np.where(valid, np.exp(distances - distances[valid].max()), 0.0)
  return exp / exp.sum()


def test_distance_attention_equals_a_numpy_reference():
  rng = np.random.default_rng(3)
  positives = rng.normal(size=(5, 4)).astype("float32")
  negative = rng.normal(size=4).astype("float32")
  valid = np.array([True, True, True, False, True])
  got = him_ubp.distance_attention(tf.constant(positives), tf.constant(negative),
                                   tf.constant(valid)).numpy()
  np.testing.assert_allclose(got, _numpy_distance_attention(positives, negative, valid),
                             rtol=1e-5, atol=1e-7)
  assert got[3] == 0.0
  # The positive farthest from the negative feedback weighs most (eq. 3).
  distances = np.linalg.norm(positives - negative, axis=-1)
  assert np.argmax(got) == np.argmax(np.where(valid, distances, -1))


def test_distance_attention_without_positives_is_zero_and_its_gradient_finite():
  positives = tf.zeros([2, 3, 4])
  negative = tf.zeros([2, 4])
  valid = tf.constant([[False] * 3, [True, False, False]])
  with tf.GradientTape() as tape:
    tape.watch(positives)
    weights = him_ubp.distance_attention(positives, negative, valid)
  np.testing.assert_array_equal(weights.numpy(), [[0, 0, 0], [1, 0, 0]])
  assert np.all(np.isfinite(tape.gradient(weights, positives).numpy()))


def test_hinge_loss_on_a_toy_case():
  # Two users, one session, D = 2. User 0's reconstruction agrees with its p_z
  # (cos 1) and is orthogonal to user 1's: max(0, 1 - 1 + 0) = 0. User 1's is
  # orthogonal to its p_z and parallel to user 0's: max(0, 1 - 0 + 0) = 1 against
  # reconstruction 0 (cos((0,1),(1,0)) = 0) -> 1.
  reconstructed = tf.constant([[[2.0, 0.0]], [[0.0, 1.0]]])
  target = tf.constant([[[1.0, 0.0]], [[3.0, 0.0]]])
  negative_rows = tf.constant([[1], [0]])
  loss = him_ubc.group_hinge_loss(reconstructed, target, negative_rows)
  assert loss.numpy() == pytest.approx((0.0 + 1.0) / 2)
  # A negative as similar as the positive costs the full margin: 1 - 1 + 1.
  same = tf.constant([[[1.0, 1.0]], [[1.0, 1.0]]])
  assert him_ubc.group_hinge_loss(same, same, negative_rows).numpy() == pytest.approx(1.0)


def test_hinge_loss_equals_a_numpy_reference_and_masks_sessions():
  rng = np.random.default_rng(5)
  reconstructed = rng.random((4, 3, 5)).astype("float32")
  target = rng.normal(size=(4, 3, 5)).astype("float32")
  negative_rows = np.array([[1, 2], [0, 3], [3, 1], [2, 0]])
  mask = rng.random((4, 3)) < 0.7

  def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)

  expected = 0.0
  for b in range(4):
    for j in negative_rows[b]:
      for t in range(3):
        if mask[b, t]:
          expected += max(0.0, 1 - unit(reconstructed[b, t]) @ unit(target[b, t])
                          + unit(reconstructed[b, t]) @ unit(reconstructed[j, t]))
  got = him_ubc.group_hinge_loss(tf.constant(reconstructed), tf.constant(target),
                                 tf.constant(negative_rows), tf.constant(mask))
  assert got.numpy() == pytest.approx(expected / 4, rel=1e-5)


def test_sampled_negative_users_are_other_rows():
  rows = him_ubc.sample_negative_rows(tf.constant(5), 16, seed=1).numpy()
  assert rows.shape == (5, 16)
  assert rows.min() >= 0 and rows.max() < 5
  assert not np.any(rows == np.arange(5)[:, None])


def _ubp_inputs(batch=3, sessions=4, n=5, m=3, d=6, seed=0):
  rng = np.random.default_rng(seed)
  positive_frequency = rng.integers(0, 3, (batch, sessions, n)).astype("float32")
  positive_frequency[0] = 0.0  # a user without positives
  negative_frequency = rng.integers(0, 2, (batch, sessions, m)).astype("float32")
  negative_frequency[0, 1:] = 0.0
  return (tf.constant(rng.normal(size=(batch, sessions, n, d)), tf.float32),
          tf.constant(positive_frequency),
          tf.constant(rng.normal(size=(batch, sessions, m, d)), tf.float32),
          tf.constant(negative_frequency))


def test_ubp_shapes_gradients_and_config():
  layer = him_ubp.UserBehaviorPyramid(gru_units=2, attention_dim=4)
  inputs = _ubp_inputs()
  with tf.GradientTape() as tape:
    p_x, p_z = layer(*inputs)
    loss = tf.reduce_sum(p_z) + tf.reduce_sum(p_x)
  assert p_x.shape == p_z.shape == (3, 4, 5 * 2 + 6)
  assert layer.compute_output_shape([inputs[0].shape]) == (p_x.shape, p_z.shape)
  gradients = tape.gradient(loss, layer.trainable_weights)
  assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in gradients)
  assert not layer.non_trainable_weights
  clone = him_ubp.UserBehaviorPyramid.from_config(layer.get_config())
  assert (clone.gru_units, clone.attention_dim) == (2, 4)


def test_ubp_zeroes_padding_states_and_pools_negatives_by_frequency():
  layer = him_ubp.UserBehaviorPyramid(gru_units=2, attention_dim=4)
  positives, positive_frequency, negatives, negative_frequency = _ubp_inputs()
  p_x, _ = layer(positives, positive_frequency, negatives, negative_frequency)
  states = p_x.numpy()[..., :10].reshape(3, 4, 5, 2)
  np.testing.assert_array_equal(states[positive_frequency.numpy() == 0], 0.0)
  pooled = (negative_frequency.numpy()[..., None] * negatives.numpy()).sum(axis=2)  # eq. 2
  np.testing.assert_allclose(p_x.numpy()[..., 10:], pooled, rtol=1e-5, atol=1e-6)


def test_ubc_autoencoder_matches_eq_6_and_7():
  layer = him_ubc.UserBehaviorClustering(num_sessions=2, num_groups=3, group_dim=4)
  p_x = tf.constant(np.random.default_rng(1).normal(size=(5, 2, 6)), tf.float32)
  reconstructed, c_z, beta = layer(p_x)
  assert reconstructed.shape == (5, 2, 6) and c_z.shape == (5, 2, 4) and beta.shape == (5, 2, 3)
  assert len(layer.trainable_weights) == 5 and not layer.non_trainable_weights
  w_c, b_c, groups, w_r, b_r = (w.numpy() for w in layer.weights)
  x = p_x.numpy()
  for t in range(2):
    logits = x[:, t] @ w_c[t] + b_c[t]
    expected_beta = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(beta.numpy()[:, t], expected_beta, rtol=1e-5)
    mu = expected_beta @ groups[t]
    np.testing.assert_allclose(reconstructed.numpy()[:, t],
                               1 / (1 + np.exp(-(mu @ w_r[t] + b_r[t]))), rtol=1e-5)
    np.testing.assert_allclose(c_z.numpy()[:, t], groups[t][expected_beta.argmax(-1)])
  clone = him_ubc.UserBehaviorClustering.from_config(layer.get_config())
  assert (clone.num_sessions, clone.num_groups, clone.group_dim) == (2, 3, 4)


def test_ubc_rejects_another_session_count():
  layer = him_ubc.UserBehaviorClustering(num_sessions=3, num_groups=2, group_dim=2)
  with pytest.raises(ValueError, match="3 sessions. Received: p_x.shape"):
    layer(tf.zeros([1, 2, 4]))


def test_the_hinge_loss_trains_the_group_assignment():
  layer = him_ubc.UserBehaviorClustering(num_sessions=1, num_groups=2, group_dim=3)
  p_x = tf.constant(np.random.default_rng(2).normal(size=(4, 1, 5)), tf.float32)
  with tf.GradientTape() as tape:
    reconstructed, _, _ = layer(p_x)
    loss = him_ubc.group_hinge_loss(reconstructed, p_x, tf.constant([[1], [2], [3], [0]]))
  gradients = dict(zip([w.name.split("/")[-1] for w in layer.trainable_weights],
                       tape.gradient(loss, layer.trainable_weights)))
  assert np.any(gradients["assign_kernel:0"].numpy() != 0)
  assert np.any(gradients["reconstruct_kernel:0"].numpy() != 0)


def test_hybrid_attention_weights_are_eq_10():
  layer = him_hybrid.HybridInterestAttention()
  rng = np.random.default_rng(4)
  personalized, group, target = (tf.constant(rng.normal(size=s), tf.float32)
                                 for s in ((3, 5), (3, 2), (3, 4)))
  out, weights = layer([personalized, group, target])
  w_p, w_c = (w.numpy() for w in layer.weights)
  scores = np.stack([((personalized.numpy() @ w_p) * target.numpy()).sum(-1),
                     ((group.numpy() @ w_c) * target.numpy()).sum(-1)], axis=-1)
  expected = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
  np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-5)
  np.testing.assert_allclose(out.numpy(), np.concatenate(
      [expected[:, :1] * personalized.numpy(), expected[:, 1:] * group.numpy()], -1),
      rtol=1e-5, atol=1e-7)
  assert layer.compute_output_shape([(3, 5), (3, 2), (3, 4)]) == ((3, 7), (3, 2))
