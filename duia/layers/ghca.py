"""GHCA: the gradient-based hierarchical stream-clustering memory of DUIA.

DUIA, section 4.2 (and 4.4 for items). A query `v` (a tower output) is assigned
to a level-1 center and then to one of that center's `K` children:

    i = argmax_i v . mu1_i                                  (eq. 2)
    j = argmax_j v . mu2_j, j among the children of i       (eq. 3)

and, during training, the assigned centers take a step of rate `rho` that
averages over the sampled queries assigned to them in the batch. Update rules:

    "gradient"       down L = sigmoid(v.mu) * ||v - mu||^2, v constant (eq. 4-5)
    "weighted_pull"  mu += rho * 2 * sigmoid(v.mu) * (v - mu): sigmoid(v.mu) is a
                     confidence weight under stop_gradient (docs/design.md §4.3; eq. 4-5
                     is also minimised by pushing the center away, so its
                     gradient runs off for query norms above about 2)
    "ema"            mu += rho * (mean(v) - mu)   (UIE, KDD paper formula 1)

With `num_children` 0 or 1 the memory is flat (one level), as in UIE.
"""

import math
import random
from typing import Optional, Tuple

import tensorflow as tf

from duia.layers.memory_updates import (  # noqa: F401  (UPDATE_RULES, memory_step: re-exported)
    UPDATE_RULES, all_reduce_sum, memory_step, state_weight, when_training)

# Children of a re-seeded center start at its query plus noise of this size
# relative to the query's per-coordinate scale, so that they can split.
_RESEED_CHILD_NOISE = 0.05


