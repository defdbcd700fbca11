"""The typed training config: presets, overrides, validation, JSON round trip."""

import pytest

from duia.models import config as config_lib
from duia.models import features


def test_json_round_trip_of_every_preset():
  for name, config in config_lib.PRESETS.items():
    assert config_lib.TrainingConfig.from_json(config.to_json()) == config, name


def test_nested_override():
  config = config_lib.preset("small", {"ple": {"num_levels": 3}, "batch_size": 64})
  assert config.ple.num_levels == 3 and config.batch_size == 64
  assert config.ple.expert_units == config_lib.PLEConfig().expert_units


@pytest.mark.parametrize("overrides, message", [
    ({"learning_rte": 0.1}, "Unknown config key training.learning_rte"),
    ({"ple": {"levels": 2}}, "Unknown config key training.ple.levels"),
    ({"tasks": ["ctr"]}, "Unknown task 'ctr'"),
    ({"tasks": []}, "at least one task"),
    ({"fusion": "max"}, "fusion must be one of"),
    ({"batch_size": 0}, "batch_size must be > 0"),
    ({"tasks": [features.TASK_VALID], "fusion_weights": {features.TASK_LIKE: 1.0}},
     "not in tasks"),
    ({"features": {"history_length": -1}}, "history_length must be > 0"),
    ({"him": {"session_days": [7.0, 1.0]}}, r"session_days must be positive and strictly"),
    ({"him": {"session_days": [1.0, 1.0]}}, r"strictly ascending. Received: \[1.0, 1.0\]"),
    ({"him": {"session_days": [0.0, 1.0]}}, "session_days must be positive"),
    ({"him": {"num_groups": 0}}, "him.num_groups must be > 0"),
    ({"him": {"group_loss_weight": -1.0}}, "him.group_loss_weight must be >= 0"),
    ({"duia": {"variant": "hin"}}, "duia.variant must be one of"),
])
def test_bad_values_are_rejected_with_a_message_naming_them(overrides, message):
  with pytest.raises(ValueError, match=message):
    config_lib.preset("small", overrides)


def test_him_sessions_and_json_round_trip():
  config = config_lib.preset("small", {"duia": {"variant": "him"},
                                       "him": {"session_days": [3.0, 7.0, 14.0, 30.0]}})
  assert config.him.num_sessions == 5
  assert config_lib.TrainingConfig.from_json(config.to_json()) == config
  # A config saved before HIM existed (no "him" key) reads back with its defaults.
  assert config_lib.TrainingConfig.from_json('{"seed": 7}').him == config_lib.HIMConfig()


def test_unknown_preset():
  with pytest.raises(ValueError, match="Unknown preset 'huge'"):
    config_lib.preset("huge")


def test_tf_keras_is_keras_2():
  from duia import keras_env
  keras_env.check_keras2()  # raises ImportError if tf.keras were Keras 3
  import tensorflow as tf
  assert tf.keras.layers.Dense.__module__.startswith("tf_keras.")
