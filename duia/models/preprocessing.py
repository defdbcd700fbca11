"""TFT preprocessing: raw tf.Example features -> model-ready tensors.

- High-cardinality ids (user, item, author) are hashed into buckets; item ids in
  the history and negatives share the item hash, so they share its embedding.
- Categorical features get vocabularies with an OOV bucket; history and
  preference sequences reuse the vocabulary of the item field they refer to.
- Counts and durations are log1p'd and z-scored.
- Sequences become fixed-length id tensors; id 0 is padding everywhere (real
  ids start at 1), so the model can mask without a separate length feature.
- hist_ts/neg_ts -> ages in days at the exposure's ts (float32, clipped at 0),
  cut and padded (with 0.0) exactly like hist_item_ids/neg_item_ids, so the id
  tensor's 0s mask them too.
- Labels: valid/like as float 0/1; watch time as log1p seconds.
"""

from typing import Any, Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft

from duia.models import config as config_lib
from duia.models import features

# Vocabulary name -> (feature that defines it, features that reuse it).
VOCABULARIES = {
    "age_bucket": (features.AGE_BUCKET, ()),
    "gender": (features.GENDER, ()),
    "city": (features.CITY, ()),
    "device": (features.DEVICE, ()),
    "cat1": (features.CAT1, (features.HIST_CAT1, features.PREF_CAT1)),
    "cat2": (features.CAT2, (features.HIST_CAT2, features.PREF_CAT2)),
    "tag": (features.TAGS, (features.PREF_TAG,)),
}
NUM_OOV_BUCKETS = 1
# Fixed-length sequences and which length setting of FeatureConfig they use.
SEQUENCE_LENGTHS = {
    features.HIST_ITEM_IDS: "history_length",
    features.HIST_CAT1: "history_length",
    features.HIST_CAT2: "history_length",
    features.NEG_ITEM_IDS: "negatives_length",
    features.PREF_CAT1: "list_length",
    features.PREF_CAT2: "list_length",
    features.PREF_TAG: "list_length",
    features.TAGS: "list_length",
}
DENSE_LOG_FEATURES = [features.USER_VALID_COUNT, features.ITEM_PRIOR_EXPOSURES,
                      features.DURATION_S]
# Timestamp sequence -> the id sequence it is aligned with (same length setting).
TIMESTAMP_SEQUENCES = {
    features.HIST_TS: features.HIST_ITEM_IDS,
    features.NEG_TS: features.NEG_ITEM_IDS,
}
_DAY_S = 86400.0


def vocabulary_size(tf_transform_output: tft.TFTransformOutput, name: str) -> int:
  """Ids a vocabulary-mapped feature can take: padding + vocab + OOV."""
  return tf_transform_output.vocabulary_size_by_name(name) + NUM_OOV_BUCKETS + 1


def _as_sparse(x) -> tf.SparseTensor:
  """Features parsed from a schema are dense [B, 1] or sparse; unify to sparse."""
  if isinstance(x, tf.SparseTensor):
    return x
  if isinstance(x, tf.RaggedTensor):
    return x.to_sparse()
  if x.dtype == tf.string:
    return tf.sparse.from_dense(tf.reshape(x, [tf.shape(x)[0], -1]))
  return tf.sparse.from_dense(tf.reshape(x, [tf.shape(x)[0], -1]))


def _as_scalar(x, default) -> tf.Tensor:
  """[B] from a dense [B, 1] or a sparse feature (its first value, else default)."""
  if isinstance(x, tf.SparseTensor):
    x = tf.sparse.to_dense(tf.sparse.slice(x, [0, 0], [tf.shape(x, out_type=tf.int64)[0], 1]),
                           default_value=default)
    x = tf.pad(x, [[0, 0], [0, 1 - tf.shape(x)[1]]], constant_values=default)
  return tf.reshape(x, [-1])


def _first(values: tf.SparseTensor, length: int) -> tf.SparseTensor:
  """The first `length` values of every row."""
  return tf.sparse.slice(values, [0, 0], [tf.shape(values, out_type=tf.int64)[0], length])


def _fixed_length(sliced: tf.SparseTensor, length: int) -> tf.Tensor:
  """Sparse [B, <= length] -> dense [B, length], padded with 0."""
  dense = tf.sparse.to_dense(sliced)
  dense = tf.pad(dense, [[0, 0], [0, length - tf.shape(dense)[1]]])
  return tf.reshape(dense, [-1, length])


def _pad_ids(ids: tf.SparseTensor, length: int) -> tf.Tensor:
  """Sparse int64 ids (already >= 1) -> dense [B, length], padded with 0."""
  return _fixed_length(_first(ids, length), length)


