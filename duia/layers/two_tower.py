"""The auxiliary two-tower model that gives DUIA its user and item vectors.

docs/design.md §4.2, DUIA section 4.2 and eq. 1. The towers read the ranker's
own embeddings under `stop_gradient`, so nothing the auxiliary model learns
flows back into the ranker; they are trained by their own loss:

    y_hat  = sigmoid(v_user . v_item)
    w      = 1 + sigmoid(merge_score)            (merge_score under stop_gradient)
    L_aux  = -mean(w * y * log(y_hat) + (1 - y) * log(1 - y_hat))
"""

from typing import Sequence, Tuple

import tensorflow as tf


def _tower(units: Sequence[int], output_dim: int, name: str) -> tf.keras.Sequential:
  layers = [tf.keras.layers.Dense(u, activation="relu") for u in units]
  return tf.keras.Sequential(layers + [tf.keras.layers.Dense(output_dim)], name=name)


@tf.keras.utils.register_keras_serializable(package="duia")
class AuxiliaryTwoTower(tf.keras.layers.Layer):
  """User tower and item tower over stop-gradient inputs.

  Args:
    tower_units: hidden sizes of each tower (paper: 256, 128).
    output_dim: width of v_user and v_item (paper: 64).

  Call args:
    user_inputs: [B, Du] user-interest features (profile and behaviour).
    item_inputs: [B, Di] item features.

  Returns:
    (v_user [B, output_dim], v_item [B, output_dim]).
  """

  def __init__(self, tower_units: Sequence[int], output_dim: int, **kwargs):
    super().__init__(**kwargs)
    self.tower_units = list(tower_units)
    self.output_dim = output_dim
    self.user_tower = _tower(self.tower_units, output_dim, "user_tower")
    self.item_tower = _tower(self.tower_units, output_dim, "item_tower")

  def user_vector(self, user_inputs: tf.Tensor) -> tf.Tensor:
    return self.user_tower(tf.stop_gradient(user_inputs))

  def item_vector(self, item_inputs: tf.Tensor) -> tf.Tensor:
    return self.item_tower(tf.stop_gradient(item_inputs))

  def call(self, user_inputs: tf.Tensor, item_inputs: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    return self.user_vector(user_inputs), self.item_vector(item_inputs)

  def get_config(self):
    config = super().get_config()
    config.update(tower_units=self.tower_units, output_dim=self.output_dim)
    return config


def auxiliary_loss(v_user: tf.Tensor, v_item: tf.Tensor, labels: tf.Tensor,
                   merge_score: tf.Tensor) -> tf.Tensor:
  """DUIA eq. 1: BCE of sigmoid(v_user . v_item), positives weighted 1 + sigmoid(merge).

  Args:
    v_user, v_item: [B, d] tower outputs.
    labels: [B] or [B, 1] valid-consumption labels in {0, 1}.
    merge_score: [B] the ranker's fused score; read under stop_gradient.

  Returns:
    The scalar loss.
  """
  labels = tf.reshape(tf.cast(labels, tf.float32), [-1])
  logits = tf.reduce_sum(v_user * v_item, axis=-1)
  weights = 1.0 + tf.sigmoid(tf.stop_gradient(tf.reshape(merge_score, [-1])))
  # log(sigmoid(x)) and log(1 - sigmoid(x)) in their numerically stable forms.
  log_p = -tf.nn.softplus(-logits)
  log_not_p = -tf.nn.softplus(logits)
  return -tf.reduce_mean(weights * labels * log_p + (1.0 - labels) * log_not_p)
