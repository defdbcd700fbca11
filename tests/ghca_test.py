"""GHCAMemory: assignment, retrieval, update rules vs NumPy, sampling, save/load."""

import numpy as np
import pytest
import tensorflow as tf

from duia.layers import ghca
from duia.models import autograph_rules

# Level-1 centers, and their children (rows 2i, 2i+1 belong to level-1 center i).
C1 = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], np.float32)
C2 = np.array([[1.0, 0.2], [1.0, -0.2],     # children of 0
               [0.2, 1.0], [2.0, 2.0],      # children of 1; row 3 is large
               [-1.0, 0.3], [-1.0, -0.3]],  # children of 2
              np.float32)
QUERIES = np.array([[1.0, 0.1], [0.9, -0.3], [0.3, 1.0],
                    [1.0, 0.5],  # level-1 center 0, but globally closest to row 3
                    [-0.5, -2.0], [-0.2, 0.8]], np.float32)
EXPECTED_I = [0, 0, 1, 0, 2, 1]
EXPECTED_J = [0, 1, 3, 0, 5, 3]


def setup_module():
  autograph_rules.skip_tf_keras_conversion()  # first tf.function in seconds, not tens


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def np_step(rule, v, mu):
  """Closed-form step of one query v on its center mu.

  DUIA eq. 4-5 and KDD eq. 1 (docs/design.md §4.3).
  """
  if rule == "ema":
    return v - mu
  s = _sigmoid(v @ mu)
  if rule == "weighted_pull":
    return 2.0 * s * (v - mu)
  grad = s * (1.0 - s) * np.sum((v - mu) ** 2) * v - 2.0 * s * (v - mu)  # dL/dmu
  return -grad


def np_update(rule, rate, centers, queries, index):
  """Each center moves by rate * the mean step of its queries, from pre-update values."""
  new = centers.copy()
  for c in set(index):
    steps = [np_step(rule, queries[b], centers[c]) for b in range(len(queries)) if index[b] == c]
    new[c] = centers[c] + rate * np.mean(steps, axis=0)
  return new


def np_assign(queries, c1, c2, k):
  i = np.argmax(queries @ c1.T, axis=-1)
  j = np.array([ii * k + np.argmax(c2[ii * k:(ii + 1) * k] @ q) for q, ii in zip(queries, i)])
  return i, j


def _layer(num_children=2, rule="gradient", rate=0.1, **kwargs):
  layer = ghca.GHCAMemory(num_level1=3, num_children=num_children, update_rule=rule, rate=rate,
                          sample_rate=kwargs.pop("sample_rate", 1.0), seed=7, **kwargs)
  layer.build([None, 2])
  layer.level1_centers.assign(C1)
  if layer.hierarchical:
    layer.level2_centers.assign(C2)
  return layer


def _values(layer):
  return {w.name.split(":")[0]: w.numpy().copy() for w in layer.weights}


@pytest.mark.parametrize("rule", ["gradient", "weighted_pull", "ema"])
def test_memory_step_closed_form_matches_numpy_and_autodiff(rule):
  rng = np.random.default_rng(0)
  v, mu = rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=(5, 3)).astype("float32")
  got = ghca.memory_step(rule, tf.constant(v), tf.constant(mu)).numpy()
  np.testing.assert_allclose(got, [np_step(rule, a, b) for a, b in zip(v, mu)],
                             rtol=1e-5, atol=1e-6)
  if rule == "gradient":  # eq. 4-5 literally: minus the gradient of L w.r.t. mu
    mu_var = tf.Variable(mu)
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.sigmoid(tf.reduce_sum(v * mu_var, -1))
                           * tf.reduce_sum(tf.square(v - mu_var), -1))
    np.testing.assert_allclose(got, -tape.gradient(loss, mu_var).numpy(), rtol=1e-5, atol=1e-6)


def test_assignment_restricts_level2_to_children_of_level1():
  layer = _layer()
  i, j = layer.assign(QUERIES)
  assert i.numpy().tolist() == EXPECTED_I
  assert j.numpy().tolist() == EXPECTED_J
  # Query 3's globally best level-2 center is row 3 (a child of center 1), not a child of 0.
  assert int(np.argmax(C2 @ QUERIES[3])) == 3 and j.numpy()[3] == 0
  ref_i, ref_j = np_assign(QUERIES, C1, C2, 2)
  assert ref_i.tolist() == EXPECTED_I and ref_j.tolist() == EXPECTED_J


