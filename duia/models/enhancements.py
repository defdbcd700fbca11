"""DUIA's enhancement blocks: UIE, UPBE, UHSE and the item-side twin.

Each block owns its memories and its generalization layer and returns one
enhancement vector [B, enhancement_dim] that the ranker concatenates to its
input (DUIA Figure 2; docs/design.md §4.4). Queries are tower outputs, L2-normalised when
`normalize` is on (docs/design.md §4.3: keeps the papers' update rules from running off).
Memories update inside `call` only when `training` (the GHCA/personalized
layers check it) and never at serving.
"""

from typing import Sequence

import tensorflow as tf

from duia.layers import ghca
from duia.layers import personal_memory
from duia.layers import softmax
from duia.layers import user_rows
from duia.models import config as config_lib
from duia.models import inputs as inputs_lib


def _generalization(units: int, name: str) -> tf.keras.layers.Layer:
  """The generalization layer (DUIA 4.2, "similar to PEPNet"): a dense ReLU layer."""
  return tf.keras.layers.Dense(units, activation="relu", name=name)


# Offsets of each memory's seed from the training seed: the user and item
# memories draw different centres, and every training seed redraws both.
USER_MEMORY_SEED_OFFSET = 11
ITEM_MEMORY_SEED_OFFSET = 13
# GHCAMemory uses its seed and seed + 1 (level 2); a stride keeps the seeds of
# training seeds s and s + 1 apart.
_SEED_STRIDE = 100


def memory_seed(training_seed: int, offset: int) -> int:
  """The seed of one memory for a training seed (initial centres, sampling, re-seeding)."""
  return int(training_seed) * _SEED_STRIDE + offset


def _personal_vector(buckets: int, dim: int, name: str):
  """The trainable personal vector table (DUIA 4.2), or None when `dim` is 0."""
  return tf.keras.layers.Embedding(buckets, dim, name=name) if dim else None


def _lookup(table, ids):
  return [] if table is None else [table(ids)]


def weighted_centers(query: tf.Tensor, centers: Sequence[tf.Tensor]) -> tf.Tensor:
  """DUIA eq. 6 per level: sigmoid(mu . v) * mu, concatenated over levels."""
  return tf.concat([tf.sigmoid(tf.reduce_sum(mu * query, -1, keepdims=True)) * mu
                    for mu in centers], axis=-1)


class UIE(tf.keras.layers.Layer):
  """User Interest Enhancement: user memory -> weighted centers + personal vector.

  GHCA (DUIA eq. 2-6): the user's level-1 and level-2 centers, each weighted by
  its similarity. Flat (UIE-KDD formula 1-2): softmax attention over the top-k
  centers of a one-level memory updated by EMA.

  Call args:
    v_user: [B, d] query.
    user_ids: [B] hashed user ids (the personal vector's rows).
    groups: [B] activity group (0 low, 1 high) for balanced sampling.

  Args:
    config: the DUIA config (sizes, update rule, rates).
    user_buckets: rows of the personal vector table.
    flat: UIE-KDD's flat memory instead of the user GHCA.
    seed: the memory's seed (`memory_seed` of the training seed).
  """

  def __init__(self, config: config_lib.DUIAConfig, user_buckets: int, flat: bool,
               seed: int = USER_MEMORY_SEED_OFFSET, **kwargs):
    super().__init__(**kwargs)
    self.flat = flat
    self.top_k = config.flat_top_k
    if flat:
      self.memory = ghca.GHCAMemory(config.flat_clusters, 0, update_rule="ema", rate=config.rate,
                                    sample_rate=config.sample_rate,
                                    reseed_dead_every=config.reseed_dead_every, seed=seed,
                                    name="user_flat_memory")
    else:
      self.memory = ghca.GHCAMemory(config.user_level1, config.user_children,
                                    update_rule=config.update_rule, rate=config.rate,
                                    sample_rate=config.sample_rate,
                                    reseed_dead_every=config.reseed_dead_every, seed=seed,
                                    name="user_ghca")
    self.personal = _personal_vector(user_buckets, config.personal_dim, "personal_vector")
    self.generalize = _generalization(config.enhancement_dim, "uie_generalization")

  def call(self, v_user, user_ids, groups, training=None):
    centers = self.memory(v_user, training=training, sample_groups=groups)
    if self.flat:
      # UIE-KDD formula 2: softmax over the top-k similarities.
      top, scores = self.memory.retrieve_top_k(v_user, self.top_k)
      enhanced = tf.einsum("bk,bkd->bd", tf.nn.softmax(scores, axis=-1), top)
    else:
      enhanced = weighted_centers(v_user, centers)
    return self.generalize(inputs_lib.concat_rows([enhanced] + _lookup(self.personal, user_ids)))


