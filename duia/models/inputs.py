"""Embeds the transformed features into the ranker's input vectors.

Ids share tables where they name the same thing: the target item, the history
and the negatives share the item table; cat1 of the item, of the history and of
the preference list share the cat1 table; and so on. Id 0 is padding
(see `preprocessing`), masked out of every pooled sequence.
"""

from typing import Dict, List, Sequence

import tensorflow as tf

from duia.layers import row_split
from duia.layers import softmax
from duia.layers import user_rows
from duia.models import features

# Transformed input -> embedding table it reads.
SCALAR_TABLES = {
    features.USER_ID: "user_id",
    features.AGE_BUCKET: "age_bucket",
    features.GENDER: "gender",
    features.CITY: "city",
    features.DEVICE: "device",
    features.ITEM_ID: "item_id",
    features.AUTHOR_ID: "author_id",
    features.CAT1: "cat1",
    features.CAT2: "cat2",
}
SEQUENCE_TABLES = {
    features.PREF_CAT1: "cat1",
    features.PREF_CAT2: "cat2",
    features.PREF_TAG: "tag",
    features.HIST_ITEM_IDS: "item_id",
    features.HIST_CAT1: "cat1",
    features.HIST_CAT2: "cat2",
    features.NEG_ITEM_IDS: "item_id",
    features.TAGS: "tag",
}
USER_SCALARS = [features.USER_ID, features.AGE_BUCKET, features.GENDER, features.CITY,
                features.DEVICE]
USER_SEQUENCES = [features.PREF_CAT1, features.PREF_CAT2, features.PREF_TAG]
ITEM_SCALARS = [features.ITEM_ID, features.AUTHOR_ID, features.CAT1, features.CAT2]
BEHAVIOUR_SEQUENCES = [features.HIST_ITEM_IDS, features.HIST_CAT1, features.HIST_CAT2]
DENSE = [features.USER_VALID_COUNT, features.ITEM_PRIOR_EXPOSURES, features.DURATION_S]
TABLES = sorted(set(SCALAR_TABLES.values()) | set(SEQUENCE_TABLES.values()))


