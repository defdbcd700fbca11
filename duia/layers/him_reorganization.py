"""HIM's reorganization layer (Deng et al., section 3.1).

A user's behaviour (the consumption history, or the negatives: exposures
without a valid consumption) is split into T time sessions by its age at the
exposure; within each session the distinct items are re-ranked by how often
the user interacted with them, most frequent first ("more frequent
interactions have greater confidence"), and the top n are kept with their
frequencies.

Ties in frequency keep the most recent item first; the inputs are most recent
first (the data contract), so that is the lower position.
"""

from typing import Sequence, Tuple

import tensorflow as tf


def session_index(ages: tf.Tensor, boundaries: Sequence[float]) -> tf.Tensor:
  """Session of each position: 0 for age < boundaries[0], ..., T-1 for the oldest.

  Args:
    ages: [B, L] ages in days.
    boundaries: ascending session boundaries in days (T - 1 of them).

  Returns:
    [B, L] int32 in [0, T - 1].
  """
  index = tf.zeros_like(ages, dtype=tf.int32)
  for boundary in boundaries:
    index += tf.cast(ages >= boundary, tf.int32)
  return index


@tf.keras.utils.register_keras_serializable(package="duia")
class SessionReorganization(tf.keras.layers.Layer):
  """Splits behaviour into sessions and re-ranks each by frequency (HIM 3.1).

  Args:
    session_days: ascending session boundaries in days; T = len + 1.
    top_n: items kept per session (n of HIM section 3.2).

  Call args:
    ids: [B, L] item ids, 0 for padding.
    ages: [B, L] float ages in days at the exposure, aligned with `ids`.

  Returns:
    (ids [B, T, n], frequencies [B, T, n] float32): each session's distinct
    items, most frequent first, padded with id 0 and frequency 0.
  """

  def __init__(self, session_days: Sequence[float], top_n: int, **kwargs):
    super().__init__(**kwargs)
    self.session_days = tuple(float(d) for d in session_days)
    self.top_n = top_n

  @property
  def num_sessions(self) -> int:
    return len(self.session_days) + 1

  def call(self, ids: tf.Tensor, ages: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    length = tf.shape(ids)[1]
    # Room for top_n even when the history is shorter (pad positions never win).
    width = tf.maximum(length, self.top_n)
    ids = tf.pad(ids, [[0, 0], [0, width - length]])
    ages = tf.pad(tf.cast(ages, tf.float32), [[0, 0], [0, width - length]])
    valid = tf.not_equal(ids, 0)
    session = session_index(ages, self.session_days)
    # same[b, i, j]: positions i and j hold the same item in the same session.
    same = tf.logical_and(
        tf.logical_and(tf.equal(ids[:, :, None], ids[:, None, :]),
                       tf.equal(session[:, :, None], session[:, None, :])),
        tf.logical_and(valid[:, :, None], valid[:, None, :]))
    counts = tf.reduce_sum(tf.cast(same, tf.int32), axis=-1)  # [B, W]
    earlier = tf.linalg.band_part(tf.ones([width, width], tf.bool), -1, 0)
    earlier = tf.logical_and(earlier, tf.logical_not(tf.eye(width, dtype=tf.bool)))
    repeated = tf.reduce_any(tf.logical_and(same, earlier[None]), axis=-1)
    first = tf.logical_and(valid, tf.logical_not(repeated))  # one slot per distinct item
    # Rank key: frequency first, then the earlier (more recent) position; > 0 for
    # every distinct item, -1 for everything else.
    positions = tf.range(width)
    key = counts * (width + 1) + (width - positions)[None, :]
    in_session = tf.equal(session[:, None, :], tf.range(self.num_sessions)[None, :, None])
    key = tf.where(tf.logical_and(in_session, first[:, None, :]), key[:, None, :], -1)
    top_keys, top_positions = tf.math.top_k(key, k=self.top_n, sorted=True)  # [B, T, n]
    kept = top_keys > 0
    out_ids = tf.where(kept, tf.gather(ids, top_positions, batch_dims=1),
                       tf.zeros_like(top_positions, ids.dtype))
    frequencies = tf.where(
        kept, tf.cast(tf.gather(counts, top_positions, batch_dims=1), tf.float32), 0.0)
    return out_ids, frequencies

  def get_config(self):
    config = super().get_config()
    config.update(session_days=list(self.session_days), top_n=self.top_n)
    return config