@pytest.mark.parametrize("rule", ["gradient", "weighted_pull", "ema"])
def test_update_matches_numpy_reference(rule):
  layer = _layer(rule=rule, rate=0.1)
  before = _values(layer)
  mu1, mu2 = layer(QUERIES, training=True)
  # Outputs are the centers before this batch's update (all positively correlated here).
  np.testing.assert_allclose(mu1, C1[EXPECTED_I])
  np.testing.assert_allclose(mu2, C2[EXPECTED_J])
  np.testing.assert_allclose(layer.level1_centers.numpy(),
                             np_update(rule, 0.1, C1, QUERIES, EXPECTED_I), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(layer.level2_centers.numpy(),
                             np_update(rule, 0.1, C2, QUERIES, EXPECTED_J), rtol=1e-5, atol=1e-6)
  # Level-2 rows 2 and 4 had no query: untouched, bit for bit.
  np.testing.assert_array_equal(layer.level2_centers.numpy()[[2, 4]],
                                before["level2_centers"][[2, 4]])
  np.testing.assert_array_equal(layer.level1_hits.numpy(), [3, 2, 1])
  np.testing.assert_array_equal(layer.level2_hits.numpy(), [2, 1, 0, 2, 0, 1])
  np.testing.assert_array_equal(layer.level1_recent_hits.numpy(), [3, 2, 1])
  assert int(layer.steps.numpy()) == 1


@pytest.mark.parametrize("num_children", [0, 1])
def test_flat_memory_is_one_level_as_uie(num_children):
  layer = _layer(num_children=num_children, rule="ema", rate=0.01)
  assert not layer.hierarchical and layer.level2_centers is None
  outputs = layer(QUERIES, training=True)
  assert len(outputs) == 1 and outputs[0].shape == (6, 2)
  assert len(layer.assign(QUERIES)) == 1
  np.testing.assert_allclose(layer.level1_centers.numpy(),
                             np_update("ema", 0.01, C1, QUERIES, EXPECTED_I), rtol=1e-6)


def test_no_update_when_not_training_or_frozen():
  layer = _layer()
  before = _values(layer)
  layer(QUERIES)
  layer(QUERIES, training=False)
  tf.function(lambda q, t: layer(q, training=t))(QUERIES, tf.constant(False))
  layer.trainable = False
  layer(QUERIES, training=True)
  for name, value in _values(layer).items():
    np.testing.assert_array_equal(value, before[name], err_msg=name)
  assert not layer.trainable_weights and len(layer.non_trainable_weights) == 7


def test_training_as_tensor_updates_inside_tf_function():
  layer = _layer(rule="ema")
  tf.function(lambda q, t: layer(q, training=t))(QUERIES, tf.constant(True))
  np.testing.assert_allclose(layer.level1_centers.numpy(),
                             np_update("ema", 0.1, C1, QUERIES, EXPECTED_I), rtol=1e-6)
  assert int(layer.steps.numpy()) == 1


def test_update_mask_restricts_rows():
  layer = _layer(rule="weighted_pull")
  mask = np.array([True, False, True, False, False, True])
  layer(QUERIES, training=True, update_mask=mask)
  keep = np.flatnonzero(mask)
  index = np.array(EXPECTED_I)[keep]
  expected = np_update("weighted_pull", 0.1, C1, QUERIES[keep], index)
  np.testing.assert_allclose(layer.level1_centers.numpy(), expected, rtol=1e-5)
  np.testing.assert_array_equal(layer.level1_hits.numpy(), [1, 2, 0])


def test_sampling_rate_and_balanced_groups():
  rng = np.random.default_rng(1)
  n = 20000
  layer = ghca.GHCAMemory(num_level1=1, sample_rate=0.3, seed=3)
  layer.build([None, 2])
  queries = rng.normal(size=(n, 2)).astype("float32")
  mask = layer.sample_mask(n)  # the draw the next update uses (seeded by seed and step)
  layer(queries, training=True)
  assert float(layer.level1_hits.numpy()[0]) == float(np.sum(mask))
  assert abs(np.mean(mask) - 0.3) < 0.02
  assert not np.array_equal(layer.sample_mask(n), mask)  # a new step draws anew

  # 90% low-active, 10% high-active: each group gets ~ rate * n / 2 sampled rows.
  groups = (np.arange(n) < n // 10).astype("int32")
  layer = ghca.GHCAMemory(num_level1=1, sample_rate=0.1, seed=4)
  layer.build([None, 2])
  picked = layer.sample_mask(n, sample_groups=groups).numpy()
  for g in (0, 1):
    assert abs(picked[groups == g].sum() - 1000) < 150, (g, picked[groups == g].sum())
  # update_mask: only eligible rows, and the rate applies to them.
  eligible = rng.random(n) < 0.5
  picked = layer.sample_mask(n, sample_groups=groups, update_mask=eligible).numpy()
  assert not picked[~eligible].any()
  assert abs(picked.sum() - 0.1 * eligible.sum()) < 150
  # Same seed, same step: same draw.
  twin = ghca.GHCAMemory(num_level1=1, sample_rate=0.1, seed=4)
  twin.build([None, 2])
  np.testing.assert_array_equal(twin.sample_mask(n, sample_groups=groups, update_mask=eligible),
                                picked)


def test_retrieval_picks_argmax_and_zeros_negative_centers():
  layer = _layer()
  queries = np.array([[0.2, 1.0], [-0.1, -1.0]], np.float32)
  mu1, mu2 = layer.retrieve(queries)
  # Row 0: center 1, child row 3 ([2, 2]) scores 2.4 > child row 2.
  np.testing.assert_allclose(mu1[0], C1[1])
  np.testing.assert_allclose(mu2[0], C2[3])
  # Row 1: best level-1 is center 2 (0.1 > 0); its best child row 5 scores 0.4.
  np.testing.assert_allclose(mu1[1], C1[2])
  np.testing.assert_allclose(mu2[1], C2[5])
  # A level-1 center that is kept while even its best child is negatively correlated.
  layer.level2_centers.assign(np.concatenate([[[-1.0, 0.5], [-1.0, -0.5]], C2[2:]]))
  mu1, mu2 = layer.retrieve([[1.0, 0.1]])
  np.testing.assert_allclose(mu1[0], C1[0])
  np.testing.assert_array_equal(mu2[0], [0.0, 0.0])
  # All level-1 centers negatively correlated -> zeros at level 1 too.
  flat = ghca.GHCAMemory(num_level1=2, seed=0)
  flat.build([None, 2])
  flat.level1_centers.assign([[1.0, 0.0], [0.0, 1.0]])
  (mu,) = flat.retrieve([[-1.0, -0.5], [0.3, 0.9]])
  np.testing.assert_array_equal(mu, [[0.0, 0.0], [0.0, 1.0]])
  centers, scores = flat.retrieve_top_k([[-1.0, 0.5]], k=2)
  np.testing.assert_allclose(scores, [[0.5, -1.0]])
  np.testing.assert_array_equal(centers, [[[0.0, 1.0], [0.0, 0.0]]])


def test_config_round_trip_weights_and_shapes():
  layer = ghca.GHCAMemory(num_level1=4, num_children=3, update_rule="ema", rate=0.01,
                          sample_rate=0.5, reseed_dead_every=10, seed=11, name="user_ghca")
  outputs = layer(tf.random.normal([5, 6]))
  assert [o.shape for o in outputs] == [(5, 6), (5, 6)]
  assert layer.compute_output_shape([5, 6]) == (tf.TensorShape([5, 6]),) * 2
  assert len(layer.trainable_weights) == 0 and len(layer.non_trainable_weights) == 7
  assert layer.level1_centers.shape == (4, 6) and layer.level2_centers.shape == (12, 6)
  # stddev 1/sqrt(d) init (loose: 4*6 + 12*6 samples).
  assert 0.2 < np.std(layer.level2_centers.numpy()) < 0.65
  config = layer.get_config()
  clone = ghca.GHCAMemory.from_config(config)
  assert clone.get_config() == config
  clone(tf.random.normal([5, 6]))
  np.testing.assert_array_equal(clone.level1_centers.numpy(), layer.level1_centers.numpy())
  assert tf.keras.utils.get_registered_object("duia>GHCAMemory") is ghca.GHCAMemory
  flat = ghca.GHCAMemory(num_level1=4)
  flat(tf.ones([2, 3]))
  assert len(flat.non_trainable_weights) == 5
  assert ghca.GHCAMemory.from_config(flat.get_config()).seed == flat.seed
  with pytest.raises(ValueError, match="Received: update_rule"):
    ghca.GHCAMemory(num_level1=4, update_rule="kmeans")
  with pytest.raises(ValueError, match=r"Received: queries.shape=\(2, 5\)"):
    layer(tf.ones([2, 5]))


def test_dead_level1_centers_are_reseeded_from_batch_queries():
  layer = _layer(rule="ema", reseed_dead_every=2)
  queries = QUERIES[[0, 1, 2]]  # only centers 0 and 1 are hit; 2 is dead
  layer(queries, training=True)
  np.testing.assert_array_equal(layer.level1_centers.numpy()[2], C1[2])  # not yet due
  layer(queries, training=True)
  c1, c2 = layer.level1_centers.numpy(), layer.level2_centers.numpy()
  assert any(np.array_equal(c1[2], q) for q in queries)
  np.testing.assert_allclose(c2[4:6], np.stack([c1[2]] * 2), atol=0.05 * 2)
  assert not np.array_equal(c2[4], c2[5])  # children get noise so they can split
  np.testing.assert_array_equal(layer.level1_recent_hits.numpy(), [0, 0, 0])
  np.testing.assert_array_equal(layer.level1_hits.numpy(), [4, 2, 0])
  np.testing.assert_array_equal(layer.dead_centers(), [False, False, True])
  assert float(layer.hit_fraction()) == pytest.approx(2 / 3)
  assert float(layer.hit_fraction(QUERIES)) == 1.0


def test_saved_model_round_trip_and_serving_is_frozen(tmp_path):
  layer = _layer(rule="weighted_pull")
  layer(QUERIES, training=True)  # centers differ from their init

  module = tf.Module()
  module.memory = layer
  module.serve = tf.function(lambda q: layer(q, training=False),
                             input_signature=[tf.TensorSpec([None, 2], tf.float32)])
  module.train = tf.function(lambda q: layer(q, training=True),
                             input_signature=[tf.TensorSpec([None, 2], tf.float32)])
  expected = [t.numpy() for t in module.serve(QUERIES)]
  tf.saved_model.save(module, str(tmp_path))
  loaded = tf.saved_model.load(str(tmp_path))

  def centers(obj):
    return {v.name: v.numpy().copy() for v in obj.memory.variables}

  saved = centers(loaded)
  assert set(saved) == {v.name for v in layer.variables}
  for v in layer.variables:
    np.testing.assert_array_equal(saved[v.name], v.numpy())
  for _ in range(2):
    for got, want in zip(loaded.serve(tf.constant(QUERIES)), expected):
      np.testing.assert_allclose(got, want, atol=1e-6)
  for name, value in centers(loaded).items():
    np.testing.assert_array_equal(value, saved[name], err_msg=name)
  # The training function, reloaded, still updates the reloaded state.
  loaded.train(tf.constant(QUERIES))
  assert not np.array_equal(centers(loaded)["level1_centers:0"], saved["level1_centers:0"])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_queries_never_reach_the_centers_and_are_counted(bad):
  layer = _layer(rule="weighted_pull")
  queries = QUERIES.copy()
  queries[1, 0] = bad
  queries[4, 1] = bad
  layer(queries, training=True)
  keep = np.array([0, 2, 3, 5])
  np.testing.assert_allclose(
      layer.level1_centers.numpy(),
      np_update("weighted_pull", 0.1, C1, QUERIES[keep], np.array(EXPECTED_I)[keep]), rtol=1e-5)
  assert np.all(np.isfinite(layer.level2_centers.numpy()))
  assert float(layer.nonfinite_skipped.numpy()) == 2.0
  assert float(np.sum(layer.level1_hits.numpy())) == 4.0


def test_an_overflowing_center_step_is_not_applied_and_is_counted():
  layer = _layer(rule="gradient", rate=0.1)
  # Finite, but ||v - mu||^2 overflows float32 in the "gradient" rule's step.
  queries = np.array([[3e19, 3e19]], np.float32)
  before = _values(layer)
  layer(queries, training=True)
  np.testing.assert_array_equal(layer.level1_centers.numpy(), before["level1_centers"])
  np.testing.assert_array_equal(layer.level2_centers.numpy(), before["level2_centers"])
  assert float(layer.nonfinite_skipped.numpy()) == 2.0  # one center step per level


def test_reseeding_never_draws_a_nonfinite_query():
  layer = _layer(rule="ema", reseed_dead_every=1)
  queries = np.full((4, 2), np.nan, np.float32)
  layer(queries, training=True)  # every center is dead and due, every query NaN
  np.testing.assert_array_equal(layer.level1_centers.numpy(), C1)
  np.testing.assert_array_equal(layer.level2_centers.numpy(), C2)
  assert float(layer.nonfinite_skipped.numpy()) == 4.0
