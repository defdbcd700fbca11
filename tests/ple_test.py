"""The CGC layer and the PLE ranker: shapes, gates, training, save/load."""

import numpy as np
import pytest
import tensorflow as tf

from duia.layers import cgc
from duia.models import autograph_rules
from duia.models import config as config_lib
from duia.models import features
from duia.models import inputs as inputs_lib
from duia.models import ple_ranker
from tests import model_fixtures

XF = features.transformed_name
TABLE_SIZE = 30


def _batch(batch_size=32, seed=0):
  return model_fixtures.transformed_batch(batch_size, TABLE_SIZE, seed)


def setup_module():
  autograph_rules.skip_tf_keras_conversion()  # the first fit takes seconds, not tens


def _model(tasks=(features.TASK_VALID, features.TASK_WATCH, features.TASK_LIKE)):
  config = config_lib.preset("tiny", {"tasks": list(tasks), "learning_rate": 0.01})
  model = ple_ranker.PLERanker(config, {t: TABLE_SIZE for t in inputs_lib.TABLES})
  model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
  return model


def test_cgc_shapes_and_gates_sum_to_one():
  level = cgc.CGC(num_tasks=3, num_task_experts=2, num_shared_experts=1, expert_units=[8, 4])
  x = tf.random.normal([5, 7])
  outputs = level([x, x, x, x])
  assert [o.shape for o in outputs] == [(5, 4)] * 4
  gates = level.gate_weights([x, x, x, x])
  assert [g.shape for g in gates] == [(5, 3)] * 3 + [(5, 7)]
  for gate in gates:
    np.testing.assert_allclose(tf.reduce_sum(gate, axis=-1), np.ones(5), rtol=1e-6)
    assert float(tf.reduce_min(gate)) >= 0.0


def test_cgc_last_level_has_no_shared_output_and_round_trips_config():
  level = cgc.CGC(num_tasks=2, num_task_experts=1, num_shared_experts=2, expert_units=[4],
                  shared_output=False)
  x = tf.ones([3, 5])
  assert len(level([x, x, x])) == 2
  clone = cgc.CGC.from_config(level.get_config())
  assert clone.get_config() == level.get_config()
  with pytest.raises(ValueError, match="expects a list of 3 tensors"):
    level([x, x])


def test_cgc_output_is_the_gated_mixture_of_experts():
  level = cgc.CGC(num_tasks=1, num_task_experts=1, num_shared_experts=1, expert_units=[3],
                  shared_output=False)
  x = tf.random.normal([4, 2], seed=1)
  (out,) = level([x, x])
  gate = level.gate_weights([x, x])[0].numpy()
  task_expert = level.task_experts[0][0](x).numpy()
  shared_expert = level.shared_experts[0](x).numpy()
  expected = gate[:, :1] * task_expert + gate[:, 1:] * shared_expert  # PLE eq. 3
  np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_ranker_outputs_one_value_per_example_per_task():
  model = _model()
  inputs, _ = _batch(8)
  predictions = model(inputs)
  assert sorted(predictions) == sorted(model.tasks_list)
  assert all(p.shape == (8, 1) for p in predictions.values())
  served = model.serving_outputs(inputs)
  assert sorted(served) == sorted(model.tasks_list + [features.FUSED_SCORE])
  assert all(v.shape == (8,) for v in served.values())
  for task in features.BINARY_TASKS:
    assert 0.0 <= float(tf.reduce_min(served[task])) <= float(tf.reduce_max(served[task])) <= 1.0
  assert float(tf.reduce_min(served[features.TASK_WATCH])) >= 0.0


def test_fusion_product_and_sum():
  predictions = {features.TASK_VALID: tf.constant([[0.5]]), features.TASK_LIKE: tf.constant([[0.2]])}
  product = config_lib.TrainingConfig(tasks=(features.TASK_VALID, features.TASK_LIKE),
                                      fusion_weights={features.TASK_LIKE: 2.0})
  np.testing.assert_allclose(ple_ranker.fuse(predictions, product), [0.5 * 0.2 ** 2], rtol=1e-5)
  summed = config_lib.TrainingConfig(tasks=(features.TASK_VALID, features.TASK_LIKE),
                                     fusion="sum", fusion_weights={features.TASK_LIKE: 2.0})
  np.testing.assert_allclose(ple_ranker.fuse(predictions, summed), [0.5 + 0.4], rtol=1e-5)


def test_training_steps_lower_the_loss_on_a_tiny_batch():
  tf.keras.utils.set_random_seed(0)
  model = _model()
  batch = _batch(64)
  before = float(model.compute_loss(batch))
  dataset = tf.data.Dataset.from_tensors(batch).repeat(40)
  model.fit(dataset, epochs=1, verbose=0)
  after = float(model.compute_loss(batch))
  assert after < 0.7 * before, (before, after)


def test_save_and_load_round_trip_gives_equal_predictions(tmp_path):
  model = _model((features.TASK_VALID, features.TASK_LIKE))
  inputs, _ = _batch(16)
  expected = model.serving_outputs(inputs)
  specs = {k: tf.TensorSpec([None] + list(v.shape[1:]), v.dtype) for k, v in inputs.items()}
  serve = tf.function(lambda **x: model.serving_outputs(x)).get_concrete_function(**specs)
  tf.saved_model.save(model, str(tmp_path), signatures={"serving_default": serve})
  loaded = tf.saved_model.load(str(tmp_path)).signatures["serving_default"]
  got = loaded(**inputs)
  for key, value in expected.items():
    np.testing.assert_allclose(got[key].numpy(), value.numpy(), rtol=1e-5, atol=1e-6)
