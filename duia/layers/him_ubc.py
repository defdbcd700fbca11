"""HIM's User Behavior Clustering, UBC (Deng et al., section 3.3, eq. 6-8).

An autoencoder per session i whose code is a soft assignment to k user groups:

    beta   = softmax(W_c p_x + b_c)                 eq. 6, [k]
    mu     = sum_s beta_s g_s                       eq. 6, group embeddings G [k, d_g]
    p^_x   = sigmoid(W_r mu + b_r)                  eq. 6, the reconstruction
    c_z    = g_argmax(beta)                         eq. 7, the semi-personalized vector

and a self-supervised hinge loss pulls the reconstruction toward the user's own
higher-level representation p_z and away from other users' reconstructions
(eq. 8; "cosine similarity" in the text, so the dot products are of unit
vectors):

    L_g = sum_i sum_j max(0, 1 - cos(p^_x, p_z) + cos(p^_x, p^_x^{(j)}))

Each session has its own W_c, b_c, G, W_r, b_r (the paper's superscript i).
"""

from typing import Optional, Tuple

import tensorflow as tf


def group_hinge_loss(reconstructed: tf.Tensor, target: tf.Tensor, negative_rows: tf.Tensor,
                     session_mask: Optional[tf.Tensor] = None) -> tf.Tensor:
  """HIM eq. 8, averaged over the batch's users.

  Args:
    reconstructed: [B, T, D] p^_x of every user and session.
    target: [B, T, D] p_z.
    negative_rows: [B, p] int, the batch rows whose p^_x are each row's negatives.
    session_mask: [B, T] bool, the sessions that count (a user's empty sessions
      carry no behaviour to agree with); all when None.

  Returns:
    Scalar: sum over sessions and negatives, mean over users.
  """
  unit = tf.math.l2_normalize(reconstructed, axis=-1)
  positive = tf.reduce_sum(unit * tf.math.l2_normalize(target, axis=-1), axis=-1)  # [B, T]
  negatives = tf.gather(unit, negative_rows)  # [B, p, T, D]
  negative = tf.einsum("btd,bptd->bpt", unit, negatives)
  hinge = tf.nn.relu(1.0 - positive[:, None, :] + negative)  # [B, p, T]
  if session_mask is not None:
    hinge *= tf.cast(session_mask, hinge.dtype)[:, None, :]
  return tf.reduce_mean(tf.reduce_sum(hinge, axis=[1, 2]))


def sample_negative_rows(batch_size: tf.Tensor, num_negatives: int,
                         seed: Optional[int] = None) -> tf.Tensor:
  """[B, p] random rows of the batch, never the row itself ("p users", eq. 8).

  With a batch of one there is no other user; the row itself is returned and
  its hinge terms are constant (cos(p^_x, p^_x) = 1), so they carry no gradient.
  """
  offsets = tf.random.uniform([batch_size, num_negatives], minval=1,
                              maxval=tf.maximum(batch_size, 2), dtype=tf.int32, seed=seed)
  return tf.math.floormod(tf.range(batch_size)[:, None] + offsets, batch_size)


@tf.keras.utils.register_keras_serializable(package="duia")
class UserBehaviorClustering(tf.keras.layers.Layer):
  """UBC: the group autoencoder of every session (HIM eq. 6-7).

  Args:
    num_sessions: T.
    num_groups: k, the latent user groups per session.
    group_dim: d_g, the width of a group embedding.

  Call args:
    p_x: [B, T, D] UBP's per-session personalized representations.

  Returns:
    (reconstruction p^_x [B, T, D], group vector c_z [B, T, d_g],
    assignment beta [B, T, k]).
  """

  def __init__(self, num_sessions: int, num_groups: int, group_dim: int, **kwargs):
    super().__init__(**kwargs)
    self.num_sessions = num_sessions
    self.num_groups = num_groups
    self.group_dim = group_dim

  def build(self, input_shape):
    width = int(input_shape[-1])
    t, k, g = self.num_sessions, self.num_groups, self.group_dim
    self.assign_kernel = self.add_weight("assign_kernel", [t, width, k],
                                         initializer="glorot_uniform")
    self.assign_bias = self.add_weight("assign_bias", [t, k], initializer="zeros")
    self.groups = self.add_weight("group_embeddings", [t, k, g],
                                  initializer="glorot_uniform")
    self.reconstruct_kernel = self.add_weight("reconstruct_kernel", [t, g, width],
                                              initializer="glorot_uniform")
    self.reconstruct_bias = self.add_weight("reconstruct_bias", [t, width], initializer="zeros")
    super().build(input_shape)

  def call(self, p_x: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    if p_x.shape[1] is not None and p_x.shape[1] != self.num_sessions:
      raise ValueError(f"p_x must have {self.num_sessions} sessions. "
                       f"Received: p_x.shape={p_x.shape}")
    beta = tf.nn.softmax(tf.einsum("btd,tdk->btk", p_x, self.assign_kernel)
                         + self.assign_bias, axis=-1)
    mu = tf.einsum("btk,tkg->btg", beta, self.groups)
    reconstructed = tf.sigmoid(tf.einsum("btg,tgd->btd", mu, self.reconstruct_kernel)
                               + self.reconstruct_bias)
    # Eq. 7: the argmax group's embedding; the hard choice passes no gradient to
    # beta (the hinge loss trains the assignment), only to the chosen g_j.
    chosen = tf.one_hot(tf.argmax(beta, axis=-1), self.num_groups, dtype=beta.dtype)
    c_z = tf.einsum("btk,tkg->btg", chosen, self.groups)
    return reconstructed, c_z, beta

  def compute_output_shape(self, input_shape):
    shape = tf.TensorShape(input_shape)
    return (shape, shape[:-1].concatenate([self.group_dim]),
            shape[:-1].concatenate([self.num_groups]))

  def get_config(self):
    config = super().get_config()
    config.update(num_sessions=self.num_sessions, num_groups=self.num_groups,
                  group_dim=self.group_dim)
    return config
