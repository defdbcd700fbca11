"""The PLE multi-task ranker (Tang et al., RecSys 2020) as a TFRS model.

    transformed features -> FeatureEmbedding -> x
    x -> CGC level 1 .. level L (task + shared experts, gates) -> task towers
    towers -> per-task predictions -> fused ranking score

Each task's loss and metrics are a `tfrs.tasks.Ranking`; the model's loss is
their weighted sum. Binary tasks predict probabilities; `watch_time` predicts
log1p(seconds) (its label is log1p'd by Transform).
"""

from typing import Dict, List, Optional, Tuple

import tensorflow as tf
import tensorflow_recommenders as tfrs

from duia.layers import cgc
from duia.models import config as config_lib
from duia.models import distribution
from duia.models import features
from duia.models import inputs as inputs_lib


def _task(task: str) -> tfrs.tasks.Ranking:
  # Per-row losses (Reduction.NONE), averaged in `compute_loss`: Keras refuses
  # its default mean reduction outside `compile()` under a tf.distribute
  # strategy, and the replicas' scaling is done once, in `train_step`.
  none = tf.keras.losses.Reduction.NONE
  if task in features.BINARY_TASKS:
    return tfrs.tasks.Ranking(
        loss=tf.keras.losses.BinaryCrossentropy(reduction=none),
        metrics=[tf.keras.metrics.AUC(name=f"{task}_auc")])
  return tfrs.tasks.Ranking(
      loss=tf.keras.losses.MeanSquaredError(reduction=none),
      metrics=[tf.keras.metrics.RootMeanSquaredError(name=f"{task}_rmse")])


def fuse(predictions: Dict[str, tf.Tensor], config: config_lib.TrainingConfig) -> tf.Tensor:
  """Multi-task fusion into one ranking score [B].

  "product": prod_k max(p_k, 0) ** w_k; "sum": sum_k w_k * p_k. Watch time enters
  as predicted log1p(seconds), so no single task dominates by its units.
  """
  parts = []
  for task in config.tasks:
    p = tf.reshape(predictions[task], [-1])
    w = config.fusion_weight(task)
    if config.fusion == "product":
      parts.append(tf.pow(tf.maximum(p, 0.0) + 1e-7, w))
    else:
      parts.append(w * p)
  if config.fusion == "product":
    return tf.reduce_prod(tf.stack(parts, axis=0), axis=0)
  return tf.add_n(parts)