class UPBE(tf.keras.layers.Layer):
  """User Positive Behaviour Enhancement (DUIA eq. 7-10).

  On positive rows, v_item finds the user centers most likely to consume the
  item; those positively correlated with v_user pull the user's personalized
  vectors (one per level). At prediction the user's vectors are looked up.

  Call args:
    user_memory: the UIE's GHCA layer (shared: "global user memory networks").
    v_user, v_item: [B, d] queries; positive: [B] bool.
  """

  def __init__(self, config: config_lib.DUIAConfig, user_buckets: int, **kwargs):
    super().__init__(**kwargs)
    self.memory = personal_memory.PersonalizedMemory(
        user_buckets, config.memory_dim, levels=2, rate=config.rate,
        update_rule=config.update_rule, name="user_personalized_memory")
    self.readout = config.upbe_readout
    self.generalize = _generalization(config.enhancement_dim, "upbe_generalization")

  def call(self, user_memory, user_ids, v_user, v_item, positive=None, training=None):
    targets = None
    mask = None
    if positive is not None:
      targets = tf.stack(user_memory.retrieve(v_item), axis=1)  # eq. 7-8
      # Filter centers negatively correlated with the user (section 4.3).
      correlated = tf.einsum("bld,bd->bl", targets, v_user) > 0
      mask = tf.logical_and(correlated, tf.cast(positive, tf.bool)[:, None])
    stored = self.memory(user_ids, targets=targets, update_mask=mask, training=training)
    if self.readout == "unit":
      stored = tf.math.l2_normalize(stored, axis=-1)  # zeros stay zeros
    return self.generalize(tf.reshape(stored, [-1, stored.shape[1] * stored.shape[2]]))


class UHSE(tf.keras.layers.Layer):
  """User History Sequence Enhancement (DUIA eq. 11-14).

  The item GHCA clusters v_item of positive rows. Each history item's vector
  retrieves its level-1 and level-2 centers (the enhancement sequences); target
  attention with the target item pools them over valid positions.

  Call args:
    v_item: [B, d] target item query; positive: [B] bool.
    unique_vectors: [U, d] queries of the distinct history items in the batch.
    positions: [B, L] index into `unique_vectors` of each history position.
    history_mask: [B, L] bool, the valid (non-padding) positions.

  Args:
    config: the DUIA config.
    seed: the item memory's seed (`memory_seed` of the training seed).
  """

  def __init__(self, config: config_lib.DUIAConfig, seed: int = ITEM_MEMORY_SEED_OFFSET,
               **kwargs):
    super().__init__(**kwargs)
    self.memory = ghca.GHCAMemory(config.item_level1, config.item_children,
                                  update_rule=config.update_rule, rate=config.rate,
                                  sample_rate=config.sample_rate,
                                  reseed_dead_every=config.reseed_dead_every, seed=seed,
                                  name="item_ghca")
    self.generalize = _generalization(config.enhancement_dim, "uhse_generalization")

  def call(self, v_item, unique_vectors, positions, history_mask, positive=None, training=None):
    self.memory(v_item, training=training,
                update_mask=None if positive is None else tf.cast(positive, tf.bool))
    indices = self.memory.assign(unique_vectors)
    return self.generalize(tf.concat(
        [self.attend(level, indices[level], v_item, unique_vectors, positions, history_mask)
         for level in range(self.memory.num_levels)], axis=-1))

  def attend(self, level: int, index_u, v_item, unique_vectors, positions, history_mask):
    """sum_t softmax_t(theta_t . v_item) theta_t over the valid positions [B, d].

    theta_t is the center of `level` retrieved for history item t (zeros when
    negatively correlated); `index_u` [U] is each distinct item's center there.
    Every nonzero theta_t is one of the level's N centers, so the softmax over
    positions regroups by center: with c[b, n] the number of row b's kept
    positions on center n, z[b] its valid positions whose theta is zero (logit
    0) and s[b, n] = v_item . mu_n,

        out[b] = sum_n c[b, n] e^s[b, n] mu_n / (sum_n c[b, n] e^s[b, n] + z[b]).

    The same numbers as gathering [B, L, d] centers, but everything that
    carries a gradient is [B, N]: the per-position work is one count with no
    gradient (B * L * d is the largest tensor DUIA would otherwise build).
    """
    table = self.memory.level1_centers if level == 0 else self.memory.level2_centers
    mu_u = tf.gather(table, index_u)
    correlated_u = tf.reduce_sum(unique_vectors * mu_u, axis=-1) >= 0  # else retrieve gives 0
    if positions.shape[0] == 1 and v_item.shape[0] != 1:
      return _attend_one_history(tf.where(correlated_u[:, None], mu_u, 0.0), v_item,
                                 positions[0], tf.cast(history_mask[0], tf.bool))
    # rank_users: each candidate reads its own user's positions.
    positions = user_rows.align(positions, v_item)
    history_mask = user_rows.align(history_mask, v_item)
    valid = tf.cast(history_mask, tf.bool)
    kept = tf.logical_and(valid, tf.gather(correlated_u, positions))  # [B, L]
    counts = _count_per_center(tf.gather(index_u, positions), tf.cast(kept, v_item.dtype),
                               table.shape[0])  # [B, N]
    zero_logits = tf.reduce_sum(tf.cast(tf.logical_and(valid, tf.logical_not(kept)),
                                        v_item.dtype), axis=-1, keepdims=True)  # [B, 1]
    scores = tf.matmul(v_item, table, transpose_b=True)  # [B, N]
    # Shift by the largest present logit for stability; softmax is shift-invariant,
    # so the shift carries no gradient.
    present = tf.where(counts > 0, scores, tf.fill(tf.shape(scores), -1e30))
    shift = tf.reduce_max(present, axis=-1, keepdims=True)
    shift = tf.stop_gradient(tf.where(zero_logits > 0, tf.maximum(shift, 0.0), shift))
    shift = tf.where(shift > -1e29, shift, tf.zeros_like(shift))  # no valid position at all
    # Present logits are <= shift; capping the absent ones (count 0) at the shift
    # keeps exp finite, so 0 * exp stays 0 and no NaN reaches the gradient.
    numerators = counts * tf.exp(tf.minimum(scores - shift, 0.0))
    # Where z = 0 the shift may be very negative and exp(-shift) inf: leave the term out.
    zero_terms = tf.where(zero_logits > 0, zero_logits * tf.exp(-shift), 0.0)
    denominator = tf.reduce_sum(numerators, axis=-1, keepdims=True) + zero_terms
    return tf.math.divide_no_nan(tf.matmul(numerators, table), denominator)


