"""HIM's User Behavior Pyramid, UBP (Deng et al., section 3.2, eq. 1-5).

Per session i (all T at once):

    e^_j   = f_j * e_j                                   eq. 1, positives
    e^_neg = sum_j f_j * e_neg_j                          eq. 2, sum pooling
    d_j    = || e^_j - e^_neg ||_2                        eq. 2, euclidean
    a_j    = softmax_j(d_j);  e~_j = a_j * e^_j            eq. 3
    p_x    = concat(flatten(GRU(e~_1 .. e~_n)), e^_neg)    eq. 4
    p_z    = self-attention over the T sessions' p_x       eq. 5

Positives farther from what the user skipped weigh more (eq. 3). The GRU reads
the positives in frequency order (the reorganization layer's order), not in time
order. Padding has frequency 0, so it adds nothing to eq. 1-2; it is masked out
of eq. 3, and its GRU states are zeroed (padding comes last, so it never reaches
a real position's state).
"""

from typing import Tuple

import tensorflow as tf


def distance_attention(positives: tf.Tensor, negative: tf.Tensor,
                       valid: tf.Tensor) -> tf.Tensor:
  """HIM eq. 2-3: softmax over the positives of their distance to the negative.

  Args:
    positives: [..., n, d] frequency-weighted positive embeddings (e^_j).
    negative: [..., d] the compact negative (e^_neg).
    valid: [..., n] bool, the real (non-padding) positives.

  Returns:
    [..., n] weights a_j, summing to 1 over the valid positives; all 0 where
    there is none.
  """
  squared = tf.reduce_sum(tf.square(positives - negative[..., None, :]), axis=-1)
  # tf.norm's gradient at 0 is NaN (padding often sits exactly on an empty
  # negative); below 1e-12 the floor takes the gradient instead.
  distances = tf.sqrt(tf.maximum(squared, 1e-12))
  logits = tf.where(valid, distances, tf.fill(tf.shape(distances), distances.dtype.min))
  return tf.nn.softmax(logits, axis=-1) * tf.cast(valid, distances.dtype)


def sessions_present(positive_frequency: tf.Tensor, negative_frequency: tf.Tensor) -> tf.Tensor:
  """[B, T] bool: the sessions holding any behaviour, positive or negative."""
  return tf.logical_or(tf.reduce_any(positive_frequency > 0, axis=-1),
                       tf.reduce_any(negative_frequency > 0, axis=-1))


@tf.keras.utils.register_keras_serializable(package="duia")
class UserBehaviorPyramid(tf.keras.layers.Layer):
  """UBP: per-session personalized representations p_x and p_z (HIM eq. 1-5).

  Args:
    gru_units: hidden size of the GRU over each session's positives.
    attention_dim: key width of the self-attention across sessions (eq. 5).

  Call args:
    positives: [B, T, n, d] embeddings of each session's positives.
    positive_frequency: [B, T, n] their frequencies (0 for padding).
    negatives: [B, T, m, d] embeddings of each session's negatives.
    negative_frequency: [B, T, m] their frequencies (0 for padding).

  Returns:
    (p_x, p_z), each [B, T, n * gru_units + d].
  """

  def __init__(self, gru_units: int, attention_dim: int, **kwargs):
    super().__init__(**kwargs)
    self.gru_units = gru_units
    self.attention_dim = attention_dim
    self.gru = tf.keras.layers.GRU(self.gru_units, return_sequences=True, name="ubp_gru")
    # Eq. 5: one head, the weighted sum of linearly transformed p_x (value
    # projection W), projected back to p_x's width so p_z and p_x compare (eq. 8).
    self.self_attention = tf.keras.layers.MultiHeadAttention(
        num_heads=1, key_dim=self.attention_dim, name="ubp_session_attention")

  def call(self, positives, positive_frequency, negatives, negative_frequency):
    batch, sessions = tf.shape(positives)[0], tf.shape(positives)[1]
    n, d = positives.shape[2], positives.shape[3]
    weighted = positive_frequency[..., None] * positives  # eq. 1
    negative = tf.reduce_sum(negative_frequency[..., None] * negatives, axis=2)  # eq. 2
    valid = positive_frequency > 0
    attention = distance_attention(weighted, negative, valid)  # eq. 2-3
    attended = attention[..., None] * weighted
    states = self.gru(tf.reshape(attended, [-1, n, d]))  # eq. 4, frequency order
    states = tf.reshape(states, [batch, sessions, n, self.gru_units])
    states *= tf.cast(valid, states.dtype)[..., None]
    p_x = tf.concat([tf.reshape(states, [batch, sessions, n * self.gru_units]), negative],
                    axis=-1)
    # Sessions with no behaviour at all are not attended to.
    present = sessions_present(positive_frequency, negative_frequency)
    mask = tf.logical_and(tf.ones_like(present)[:, :, None], present[:, None, :])
    p_z = self.self_attention(p_x, p_x, attention_mask=mask)  # eq. 5
    return p_x, p_z

  def compute_output_shape(self, input_shape) -> Tuple[tf.TensorShape, tf.TensorShape]:
    positives = tf.TensorShape(input_shape[0])
    width = positives[2] * self.gru_units + positives[3]
    shape = positives[:2].concatenate([width])
    return shape, shape

  def get_config(self):
    config = super().get_config()
    config.update(gru_units=self.gru_units, attention_dim=self.attention_dim)
    return config