@tf.keras.utils.register_keras_serializable(package="duia")
class GHCAMemory(tf.keras.layers.Layer):
  """Two-level (or flat) cluster-center memory updated by stream clustering.

  Holds non-trainable centers, updated inside `call` when `training` is true
  and the layer is trainable (like BatchNormalization's moving statistics),
  saved in checkpoints and SavedModels, frozen at serving.

  Weights (all non-trainable), created in `build` from the query width `d`:
    level1_centers [N1, d], level2_centers [N1*K, d]: RandomNormal with stddev
      1/sqrt(d), so a random center has about unit norm. Children of level-1
      center i are rows i*K .. i*K+K-1.
    level1_hits [N1], level2_hits [N1*K]: float32, cumulative number of sampled
      queries assigned (for hit-fraction reports, DUIA Table 9).
    level1_recent_hits [N1]: hits since the last re-seed.
    steps []: int64, number of update steps.
    nonfinite_skipped []: float32, sampled queries with a NaN or Inf that were
      left out of an update, plus center steps that came out non-finite and
      were not applied: NaN/Inf never reach the centers.
  That is 7 weights, or 5 when flat (no level-2 weights).

  Sampling: about `sample_rate` of the eligible rows (those with `update_mask`
  true) take part in an update. With `sample_groups` (e.g. 0 = low-active,
  1 = high-active) each group present among the eligible rows contributes the
  same expected number of rows: row probability
  p_g = min(1, sample_rate * n / (G * n_g)), n the eligible rows, n_g those of
  group g, G the groups present (DUIA 4.2: "sampling based on user's active
  type"). The draw is stateless, seeded by (seed, steps) and the replica id, so
  a run is reproducible; `sample_mask` returns the draw of the next update.
  `sample_rate >= 1` takes every eligible row.

  Beyond the paper: with `reseed_dead_every > 0`, every that many update steps
  the level-1 centers without hits since the last re-seed are re-seeded from
  random queries of the current batch (their children from the same query plus
  5% noise), and the recent hits are reset.

  Args:
    num_level1: N1, level-1 centers.
    num_children: K, children per level-1 center; 0 or 1 gives a flat memory.
    update_rule: "gradient" (eq. 4-5), "weighted_pull" or "ema" (see module doc).
    rate: rho, step size of the update.
    sample_rate: fraction of rows that take part in an update.
    reseed_dead_every: re-seed period in update steps; 0 turns it off.
    seed: seeds initialisation, sampling and re-seeding; None draws one (and
      `get_config` records it).

  Call args:
    queries: [B, d], read under stop_gradient.
    training: Python bool or boolean tensor; updates only if true.
    sample_groups: optional int [B], the activity group of each row.
    update_mask: optional bool [B], rows allowed to update (e.g. positives).

  Returns:
    A tuple with one [B, d] tensor per level, `(mu1, mu2)` (or `(mu1,)` when
    flat): the assigned centers read before this batch's update, zeros where
    v . mu < 0 (DUIA 4.2: the enhancement stops for negatively correlated
    centers).

  Example:
    >>> memory = GHCAMemory(num_level1=4, num_children=2, seed=1)
    >>> mu1, mu2 = memory(tf.ones([3, 8]), training=True)
    >>> mu1.shape, mu2.shape
    (TensorShape([3, 8]), TensorShape([3, 8]))
  """

  def __init__(self, num_level1: int, num_children: int = 0,
               update_rule: str = "weighted_pull", rate: float = 0.05,
               sample_rate: float = 0.3, reseed_dead_every: int = 0,
               seed: Optional[int] = None, **kwargs):
    super().__init__(**kwargs)
    if num_level1 < 1 or num_children < 0:
      raise ValueError("GHCAMemory needs num_level1 >= 1 and num_children >= 0. Received: "
                       f"num_level1={num_level1}, num_children={num_children}")
    if update_rule not in UPDATE_RULES:
      raise ValueError(f"update_rule must be one of {UPDATE_RULES}. "
                       f"Received: update_rule={update_rule!r}")
    if rate <= 0 or not 0 < sample_rate or reseed_dead_every < 0:
      raise ValueError("GHCAMemory needs rate > 0, sample_rate > 0, reseed_dead_every >= 0. "
                       f"Received: rate={rate}, sample_rate={sample_rate}, "
                       f"reseed_dead_every={reseed_dead_every}")
    self.num_level1 = int(num_level1)
    self.num_children = int(num_children)
    self.update_rule = update_rule
    self.rate = float(rate)
    self.sample_rate = float(sample_rate)
    self.reseed_dead_every = int(reseed_dead_every)
    self.seed = int(seed) if seed is not None else random.randrange(2**31 - 1)

  @property
  def hierarchical(self) -> bool:
    return self.num_children > 1

  @property
  def num_levels(self) -> int:
    return 2 if self.hierarchical else 1

  def build(self, input_shape):
    input_shape = tf.TensorShape(input_shape)
    if input_shape.rank != 2 or input_shape[-1] is None:
      raise ValueError(f"GHCAMemory expects queries [B, d] with a known d. "
                       f"Received: input_shape={input_shape}")
    self.dim = int(input_shape[-1])
    stddev = 1.0 / math.sqrt(self.dim)
    n1, n2 = self.num_level1, self.num_level1 * self.num_children
    self.level1_centers = state_weight(
        self, "level1_centers", [n1, self.dim],
        tf.keras.initializers.RandomNormal(stddev=stddev, seed=self.seed))
    self.level1_hits = state_weight(self, "level1_hits", [n1])
    self.level1_recent_hits = state_weight(self, "level1_recent_hits", [n1])
    self.level2_centers = self.level2_hits = None
    if self.hierarchical:
      self.level2_centers = state_weight(
          self, "level2_centers", [n2, self.dim],
          tf.keras.initializers.RandomNormal(stddev=stddev, seed=self.seed + 1))
      self.level2_hits = state_weight(self, "level2_hits", [n2])
    self.steps = state_weight(self, "steps", [], dtype=tf.int64)
    self.nonfinite_skipped = state_weight(self, "nonfinite_skipped", [])
    super().build(input_shape)

  def _queries(self, queries) -> tf.Tensor:
    queries = tf.stop_gradient(tf.cast(queries, self.dtype))
    if not self.built:
      self.build(queries.shape)
    if queries.shape.rank != 2 or queries.shape[-1] != self.dim:
      raise ValueError(f"GHCAMemory expects queries [B, {self.dim}]. "
                       f"Received: queries.shape={queries.shape}")
    return queries

  def _levels(self):
    if self.hierarchical:
      return ((self.level1_centers, self.level1_hits), (self.level2_centers, self.level2_hits))
    return ((self.level1_centers, self.level1_hits),)

  def assign(self, queries) -> Tuple[tf.Tensor, ...]:
    """Level-1 index i (eq. 2) and global level-2 index j among i's children (eq. 3).

    Returns:
      `(i, j)` int32 [B] each, or `(i,)` when flat.
    """
    q = self._queries(queries)
    i = tf.argmax(tf.matmul(q, self.level1_centers, transpose_b=True), axis=-1,
                  output_type=tf.int32)
    if not self.hierarchical:
      return (i,)
    children = tf.gather(
        tf.reshape(self.level2_centers, [self.num_level1, self.num_children, self.dim]), i)
    # Multiply and sum, not einsum("bd,bkd->bk"): the same numbers, without
    # oneDNN's einsum kernel (~0.1 ms a call at serving sizes).
    best_child = tf.argmax(tf.reduce_sum(q[:, None, :] * children, axis=-1), axis=-1,
                           output_type=tf.int32)
    return (i, i * self.num_children + best_child)

  def _gather_positive(self, q, indices):
    out = []
    for (centers, _), index in zip(self._levels(), indices):
      mu = tf.gather(centers, index)
      negative = tf.reduce_sum(q * mu, axis=-1, keepdims=True) < 0
      out.append(tf.where(negative, tf.zeros_like(mu), mu))
    return tuple(out)

  def retrieve(self, queries) -> Tuple[tf.Tensor, ...]:
    """The assigned centers `(mu1, mu2)` ([B, d] each; `(mu1,)` when flat), zeros if v.mu < 0."""
    q = self._queries(queries)
    return self._gather_positive(q, self.assign(q))

  def retrieve_top_k(self, queries, k: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """The `k` most similar level-1 centers (UIE, KDD formula 2 input).

    Returns:
      centers [B, k, d] (zeros where v.mu < 0) and their scores v.mu [B, k].
    """
    q = self._queries(queries)
    scores, index = tf.math.top_k(tf.matmul(q, self.level1_centers, transpose_b=True), k=k)
    mu = tf.gather(self.level1_centers, index)
    return tf.where(scores[..., None] < 0, tf.zeros_like(mu), mu), scores

  def call(self, queries, training=None, sample_groups=None, update_mask=None):
    q = self._queries(queries)
    indices = self.assign(q)
    outputs = self._gather_positive(q, indices)
    when_training(self, training, lambda enabled: self._update(
        q, indices, sample_groups, update_mask, enabled))
    return outputs

  def _seed(self, salt: int) -> tf.Tensor:
    seed = tf.stack([tf.constant(self.seed, tf.int64), self.steps.read_value()])
    seed = tf.random.experimental.stateless_fold_in(seed, salt)
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
      seed = tf.random.experimental.stateless_fold_in(seed, ctx.replica_id_in_sync_group)
    return seed

  def sample_mask(self, batch_size, sample_groups=None, update_mask=None) -> tf.Tensor:
    """The rows [B] (bool) that the next update step would take (see class doc)."""
    eligible = (tf.ones([batch_size], tf.bool) if update_mask is None
                else tf.reshape(tf.cast(update_mask, tf.bool), [batch_size]))
    if self.sample_rate >= 1.0:
      return eligible
    if sample_groups is None:
      prob = tf.fill([batch_size], self.sample_rate)
    else:
      eligible_f = tf.cast(eligible, tf.float32)
      groups, row_group = tf.unique(tf.reshape(sample_groups, [batch_size]))
      per_group = tf.math.unsorted_segment_sum(eligible_f, row_group, tf.size(groups))
      present = tf.reduce_sum(tf.cast(per_group > 0, tf.float32))
      prob = tf.minimum(1.0, self.sample_rate * tf.reduce_sum(eligible_f) / (
          tf.maximum(present, 1.0) * tf.maximum(tf.gather(per_group, row_group), 1.0)))
    draw = tf.random.stateless_uniform([batch_size], self._seed(salt=0))
    return tf.logical_and(eligible, draw < prob)

  def _update(self, q, indices, sample_groups, update_mask, enabled=None):
    take = self.sample_mask(tf.shape(q)[0], sample_groups, update_mask)
    if enabled is not None:
      take = tf.logical_and(take, enabled)
    # A NaN or Inf query (a diverged tower, a bad feature) would make its center
    # NaN for good: such rows are counted and left out, and zeroed so that no
    # 0 * NaN enters the sums.
    finite = tf.reduce_all(tf.math.is_finite(q), axis=-1)
    skipped_queries = tf.reduce_sum(tf.cast(tf.logical_and(take, tf.logical_not(finite)),
                                            tf.float32))
    take = tf.logical_and(take, finite)
    q = tf.where(finite[:, None], q, tf.zeros_like(q))
    take_f = tf.cast(take, q.dtype)
    stats = []
    for (centers, _), index in zip(self._levels(), indices):  # pre-update values
      delta = memory_step(self.update_rule, q, tf.gather(centers, index))
      delta = tf.where(take[:, None], delta, tf.zeros_like(delta))
      n = centers.shape[0]
      stats.append((tf.math.unsorted_segment_sum(delta, index, n),
                    tf.math.unsorted_segment_sum(take_f, index, n)))
    stats, skipped_queries = all_reduce_sum((stats, skipped_queries))
    skipped = skipped_queries
    for (centers, hits), (sums, counts) in zip(self._levels(), stats):
      step = self.rate * sums / tf.maximum(counts, 1.0)[:, None]
      # Finite queries can still overflow a step (the "gradient" rule squares
      # distances); such a center keeps its value.
      step_ok = tf.reduce_all(tf.math.is_finite(step), axis=-1)
      skipped += tf.reduce_sum(tf.cast(tf.logical_not(step_ok), tf.float32))
      centers.assign_add(tf.where(step_ok[:, None], step, tf.zeros_like(step)))
      hits.assign_add(counts)
    self.level1_recent_hits.assign_add(stats[0][1])
    self.nonfinite_skipped.assign_add(skipped)
    if self.reseed_dead_every > 0:
      self._maybe_reseed(q, finite, enabled)
    self.steps.assign_add(1 if enabled is None else tf.cast(enabled, tf.int64))

  def _maybe_reseed(self, q, finite, enabled):
    # Branch-free (tf.where, not tf.cond): assigns to mirrored variables inside a
    # tf.cond in a replica context are not allowed.
    batch = tf.shape(q)[0]
    due = tf.logical_and(tf.equal((self.steps + 1) % self.reseed_dead_every, 0), batch > 0)
    if enabled is not None:
      due = tf.logical_and(due, enabled)
    dead = tf.logical_and(due, tf.equal(self.level1_recent_hits, 0.0))
    rows = tf.random.stateless_uniform([self.num_level1], self._seed(salt=1), minval=0,
                                       maxval=tf.maximum(batch, 1), dtype=tf.int32)
    fresh = tf.gather(tf.concat([q, tf.zeros([1, self.dim], q.dtype)], 0), rows)
    # A center drawn onto a non-finite query (zeroed in `_update`) waits for the next re-seed.
    dead = tf.logical_and(dead, tf.gather(tf.concat([finite, [False]], 0), rows))
    self.level1_centers.assign(tf.where(dead[:, None], fresh, self.level1_centers))
    if self.hierarchical:
      parent = tf.repeat(fresh, self.num_children, axis=0)
      scale = _RESEED_CHILD_NOISE * tf.norm(parent, axis=-1, keepdims=True) / math.sqrt(self.dim)
      noise = tf.random.stateless_normal(tf.shape(parent), self._seed(salt=2)) * scale
      dead2 = tf.repeat(dead, self.num_children)
      self.level2_centers.assign(tf.where(dead2[:, None], parent + noise, self.level2_centers))
    self.level1_recent_hits.assign(
        tf.where(due, tf.zeros_like(self.level1_recent_hits), self.level1_recent_hits))

  def hit_fraction(self, queries=None) -> tf.Tensor:
    """Fraction of level-1 centers hit (DUIA Table 9).

    Args:
      queries: optional [B, d]; if given, the fraction that is the assignment
        of at least one query (no state changes, e.g. on eval data); else from
        the cumulative training hits.
    """
    if queries is None:
      hits = self.level1_hits
    else:
      (i, *_) = self.assign(queries)
      hits = tf.math.unsorted_segment_sum(tf.ones_like(i), i, self.num_level1)
    return tf.reduce_mean(tf.cast(hits > 0, tf.float32))

  def dead_centers(self, recent: bool = False) -> tf.Tensor:
    """Bool [N1]: level-1 centers never hit (or, with `recent`, not since the last re-seed)."""
    hits = self.level1_recent_hits if recent else self.level1_hits
    return tf.equal(hits, 0.0)

  def compute_output_shape(self, input_shape):
    input_shape = tf.TensorShape(input_shape)
    return (tf.TensorShape([input_shape[0], input_shape[-1]]),) * self.num_levels

  def get_config(self):
    config = super().get_config()
    config.update(num_level1=self.num_level1, num_children=self.num_children,
                  update_rule=self.update_rule, rate=self.rate, sample_rate=self.sample_rate,
                  reseed_dead_every=self.reseed_dead_every, seed=self.seed)
    return config
