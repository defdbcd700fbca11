"""The DUIA ranker: every variant trains and evaluates; memories update only in
training; SavedModel round trip keeps predictions and centers."""

import numpy as np
import pytest
import tensorflow as tf

from duia.models import autograph_rules
from duia.models import config as config_lib
from duia.models import features
from tests import model_fixtures

# Not in `make test-fast`: builds and trains whole rankers (~200 s).
pytestmark = pytest.mark.slow

XF = features.transformed_name
TABLE_SIZE = 40


def setup_module():
  autograph_rules.skip_tf_keras_conversion()


def _batch(batch_size=64, seed=0):
  return model_fixtures.transformed_batch(batch_size, TABLE_SIZE, seed)


def _model(variant, **duia_overrides):
  return model_fixtures.tiny_ranker({
      "duia": dict({"variant": variant, "user_level1": 4, "user_children": 2,
                    "item_level1": 4, "item_children": 2, "flat_clusters": 6,
                    "memory_dim": 8, "sample_rate": 1.0}, **duia_overrides)}, TABLE_SIZE)


def _state(model):
  return [w.numpy().copy() for w in model.non_trainable_weights]


@pytest.mark.parametrize("variant", config_lib.VARIANTS)
def test_each_variant_trains_one_step_and_evaluates(variant):
  model = _model(variant)
  batch = _batch()
  served = model.serving_outputs(batch[0])
  assert all(v.shape == (64,) for v in served.values())
  before = _state(model)
  history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
  assert np.isfinite(history.history["loss"][0])
  after = _state(model)
  if variant in ("ple", "him"):  # HIM keeps no memory outside the optimizer
    assert not before
  else:
    assert any(not np.array_equal(b, a) for b, a in zip(before, after)), "no memory moved"
  # Evaluation and serving leave every memory alone.
  model.evaluate(tf.data.Dataset.from_tensors(batch), verbose=0)
  model.serving_outputs(batch[0])
  for b, a in zip(after, _state(model)):
    np.testing.assert_array_equal(b, a)


def test_duia_has_the_memories_it_names():
  model = _model("duia_items")
  model.serving_outputs(_batch()[0])
  names = {w.name.split("/")[-1].split(":")[0] for w in model.non_trainable_weights}
  assert {"level1_centers", "level2_centers", "memory"} <= names
  assert set(model.memories()) == {"user_ghca", "item_ghca"}
  flat = _model("uie")
  flat.serving_outputs(_batch()[0])
  assert set(flat.memories()) == {"user_flat"}


def test_auxiliary_loss_does_not_train_the_ranker_embeddings():
  model = _model("duia")
  features_in, labels = _batch()
  with tf.GradientTape() as tape:
    _, side = model.forward(features_in, training=True, labels=labels)
    loss = model.extra_loss(model(features_in), side, labels)
  grads = tape.gradient(loss, model.embedding.trainable_variables)
  assert all(g is None for g in grads)
  with tf.GradientTape() as tape:
    _, side = model.forward(features_in, training=False)
    loss = model.extra_loss(model(features_in), side, labels)
  assert all(g is not None for g in tape.gradient(loss, model.aux.trainable_variables))


def test_saved_model_round_trip_keeps_predictions_and_centers(tmp_path):
  model = _model("duia_items")
  batch = _batch()
  expected, loaded = model_fixtures.train_save_and_load(model, batch, str(tmp_path))
  got = loaded.signatures["serving_default"](**batch[0])
  for key, value in expected.items():
    np.testing.assert_allclose(got[key].numpy(), value.numpy(), rtol=1e-5, atol=1e-6)
  saved = {v.name: v.numpy() for v in loaded.variables if not v.trainable}
  for weight in model.non_trainable_weights:
    np.testing.assert_array_equal(saved[weight.name], weight.numpy())
  loaded.signatures["serving_default"](**batch[0])  # serving does not move centers
  for v in loaded.variables:
    if v.name in saved:
      np.testing.assert_array_equal(v.numpy(), saved[v.name])


