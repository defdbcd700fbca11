"""Warm start: a new Trainer run continues from the last model, centers included."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from duia.models import trainer
from tests import duia_ranker_test as helpers

# Not in `make test-fast`: trains and saves whole rankers twice.
pytestmark = pytest.mark.slow


def _save(model, config, path, batch):
  model(batch[0])  # records the input structure, as run_fn does before export
  model.save(path, save_format="tf")
  os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
  with open(os.path.join(path, "assets.extra", trainer.CONFIG_FILE), "w") as f:
    f.write(config.to_json())


def test_warm_start_carries_centers_and_weights_over(tmp_path):
  helpers.setup_module()
  first = helpers._model("duia")  # pylint: disable=protected-access
  batch = helpers._batch()  # pylint: disable=protected-access
  first.fit(tf.data.Dataset.from_tensors(batch).repeat(3), epochs=1, verbose=0)
  _save(first, first.config, str(tmp_path / "base"), batch)

  second = helpers._model("duia")  # pylint: disable=protected-access
  assert trainer.warm_start(second, str(tmp_path / "base"), second.config, batch[0])
  names = {w.name for w in second.non_trainable_weights}
  assert any("level1_centers" in n for n in names)
  # Keras names differ between instances; the checkpoint maps by structure.
  assert len(first.weights) == len(second.weights)
  for w_first, w_second in zip(first.weights, second.weights):
    np.testing.assert_array_equal(w_first.numpy(), w_second.numpy())
  np.testing.assert_allclose(second.serving_outputs(batch[0])["score"].numpy(),
                             first.serving_outputs(batch[0])["score"].numpy(), rtol=1e-6)


def test_warm_start_skips_a_model_of_another_config(tmp_path):
  helpers.setup_module()
  first = helpers._model("duia")  # pylint: disable=protected-access
  batch = helpers._batch()  # pylint: disable=protected-access
  first(batch[0])
  _save(first, first.config, str(tmp_path / "base"), batch)
  other = helpers._model("uie_upbe")  # pylint: disable=protected-access
  assert not trainer.warm_start(other, str(tmp_path / "base"), other.config, batch[0])
  with open(tmp_path / "base" / "assets.extra" / trainer.CONFIG_FILE) as f:
    assert json.load(f)["duia"]["variant"] == "duia"