def _attend_one_history(theta_u, v_item, positions, valid):
  """UHSE's attention for one user's history and N candidates (the `rank` graph).

  The direct form of `UHSE.attend`: sum_t softmax_t(theta_t . v_item) theta_t
  over the L valid positions, [N, L] where the regrouped form is [N, centres]
  (in the demo config L = 50 against 64 and 256 centres; no gradient flows at
  serving, which is what the regrouping was for).

  Args:
    theta_u: [U, d] each distinct history item's center, zeros where not
      correlated (their logit is 0, as in `UHSE.attend`).
    v_item: [N, d] the candidates' queries.
    positions: [L] index into `theta_u` of each position.
    valid: [L] bool, the non-padding positions.
  """
  theta = tf.gather(theta_u, positions)  # [L, d]
  logits = tf.matmul(v_item, theta, transpose_b=True)  # [N, L]
  logits = tf.where(valid, logits, logits.dtype.min)
  weights = softmax.softmax(logits) * tf.cast(valid, logits.dtype)
  return tf.matmul(weights, theta)


def _count_per_center(center_ids, weights, num_centers: int):
  """[B, L] center ids and weights -> [B, num_centers] summed weights per center.

  A segment sum over row * num_centers + id, not tf.math.bincount: bincount's
  output size depends on the largest id, which XLA cannot compile, while here
  it follows from the shapes alone.
  """
  rows = tf.shape(center_ids, out_type=center_ids.dtype)[0]
  segments = tf.range(rows)[:, None] * num_centers + center_ids
  counts = tf.math.unsorted_segment_sum(weights, segments, rows * num_centers)
  return tf.reshape(counts, [-1, num_centers])


class ItemEnhancement(tf.keras.layers.Layer):
  """DUIA for items (section 4.5; docs/design.md §4.4): UIE and UPBE with roles swapped.

  The target item queries the item GHCA (weighted centers + a personal item
  vector); positive rows pull a per-item personalized vector toward the user
  centers of the users who consumed it.
  """

  def __init__(self, config: config_lib.DUIAConfig, item_buckets: int, **kwargs):
    super().__init__(**kwargs)
    self.personal = _personal_vector(item_buckets, config.personal_dim, "item_personal_vector")
    self.memory = personal_memory.PersonalizedMemory(
        item_buckets, config.memory_dim, levels=2, rate=config.rate,
        update_rule=config.update_rule, name="item_personalized_memory")
    self.generalize = _generalization(config.enhancement_dim, "item_generalization")

  def call(self, item_memory, user_memory, item_ids, v_item, v_user, positive=None,
           training=None):
    item_centers = item_memory.retrieve(v_item)
    targets = mask = None
    if positive is not None:
      targets = tf.stack(user_memory.retrieve(v_user), axis=1)
      correlated = tf.einsum("bld,bd->bl", targets, v_item) > 0
      mask = tf.logical_and(correlated, tf.cast(positive, tf.bool)[:, None])
    stored = self.memory(item_ids, targets=targets, update_mask=mask, training=training)
    return self.generalize(tf.concat(
        [weighted_centers(v_item, item_centers)] + _lookup(self.personal, item_ids)
        + [tf.reshape(stored, [-1, stored.shape[1] * stored.shape[2]])], axis=-1))
