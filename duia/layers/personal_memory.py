"""Personalized memory: one non-trainable vector per hashed id and level (UPBE).

DUIA, section 4.3. On a positive row, the item vector retrieves its most
similar user centers mu1, mu2 (eq. 7-8); the user's personalized vectors p_l
then take a step of rate `lambda` toward them, down

    L_l = sigmoid(mu_l . p_l) * ||mu_l - p_l||^2       (eq. 9-10, w.r.t. p_l)

("gradient"), or by the weighted pull p_l += lambda * 2*sigmoid(mu_l.p_l)*(mu_l - p_l)
("weighted_pull", docs/design.md §4.3). The same layer serves items (docs/design.md §4.4, "DUIA
for items") with item ids and user centers as targets.
"""

import tensorflow as tf

from duia.layers.memory_updates import (
    UPDATE_RULES, all_reduce_sum, memory_step, state_weight, when_training)


@tf.keras.utils.register_keras_serializable(package="duia")
class PersonalizedMemory(tf.keras.layers.Layer):
  """Per-id memory [num_buckets, levels, dim], zero-initialised, moved toward targets.

  Ids are bucketed: strings by `tf.strings.to_hash_bucket_fast`, integers by
  `id mod num_buckets`. Colliding ids share a vector.

  Update (when `training` is true, the layer trainable and `targets` given):
  for each (row, level) that is enabled (`update_mask`) and whose target is not
  all zeros (a negatively correlated center retrieved as zeros stops the
  process, DUIA 4.3), the step of `memory_step` is taken; rows of the same
  bucket in a batch take the mean of their steps (per level). Only the touched
  buckets are written (`scatter_add`).

  Distribution: in a replica context with several replicas the per-bucket sums
  and counts are dense [num_buckets, levels, dim] tensors, all-reduced so every
  replica applies the same step; this costs O(num_buckets * levels * dim) per
  step and suits the bucket counts of this project. At internet scale the memory
  becomes a side table fed as features (docs/design.md §8). One replica uses
  sparse per-unique-id sums.

  Weights (non-trainable): `memory`, and `nonfinite_skipped` [] counting the
  targets with a NaN or Inf left out of an update and the row steps that came
  out non-finite and were not applied; no trainable weights.

  Args:
    num_buckets: number of hash buckets (rows of the memory).
    dim: vector width d (that of the targets).
    levels: vectors per id (2 for DUIA's two center levels).
    rate: lambda, step size.
    update_rule: "gradient" (eq. 9-10), "weighted_pull" or "ema".

  Call args:
    ids: [B] int or string ids.
    targets: [B, levels, dim] tensor, or a list of `levels` tensors [B, dim]
      (e.g. the output of `GHCAMemory.retrieve(v_item)`); read under stop_gradient.
    update_mask: bool [B] or [B, levels], rows (levels) allowed to update, e.g.
      positive rows whose centers are positively correlated with v_user.
    training: Python bool or boolean tensor.

  Returns:
    [B, levels, dim]: the stored vectors of `ids`, read before this batch's update.

  Example:
    >>> memory = PersonalizedMemory(num_buckets=10, dim=4)
    >>> memory(tf.constant([3, 7])).shape
    TensorShape([2, 2, 4])
  """

  def __init__(self, num_buckets: int, dim: int, levels: int = 2, rate: float = 0.05,
               update_rule: str = "weighted_pull", **kwargs):
    super().__init__(**kwargs)
    if num_buckets < 1 or dim < 1 or levels < 1:
      raise ValueError("PersonalizedMemory needs num_buckets, dim, levels >= 1. Received: "
                       f"num_buckets={num_buckets}, dim={dim}, levels={levels}")
    if update_rule not in UPDATE_RULES:
      raise ValueError(f"update_rule must be one of {UPDATE_RULES}. "
                       f"Received: update_rule={update_rule!r}")
    if rate <= 0:
      raise ValueError(f"PersonalizedMemory needs rate > 0. Received: rate={rate}")
    self.num_buckets = int(num_buckets)
    self.dim = int(dim)
    self.levels = int(levels)
    self.rate = float(rate)
    self.update_rule = update_rule

  def build(self, input_shape):
    self.memory = state_weight(self, "memory", [self.num_buckets, self.levels, self.dim])
    self.nonfinite_skipped = state_weight(self, "nonfinite_skipped", [])
    super().build(input_shape)

  def bucket(self, ids) -> tf.Tensor:
    """The memory rows (int64 [B]) of `ids`."""
    ids = tf.convert_to_tensor(ids)
    if ids.shape.rank != 1:
      raise ValueError(f"PersonalizedMemory expects ids [B]. Received: ids.shape={ids.shape}")
    if ids.dtype == tf.string:
      return tf.strings.to_hash_bucket_fast(ids, self.num_buckets)
    if not ids.dtype.is_integer:
      raise ValueError("PersonalizedMemory expects int or string ids. "
                       f"Received: ids.dtype={ids.dtype}")
    return tf.math.floormod(tf.cast(ids, tf.int64), self.num_buckets)

  def call(self, ids, targets=None, update_mask=None, training=None):
    rows = self.bucket(ids)
    stored = tf.gather(self.memory, rows)
    if targets is not None:
      when_training(self, training, lambda enabled: self._update(
          rows, stored, targets, update_mask, enabled))
    return stored

  def _update(self, rows, stored, targets, update_mask, enabled=None):
    if isinstance(targets, (list, tuple)):
      targets = tf.stack(list(targets), axis=1)
    targets = tf.stop_gradient(tf.cast(targets, self.dtype))
    if targets.shape.rank != 3 or targets.shape[1:] != (self.levels, self.dim):
      raise ValueError(f"PersonalizedMemory expects targets [B, {self.levels}, {self.dim}]. "
                       f"Received: targets.shape={targets.shape}")
    take = tf.reduce_any(tf.not_equal(targets, 0.0), axis=-1)  # [B, levels]
    if update_mask is not None:
      mask = tf.cast(update_mask, tf.bool)
      take = tf.logical_and(take, mask[:, None] if mask.shape.rank == 1 else mask)
    if enabled is not None:
      take = tf.logical_and(take, enabled)
    # As GHCA: a NaN/Inf target is counted and left out (and zeroed, so no 0 * NaN).
    finite = tf.reduce_all(tf.math.is_finite(targets), axis=-1)  # [B, levels]
    skipped = tf.reduce_sum(tf.cast(tf.logical_and(take, tf.logical_not(finite)), tf.float32))
    take = tf.logical_and(take, finite)
    targets = tf.where(finite[..., None], targets, tf.zeros_like(targets))
    delta = memory_step(self.update_rule, targets, stored)
    delta = tf.where(take[..., None], delta, tf.zeros_like(delta))
    take_f = tf.cast(take, delta.dtype)

    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
      sums, counts, skipped = all_reduce_sum((
          tf.math.unsorted_segment_sum(delta, rows, self.num_buckets),
          tf.math.unsorted_segment_sum(take_f, rows, self.num_buckets), skipped))
      touched = tf.where(tf.reduce_any(counts > 0, axis=-1))[:, 0]
      sums, counts = tf.gather(sums, touched), tf.gather(counts, touched)
    else:
      unique_rows, segment = tf.unique(rows)
      n = tf.size(unique_rows)
      sums = tf.math.unsorted_segment_sum(delta, segment, n)
      counts = tf.math.unsorted_segment_sum(take_f, segment, n)
      keep = tf.reduce_any(counts > 0, axis=-1)
      touched = tf.boolean_mask(unique_rows, keep)
      sums, counts = tf.boolean_mask(sums, keep), tf.boolean_mask(counts, keep)
    step = self.rate * sums / tf.maximum(counts, 1.0)[..., None]
    step_ok = tf.reduce_all(tf.math.is_finite(step), axis=-1)  # an overflowed step
    skipped += tf.reduce_sum(tf.cast(tf.logical_not(step_ok), tf.float32))
    self.memory.scatter_add(tf.IndexedSlices(
        tf.where(step_ok[..., None], step, tf.zeros_like(step)), touched))
    self.nonfinite_skipped.assign_add(skipped)

  def compute_output_shape(self, input_shape):
    return tf.TensorShape([tf.TensorShape(input_shape)[0], self.levels, self.dim])

  def get_config(self):
    config = super().get_config()
    config.update(num_buckets=self.num_buckets, dim=self.dim, levels=self.levels,
                  rate=self.rate, update_rule=self.update_rule)
    return config
