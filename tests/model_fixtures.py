"""Synthetic transformed batches for model tests (what Transform would emit)."""

import numpy as np
import tensorflow as tf

from duia.models import config as config_lib
from duia.models import duia_ranker
from duia.models import features
from duia.models import inputs as inputs_lib

XF = features.transformed_name


def transformed_batch(batch_size: int, table_size: int, seed: int = 0):
  """(features, labels): ids in [1, table_size), half the rows with short histories.

  The valid label is learnable: 1 iff the target item id is even. hist_ts and
  neg_ts are ages in days, ascending (most recent first) and 0.0 where their
  id sequence is padding, as Transform emits them.
  """
  rng = np.random.default_rng(seed)
  inputs = {XF(k): tf.constant(rng.integers(1, table_size, batch_size), tf.int64)
            for k in inputs_lib.SCALAR_TABLES}
  for k in inputs_lib.SEQUENCE_TABLES:
    ids = rng.integers(1, table_size, (batch_size, 6))
    ids[: batch_size // 2, 3:] = 0  # padding tail
    inputs[XF(k)] = tf.constant(ids, tf.int64)
  inputs.update({XF(k): tf.constant(rng.normal(size=batch_size), tf.float32)
                 for k in inputs_lib.DENSE})
  inputs[XF(features.USER_ACTIVITY)] = tf.constant(rng.integers(0, 2, batch_size), tf.int64)
  valid = (inputs[XF(features.ITEM_ID)].numpy() % 2 == 0).astype("float32")
  labels = {features.LABEL_VALID: tf.constant(valid),
            features.LABEL_LIKE: tf.constant(valid * (rng.random(batch_size) < 0.5)),
            features.LABEL_WATCH: tf.constant(valid * 3.0)}
  # Drawn last, so the draws above (and the tests that rely on them) are
  # the same as before these features existed.
  for ts_key, ids_key in ((features.HIST_TS, features.HIST_ITEM_IDS),
                          (features.NEG_TS, features.NEG_ITEM_IDS)):
    ids = inputs[XF(ids_key)].numpy()
    ages = np.cumsum(rng.exponential(5.0, ids.shape), axis=1)
    inputs[XF(ts_key)] = tf.constant(np.where(ids != 0, ages, 0.0), tf.float32)
  return inputs, labels


def tiny_ranker(overrides, table_size: int):
  """A compiled ranker of the "tiny" preset plus `overrides`, every table `table_size` rows."""
  config = config_lib.preset("tiny", dict(overrides, features={
      "user_id_buckets": table_size, "item_id_buckets": table_size}))
  model = duia_ranker.build_ranker(config, {t: table_size for t in inputs_lib.TABLES})
  model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
  return model


def train_save_and_load(model, batch, path: str):
  """Fits `model` 3 steps on `batch`, saves its `serving_outputs` as a SavedModel
  signature (any batch size) and loads it back.

  Returns:
    (the model's outputs on batch's features before saving, the loaded SavedModel).
  """
  model.fit(tf.data.Dataset.from_tensors(batch).repeat(3), epochs=1, verbose=0)
  expected = model.serving_outputs(batch[0])
  specs = {k: tf.TensorSpec([None] + list(v.shape[1:]), v.dtype) for k, v in batch[0].items()}
  serve = tf.function(lambda **x: model.serving_outputs(x)).get_concrete_function(**specs)
  tf.saved_model.save(model, path, signatures={"serving_default": serve})
  return expected, tf.saved_model.load(path)
