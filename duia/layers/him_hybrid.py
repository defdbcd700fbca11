"""HIM's hybrid of personalized and group interest (Deng et al., section 3.4).

    p_z = concat_i p_z^i,  c_z = concat_i c_z^i                         eq. 9
    w_p, w_c = softmax(p_z W_p e_t, c_z W_c e_t)                         eq. 10
    e_p = w_p * p_z,  e_c = w_c * c_z

The target item e_t decides how much the user's own interest (UBP) and the
group's (UBC) count; the paper finds UBC weighing more for sparse users
(Figure 5b).
"""

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="duia")
class HybridInterestAttention(tf.keras.layers.Layer):
  """Target-item attention between the personalized and group vectors (eq. 10).

  Call args:
    inputs: [personalized [B, d_p] (p_z, all sessions concatenated),
      group [B, d_c] (c_z), target [B, d_t] (the target item's embedding)].

  Returns:
    ([B, d_p + d_c] concat(e_p, e_c), [B, 2] the weights (w_p, w_c)).
  """

  def build(self, input_shape):
    personalized, group, target = (tf.TensorShape(s) for s in input_shape)
    # W_p [d_p, d_t] and W_c [d_c, d_t] of eq. 10.
    self.personal_kernel = self.add_weight("personal_kernel", [personalized[-1], target[-1]],
                                           initializer="glorot_uniform")
    self.group_kernel = self.add_weight("group_kernel", [group[-1], target[-1]],
                                        initializer="glorot_uniform")
    super().build(input_shape)

  def call(self, inputs):
    personalized, group, target = inputs
    scores = tf.stack([
        tf.reduce_sum(tf.matmul(personalized, self.personal_kernel) * target, axis=-1),
        tf.reduce_sum(tf.matmul(group, self.group_kernel) * target, axis=-1)], axis=-1)
    weights = tf.nn.softmax(scores, axis=-1)
    return tf.concat([weights[:, :1] * personalized, weights[:, 1:] * group], axis=-1), weights

  def compute_output_shape(self, input_shape):
    personalized, group, _ = (tf.TensorShape(s) for s in input_shape)
    return (personalized[:-1].concatenate([personalized[-1] + group[-1]]),
            personalized[:-1].concatenate([2]))