def test_cluster_report_counts_eval_rows_per_memory():
  from duia.models import cluster_report  # pylint: disable=g-import-not-at-top
  model = _model("duia")
  batch = _batch()
  model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
  report = cluster_report.build_report(model, [batch[0], batch[0]])
  assert set(report) == {"user_ghca", "item_ghca"}
  for memory in report.values():
    assert memory["eval_rows"] == 128
    assert memory["level1_centers"] == 4 and memory["children_per_center"] == 2
    assert 0.0 < memory["level1_hit_fraction"] <= 1.0
    sizes = memory["cluster_size_percentiles"]
    assert sizes["p0"] <= sizes["p50"] <= sizes["p100"] <= 128
    assert 0 <= memory["dead_centers_after_training"] <= 4
  assert "user_ghca" in cluster_report.format_report(report)


def _initial_centers(seed):
  model = model_fixtures.tiny_ranker({
      "seed": seed, "duia": {"variant": "duia", "user_level1": 4, "user_children": 2,
                             "item_level1": 4, "item_children": 2, "memory_dim": 8}},
      TABLE_SIZE)
  model.serving_outputs(_batch()[0])
  return {name: memory.level1_centers.numpy() for name, memory in model.memories().items()}


def test_the_training_seed_draws_the_memories():
  """"3 seeds" must redraw the initial centres, not only the trainable weights."""
  seed_0, seed_0_again, seed_1 = (_initial_centers(s) for s in (0, 0, 1))
  assert set(seed_0) == {"user_ghca", "item_ghca"}
  for name in seed_0:
    np.testing.assert_array_equal(seed_0[name], seed_0_again[name])
    assert not np.allclose(seed_0[name], seed_1[name]), name
  # The user and item memories do not share a draw.
  assert not np.allclose(seed_0["user_ghca"][:4], seed_0["item_ghca"][:4])


def test_without_target_attention_the_user_tower_ignores_the_candidate():
  """v_user (and the user centres) is a property of the user alone when the
  user tower does not read the target-attended history."""
  features_in, _ = _batch()
  other = dict(features_in)
  other[XF(features.ITEM_ID)] = tf.reverse(features_in[XF(features.ITEM_ID)], [0])
  for attend, same in ((False, True), (True, False)):
    model = _model("duia", user_tower_target_attention=attend)
    model.serving_outputs(features_in)
    v_user, v_item = model.tower_vectors(model.embedding(features_in))
    v_user_other, v_item_other = model.tower_vectors(model.embedding(other))
    assert np.allclose(v_user.numpy(), v_user_other.numpy()) == same, attend
    assert not np.allclose(v_item.numpy(), v_item_other.numpy())


def test_personal_dim_0_leaves_the_personal_vectors_out():
  model = _model("duia_items", personal_dim=0)
  model.serving_outputs(_batch()[0])
  names = {w.name for w in model.trainable_weights}
  assert not any("personal_vector" in n for n in names), names
  assert any("personal_vector" in w.name for w in _built("duia_items").trainable_weights)


def _built(variant, **overrides):
  model = _model(variant, **overrides)
  model.serving_outputs(_batch()[0])
  return model


def test_upbe_unit_readout_reads_directions():
  features_in, labels = _batch()
  model = _model("duia", upbe_readout="unit")
  model.fit(tf.data.Dataset.from_tensors((features_in, labels)).repeat(3), epochs=1, verbose=0)
  ids = features_in[XF(features.USER_ID)]
  stored = model.upbe.memory(ids).numpy()
  norms = np.linalg.norm(stored, axis=-1)
  assert (norms > 0).any() and (norms < 0.99).any()  # raw vectors are short after a few pulls
  unit = stored / np.maximum(norms[..., None], 1e-12)
  # The block's input is the normalised vectors: compare with the generalization layer on them.
  expected = model.upbe.generalize(tf.reshape(tf.constant(unit, tf.float32),
                                              [len(stored), -1])).numpy()
  _, enhanced, _ = model.encode_parts(features_in, training=False)
  np.testing.assert_allclose(enhanced["upbe"].numpy(), expected, atol=1e-5)


def test_usage_trace_records_hits_and_movement_per_window():
  from duia.models import cluster_report  # pylint: disable=g-import-not-at-top
  model = _built("duia")
  trace = cluster_report.UsageTrace(model.memories(), every=2)
  batches = [_batch(seed=s) for s in range(5)]
  before = model.uhse.memory.level1_centers.numpy().copy()
  model.fit(tf.data.Dataset.from_tensor_slices(
      tuple(tf.nest.map_structure(lambda *t: tf.stack(t), *batches))), epochs=1, verbose=0,
      callbacks=[trace])
  assert [r["step"] for r in trace.records] == [2, 4]  # a record after steps 1 (start), 2, 4
  for record in trace.records:
    for name in ("user_ghca", "item_ghca"):
      entry = record[name]
      assert set(entry) == {"level1_hit", "level1_moved", "level2_hit", "level2_moved"}
      assert 0.0 < entry["level1_hit"] <= 1.0 and entry["level1_moved"] > 0.0
  assert not np.allclose(before, model.uhse.memory.level1_centers.numpy())