def _ages_in_days(ts: tf.SparseTensor, now: tf.Tensor, length: int) -> tf.Tensor:
  """Sparse int64 Unix seconds, [B] request time -> dense float32 [B, length] days.

  Sliced and padded as `_pad_ids` does, so position j is the age of the id at
  position j of the aligned id sequence. Ages clip at 0: a ts after the
  exposure (clock skew in a request) is treated as just now.
  """
  sliced = _first(ts, length)
  now_per_value = tf.gather(tf.cast(now, tf.int64), sliced.indices[:, 0])
  seconds = tf.maximum(now_per_value - sliced.values, 0)
  ages = tf.SparseTensor(sliced.indices, tf.cast(seconds, tf.float32) / _DAY_S,
                         sliced.dense_shape)
  return _fixed_length(ages, length)


def _hash(x, buckets: int):
  """Ids in [1, buckets): 0 stays free for padding."""
  return tf.strings.to_hash_bucket_fast(x, buckets - 1) + 1


def _map_sparse(sp: tf.SparseTensor, fn) -> tf.SparseTensor:
  return tf.SparseTensor(sp.indices, fn(sp.values), sp.dense_shape)


def preprocessing_fn(inputs: Dict[str, Any],
                     custom_config: Optional[Dict[str, Any]] = None) -> Dict[str, tf.Tensor]:
  """TFT preprocessing_fn.

  Args:
    inputs: raw features as parsed from the schema (dense [B, 1] or sparse).
    custom_config: {"training_config": TrainingConfig JSON}; defaults if absent.

  Returns:
    Transformed features keyed by `features.transformed_name(raw_key)`, and the
    labels under their raw keys.
  """
  training_config = config_lib.TrainingConfig()
  if custom_config and custom_config.get("training_config"):
    training_config = config_lib.TrainingConfig.from_json(custom_config["training_config"])
  feature_config = training_config.features
  out = {}

  id_buckets = {
      features.USER_ID: feature_config.user_id_buckets,
      features.ITEM_ID: feature_config.item_id_buckets,
      features.AUTHOR_ID: feature_config.author_id_buckets,
  }
  for key, buckets in id_buckets.items():
    out[features.transformed_name(key)] = _hash(_as_scalar(inputs[key], ""), buckets)
  for key in (features.HIST_ITEM_IDS, features.NEG_ITEM_IDS):
    ids = _map_sparse(_as_sparse(inputs[key]),
                      lambda v: _hash(v, feature_config.item_id_buckets))
    out[features.transformed_name(key)] = _pad_ids(
        ids, getattr(feature_config, SEQUENCE_LENGTHS[key]))

  now = _as_scalar(inputs[features.TIMESTAMP], 0)
  for key, ids_key in TIMESTAMP_SEQUENCES.items():
    out[features.transformed_name(key)] = _ages_in_days(
        _as_sparse(inputs[key]), now, getattr(feature_config, SEQUENCE_LENGTHS[ids_key]))

  for vocab_name, (source, reusers) in VOCABULARIES.items():
    if source in SEQUENCE_LENGTHS:
      source_values = _as_sparse(inputs[source])
    else:
      source_values = _as_scalar(inputs[source], "")
    vocab = tft.vocabulary(source_values, vocab_filename=vocab_name)
    for key in (source,) + tuple(reusers):
      if key in SEQUENCE_LENGTHS:
        ids = tft.apply_vocabulary(_as_sparse(inputs[key]), vocab,
                                   num_oov_buckets=NUM_OOV_BUCKETS)
        ids = _map_sparse(ids, lambda v: v + 1)
        out[features.transformed_name(key)] = _pad_ids(
            ids, getattr(feature_config, SEQUENCE_LENGTHS[key]))
      else:
        ids = tft.apply_vocabulary(_as_scalar(inputs[key], ""), vocab,
                                   num_oov_buckets=NUM_OOV_BUCKETS)
        out[features.transformed_name(key)] = ids + 1

  for key in DENSE_LOG_FEATURES:
    value = tf.math.log1p(tf.maximum(tf.cast(_as_scalar(inputs[key], 0), tf.float32), 0.0))
    out[features.transformed_name(key)] = tft.scale_to_z_score(value)

  # Not a ranker input: the DUIA memories sample rows by activity group with it
  # (docs/design.md §4.3), 0 for low-active and 1 for high-active.
  out[features.transformed_name(features.USER_ACTIVITY)] = tf.cast(
      tf.equal(_as_scalar(inputs[features.USER_ACTIVITY], ""), features.HIGH_ACTIVE), tf.int64)

  out[features.LABEL_VALID] = tf.cast(_as_scalar(inputs[features.LABEL_VALID], 0), tf.float32)
  out[features.LABEL_LIKE] = tf.cast(_as_scalar(inputs[features.LABEL_LIKE], 0), tf.float32)
  out[features.LABEL_WATCH] = tf.math.log1p(
      tf.maximum(tf.cast(_as_scalar(inputs[features.LABEL_WATCH], 0.0), tf.float32), 0.0))
  return out


# Model inputs: transformed keys grouped by how the model embeds them.
HASHED_ID_INPUTS = {
    features.USER_ID: "user_id_buckets",
    features.ITEM_ID: "item_id_buckets",
    features.AUTHOR_ID: "author_id_buckets",
}
ITEM_ID_SEQUENCE_INPUTS = [features.HIST_ITEM_IDS, features.NEG_ITEM_IDS]
