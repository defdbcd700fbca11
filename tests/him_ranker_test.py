"""The HIM ranker: one train and one eval step, the joint loss of eq. 12, and a
SavedModel round trip with equal predictions."""

import numpy as np
import pytest
import tensorflow as tf

from duia.models import autograph_rules
from duia.models import features
from duia.models import him_ranker
from tests import model_fixtures

# Not in `make test-fast`: builds and trains whole HIM rankers, SavedModel round trip.
pytestmark = pytest.mark.slow

XF = features.transformed_name
TABLE_SIZE = 40


def setup_module():
  autograph_rules.skip_tf_keras_conversion()


def _model(**him_overrides):
  return model_fixtures.tiny_ranker({
      "duia": {"variant": "him"},
      "him": dict({"session_days": [1.0, 7.0], "top_n": 4, "gru_units": 3, "num_groups": 3,
                   "group_dim": 4, "num_negative_users": 2}, **him_overrides)}, TABLE_SIZE)


def test_the_him_variant_builds_the_him_ranker():
  assert isinstance(_model(), him_ranker.HIMRanker)


def test_one_train_step_and_one_eval_step():
  model = _model()
  batch = model_fixtures.transformed_batch(64, TABLE_SIZE)
  served = model.serving_outputs(batch[0])
  assert set(served) == {features.TASK_VALID, features.TASK_WATCH, features.TASK_LIKE,
                         features.FUSED_SCORE}
  assert all(v.shape == (64,) for v in served.values())
  before = {w.name: w.numpy().copy() for w in model.trainable_weights}
  history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
  assert np.isfinite(history.history["loss"][0])
  moved = {w.name for w in model.trainable_weights
           if not np.array_equal(before[w.name], w.numpy())}
  for layer in ("him_ubp", "him_ubc", "him_hybrid"):
    assert any(layer in name for name in moved), f"{layer} did not train"
  results = model.evaluate(tf.data.Dataset.from_tensors(batch), verbose=0, return_dict=True)
  assert np.isfinite(results["loss"])


def test_the_joint_loss_adds_alpha_times_the_group_loss():
  features_in, labels = model_fixtures.transformed_batch(64, TABLE_SIZE)
  model = _model(group_loss_weight=0.0)
  tf.random.set_seed(0)
  without = model.compute_loss((features_in, labels)).numpy()
  _, side = model.forward(features_in)
  assert model.extra_loss(None, side, labels).numpy() == 0.0
  weighted = _model(group_loss_weight=10.0)
  weighted(features_in)  # build, so the weights can be copied
  weighted.set_weights(model.get_weights())
  _, side = weighted.forward(features_in)
  tf.random.set_seed(0)
  group_loss = weighted.extra_loss(None, side, labels).numpy()
  assert group_loss > 0.0
  tf.random.set_seed(0)
  joint = weighted.compute_loss((features_in, labels)).numpy()
  assert joint == pytest.approx(without + group_loss, rel=1e-5)


def test_sessions_follow_the_history_ages():
  model = _model(top_n=6)  # the fixture's histories have 6 positions
  features_in, _ = model_fixtures.transformed_batch(64, TABLE_SIZE)
  ids = features_in[XF(features.HIST_ITEM_IDS)]
  # Every history position today: all behaviour lands in session 0.
  features_in[XF(features.HIST_TS)] = tf.zeros_like(ids, tf.float32)
  _, frequency = model.reorganize(ids, features_in[XF(features.HIST_TS)])
  assert frequency.numpy()[:, 1:].sum() == 0.0
  assert frequency.numpy()[:, 0].sum() == np.count_nonzero(ids.numpy())


def test_saved_model_round_trip_keeps_predictions(tmp_path):
  model = _model()
  batch = model_fixtures.transformed_batch(64, TABLE_SIZE)
  expected, loaded = model_fixtures.train_save_and_load(model, batch, str(tmp_path))
  other = model_fixtures.transformed_batch(17, TABLE_SIZE, seed=1)[0]  # another batch size
  for inputs, want in ((batch[0], expected), (other, model.serving_outputs(other))):
    got = loaded.signatures["serving_default"](**inputs)
    for key, value in want.items():
      np.testing.assert_allclose(got[key].numpy(), value.numpy(), rtol=1e-5, atol=1e-6)