def _one_user_and_candidates(inputs, user_row: int, num_candidates: int):
  """Row `user_row`'s user features [1, ...] and the first candidates' item features."""
  from duia.models import signatures  # pylint: disable=g-import-not-at-top
  user = {k: v[user_row:user_row + 1] for k, v in inputs.items()
          if k in signatures.USER_LEVEL_TRANSFORMED}
  items = {k: v[:num_candidates] for k, v in inputs.items()
           if k not in signatures.USER_LEVEL_TRANSFORMED}
  return user, items


@pytest.mark.parametrize("variant,target_attention", [
    ("ple", True), ("duia_items", True), ("duia_items", False), ("him", True)])
def test_several_users_rows_score_like_each_candidates_user_repeated(variant,
                                                                     target_attention):
  """`rank_users`' shapes: U users' rows, N candidates and each one's user."""
  from duia.layers import user_rows  # pylint: disable=g-import-not-at-top
  from duia.models import signatures  # pylint: disable=g-import-not-at-top
  model = _built(variant, user_tower_target_attention=target_attention)
  model.fit(tf.data.Dataset.from_tensors(_batch()).repeat(3), verbose=0)  # memories move
  inputs = _batch(seed=3)[0]
  users = [5, 1, 7, 5]  # the last row pads the call to its static user count
  candidate_user = tf.constant([0, 0, 1, 2, 2, 1, 0, 2, 1], tf.int32)
  user = {k: tf.gather(v, users) for k, v in inputs.items()
          if k in signatures.USER_LEVEL_TRANSFORMED}
  items = {k: v[:9] for k, v in inputs.items() if k not in signatures.USER_LEVEL_TRANSFORMED}
  specs = {k: tf.TensorSpec([len(users)] + v.shape[1:], v.dtype) for k, v in user.items()}
  specs.update({k: tf.TensorSpec([None] + v.shape[1:], v.dtype) for k, v in items.items()})

  @tf.function
  def several(tensors, index):
    with user_rows.several_users(index, len(users)):
      return model.serving_outputs(tensors)

  merged = several.get_concrete_function(specs, tf.TensorSpec([None], tf.int32))(
      dict(user, **items), candidate_user)
  per_candidate = model.serving_outputs(dict(
      {k: tf.gather(v, candidate_user) for k, v in user.items()}, **items))
  assert merged[features.FUSED_SCORE].shape == (9,)
  for key in per_candidate:
    np.testing.assert_allclose(merged[key].numpy(), per_candidate[key].numpy(),
                               rtol=1e-5, atol=1e-6)


# duia_items has every DUIA block (UIE, UPBE, UHSE, the item side).
@pytest.mark.parametrize("variant,target_attention", [
    ("ple", True), ("duia_items", True), ("duia_items", False), ("him", True)])
def test_one_user_row_scores_like_the_user_repeated_per_candidate(variant, target_attention):
  """The `rank` graph's shapes: user features once ([1, ...]), candidates [N, ...]."""
  model = _built(variant, user_tower_target_attention=target_attention)
  model.fit(tf.data.Dataset.from_tensors(_batch()).repeat(3), verbose=0)  # memories move
  user, items = _one_user_and_candidates(_batch(seed=3)[0], user_row=5, num_candidates=9)
  # One static row, as `signatures.pin_user_rows` pins Transform's user outputs.
  specs = {k: tf.TensorSpec([1] + v.shape[1:], v.dtype) for k, v in user.items()}
  specs.update({k: tf.TensorSpec([None] + v.shape[1:], v.dtype) for k, v in items.items()})
  one_user = tf.function(model.serving_outputs).get_concrete_function(specs)
  once = one_user(dict(user, **items))
  repeated = model.serving_outputs(dict(
      {k: tf.repeat(v, 9, axis=0) for k, v in user.items()}, **items))
  assert once[features.FUSED_SCORE].shape == (9,)
  for key in repeated:
    np.testing.assert_allclose(once[key].numpy(), repeated[key].numpy(), rtol=1e-5, atol=1e-6)