class PLERanker(tfrs.models.Model):
  """Multi-task PLE ranker.

  Args:
    config: the training config (tasks, PLE sizes, fusion).
    table_sizes: rows of each embedding table, from the Transform output.

  Call args:
    inputs: dict of transformed features.

  Returns:
    Dict task -> prediction [B, 1].
  """

  def __init__(self, config: config_lib.TrainingConfig, table_sizes: Dict[str, int], **kwargs):
    super().__init__(**kwargs)
    self.config = config
    self.tasks_list = list(config.tasks)
    ple = config.ple
    self.embedding = inputs_lib.FeatureEmbedding(table_sizes, config.embedding_dim)
    self.levels = [
        cgc.CGC(num_tasks=len(self.tasks_list), num_task_experts=ple.num_task_experts,
                num_shared_experts=ple.num_shared_experts, expert_units=ple.expert_units,
                shared_output=level < ple.num_levels - 1, name=f"cgc_level{level}")
        for level in range(ple.num_levels)]
    self.towers = {
        task: tf.keras.Sequential(
            [tf.keras.layers.Dense(u, activation="relu") for u in ple.tower_units]
            + [tf.keras.layers.Dense(
                1, activation="sigmoid" if task in features.BINARY_TASKS else None)],
            name=f"{task}_tower")
        for task in self.tasks_list}
    self.ranking_tasks = {task: _task(task) for task in self.tasks_list}

  def encode(self, inputs: Dict[str, tf.Tensor], training=None,
             labels: Optional[Dict[str, tf.Tensor]] = None
            ) -> Tuple[List[tf.Tensor], Dict[str, tf.Tensor]]:
    """The ranker's input x as its column blocks, and side outputs for `extra_loss`.

    x is the list of blocks [B or 1, d_i] whose concatenation (`concat_rows`)
    is the input vector [B, D]; user-level blocks keep their one row in the
    `rank` signature, so `head` can compute their share of the first layer
    once. Subclasses add their enhancement vectors here (DUIA).
    """
    del training, labels  # the plain PLE input needs neither
    return inputs_lib.base_parts(self.embedding(inputs)), {}

  def forward(self, inputs: Dict[str, tf.Tensor], training=None,
              labels: Optional[Dict[str, tf.Tensor]] = None):
    """(task -> prediction [B, 1], side outputs); labels drive memory updates."""
    x, side = self.encode(inputs, training=training, labels=labels)
    return self.head(x, training=training), side

  def head(self, x, training=None) -> Dict[str, tf.Tensor]:
    """The CGC levels and task towers on the input x: task -> [B, 1].

    Args:
      x: the input vector [B, D], or its column blocks (as `encode` gives them).
    """
    level_inputs = [inputs_lib.first_layer_input(x)] * (len(self.tasks_list) + 1)
    for level in self.levels:
      level_inputs = level(level_inputs, training=training)
    return {task: self.towers[task](level_inputs[k], training=training)
            for k, task in enumerate(self.tasks_list)}

  def call(self, inputs: Dict[str, tf.Tensor], training=None) -> Dict[str, tf.Tensor]:
    return self.forward(inputs, training=training)[0]

  def extra_loss(self, predictions, side, labels) -> Optional[tf.Tensor]:
    """Losses beyond the tasks' (the DUIA auxiliary model's); None here."""
    del predictions, side, labels
    return None

  def compute_loss(self, inputs: Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]],
                   training: bool = False) -> tf.Tensor:
    features_in, labels = inputs
    predictions, side = self.forward(features_in, training=training, labels=labels)
    losses = []
    for task in self.tasks_list:
      label = tf.reshape(tf.cast(labels[features.label_for_task(task)], tf.float32), [-1, 1])
      losses.append(self.config.loss_weight(task) * tf.reduce_mean(self.ranking_tasks[task](
          labels=label, predictions=predictions[task], training=training)))
    extra = self.extra_loss(predictions, side, labels)
    if extra is not None:
      losses.append(extra)
    return tf.add_n(losses)

  def _step_losses(self, inputs, training: bool) -> Dict[str, tf.Tensor]:
    loss = self.compute_loss(inputs, training=training)
    regularization_loss = tf.reduce_sum([tf.reduce_sum(l) for l in self.losses])
    # Keras sums a step's outputs over the replicas, and `apply_gradients` sums
    # their gradients: each replica reports, and steps on, its share of the
    # global-batch mean. With one replica these are TFRS's own values.
    return {name: distribution.scale_loss(value) for name, value in (
        ("loss", loss), ("regularization_loss", regularization_loss),
        ("total_loss", loss + regularization_loss))}

  def train_step(self, inputs):
    """`tfrs.models.Model.train_step`, correct under several replicas."""
    with tf.GradientTape() as tape:
      losses = self._step_losses(inputs, training=True)
    gradients = tape.gradient(losses["total_loss"], self.trainable_variables)
    self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
    return dict({metric.name: metric.result() for metric in self.metrics}, **losses)

  def test_step(self, inputs):
    """`tfrs.models.Model.test_step`, correct under several replicas."""
    losses = self._step_losses(inputs, training=False)
    return dict({metric.name: metric.result() for metric in self.metrics}, **losses)

  def serving_outputs(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Every task's output in its user-facing unit, plus the fused score; [B] each.

    Binary tasks are probabilities, watch_time is seconds.
    """
    predictions = self(inputs, training=False)
    outputs = {}
    for task in self.tasks_list:
      value = tf.reshape(predictions[task], [-1])
      if task in features.REGRESSION_TASKS:
        value = tf.math.expm1(tf.maximum(value, 0.0))
      outputs[task] = value
    outputs[features.FUSED_SCORE] = fuse(predictions, self.config)
    return outputs