def broadcast_rows(x: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
  """`x` [user rows or B, ...] with as many rows as `like` [B, ...].

  The `rank` signature computes the user side once ([1, ...]) and the
  candidates' side per candidate ([N, ...]); this is where the two meet (and
  `rank_users`' several users' rows are gathered per candidate, see
  `layers/user_rows.py`). Only statically known user rows are brought over, so
  training graphs (every part [B, ...]) are left exactly as they were.
  """
  return user_rows.broadcast(x, like)


def concat_rows(parts: Sequence[tf.Tensor]) -> tf.Tensor:
  """Concatenates [B, d_i] parts on the last axis; user-side parts are brought
  to the candidates' rows first (see `broadcast_rows`)."""
  per_row = [p for p in parts if not user_rows.is_user_level(p)]
  if per_row and len(per_row) < len(parts):
    parts = [broadcast_rows(p, per_row[0]) for p in parts]
  return tf.concat(parts, axis=-1)


def base_parts(parts: Dict[str, tf.Tensor]) -> List[tf.Tensor]:
  """The plain ranker input [user, item, behaviour, dense] as its column blocks.

  Concatenated, these are the user, item, behaviour and scaled-count vectors
  column for column; kept apart, the user's blocks keep their
  one row in the `rank` signature (see `layers/row_split.py`).
  """
  return [parts["user"], parts["item"]] + parts["behaviour_parts"] + parts["dense_parts"]


def first_layer_input(x):
  """The head's input: a tensor as it is; parts concatenated, or a
  `row_split.RowSplit` where the user's parts have their user rows and the
  candidates' N."""
  if isinstance(x, (list, tuple)):
    return row_split.RowSplit(x) if row_split.needs_split(x) else concat_rows(x)
  return x


def masked_mean(embedded: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
  """Mean of [B, L, d] over positions whose id is not 0; zeros for empty rows."""
  mask = tf.cast(tf.not_equal(ids, 0), embedded.dtype)[..., None]
  return tf.reduce_sum(embedded * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


def target_attention(keys: tf.Tensor, ids: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
  """sum_t softmax_t(k_t . target / sqrt(d)) k_t over non-padding positions.

  Args:
    keys: [B, L, d] history embeddings, or [1, L, d]: one user's history
      attended by each of B candidates (the `rank` signature), without
      copying it B times.
    ids: [B, L] or [1, L] history ids, 0 for padding.
    target: [B, d] target item embeddings.
  """
  scale = tf.sqrt(tf.cast(tf.shape(target)[-1], keys.dtype))
  keys, ids = user_rows.align(keys, target), user_rows.align(ids, target)  # rank_users
  one_user = keys.shape[0] == 1 and target.shape[0] != 1
  if one_user:
    logits = tf.matmul(target, keys[0], transpose_b=True) / scale  # [B, L]
  else:
    logits = tf.einsum("bld,bd->bl", keys, target) / scale
  valid = tf.not_equal(ids, 0)
  logits = tf.where(valid, logits, keys.dtype.min)
  weights = softmax.softmax(logits) * tf.cast(valid, keys.dtype)
  if one_user:
    return tf.matmul(weights, keys[0])
  return tf.einsum("bl,bld->bd", weights, keys)


@tf.keras.utils.register_keras_serializable(package="duia")
class FeatureEmbedding(tf.keras.layers.Layer):
  """Transformed features -> {"user", "item", "behaviour", "dense"} vectors.

  Args:
    table_sizes: rows of each embedding table (names in `TABLES`).
    embedding_dim: width of every table.

  Call args:
    inputs: dict of transformed features keyed by `features.transformed_name`,
      [B, ...] each; or, in the `rank` signature, the user's features [1, ...]
      and the candidates' [B, ...].

  Returns:
    Dict of [B, *] tensors ([1, *] where only user features go in): "user"
    (profile), "item" (target item), "behaviour" (pooled and target-attended
    history, negatives), "user_behaviour" (the same without the
    target-attended history), and
    "item_core" (the target's id/cat1/cat2 embeddings, see `item_core`);
    "behaviour_parts", the column blocks of "behaviour" before their rows are
    broadcast, and "dense_parts", the scaled counts [B or 1, 1] each.
  """

  def __init__(self, table_sizes: Dict[str, int], embedding_dim: int, **kwargs):
    super().__init__(**kwargs)
    missing = set(TABLES) - set(table_sizes)
    if missing:
      raise ValueError(f"table_sizes lacks {sorted(missing)}. Received: {table_sizes}")
    self.table_sizes = dict(table_sizes)
    self.embedding_dim = embedding_dim
    self.tables = {
        name: tf.keras.layers.Embedding(table_sizes[name], embedding_dim, name=f"{name}_embedding")
        for name in TABLES}

  def item_core(self, item_ids: tf.Tensor, cat1_ids: tf.Tensor, cat2_ids: tf.Tensor) -> tf.Tensor:
    """The item features every item has, target or history: id, cat1, cat2.

    DUIA's item tower reads these, so target items and history items get
    vectors from the same function (UHSE, DUIA section 4.4).
    """
    return tf.concat([self.tables["item_id"](item_ids), self.tables["cat1"](cat1_ids),
                      self.tables["cat2"](cat2_ids)], axis=-1)

  def _lookup(self, inputs, key, tables):
    return self.tables[tables[key]](inputs[features.transformed_name(key)])

  def call(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    xf = features.transformed_name
    user = [self._lookup(inputs, k, SCALAR_TABLES) for k in USER_SCALARS]
    user += [masked_mean(self._lookup(inputs, k, SEQUENCE_TABLES), inputs[xf(k)])
             for k in USER_SEQUENCES]
    item = [self._lookup(inputs, k, SCALAR_TABLES) for k in ITEM_SCALARS]
    item.append(masked_mean(self._lookup(inputs, features.TAGS, SEQUENCE_TABLES),
                            inputs[xf(features.TAGS)]))
    target_item = item[0]
    pooled = []
    for key in BEHAVIOUR_SEQUENCES:
      embedded = self._lookup(inputs, key, SEQUENCE_TABLES)
      pooled.append(masked_mean(embedded, inputs[xf(key)]))
    history_items = self._lookup(inputs, features.HIST_ITEM_IDS, SEQUENCE_TABLES)
    attended = target_attention(history_items, inputs[xf(features.HIST_ITEM_IDS)], target_item)
    negatives = masked_mean(self._lookup(inputs, features.NEG_ITEM_IDS, SEQUENCE_TABLES),
                            inputs[xf(features.NEG_ITEM_IDS)])
    dense = [tf.reshape(tf.cast(inputs[xf(k)], tf.float32), [-1, 1]) for k in DENSE]
    behaviour = pooled + [attended, negatives]
    return {
        "item_core": self.item_core(inputs[xf(features.ITEM_ID)], inputs[xf(features.CAT1)],
                                    inputs[xf(features.CAT2)]),
        "user": tf.concat(user, axis=-1),
        "item": tf.concat(item, axis=-1),
        "behaviour": concat_rows(behaviour),
        # The same two vectors as their column blocks, each with its own rows
        # (one for the user's, in `rank`): see `base_parts`.
        "behaviour_parts": behaviour,
        "dense_parts": dense,
        # The behaviour without the target-attended history: what the user did,
        # whatever the candidate (the same vector for every candidate of a user).
        "user_behaviour": tf.concat(pooled + [negatives], axis=-1),
    }

  def get_config(self):
    config = super().get_config()
    config.update(table_sizes=self.table_sizes, embedding_dim=self.embedding_dim)
    return config
