"""Customized Gate Control: one extraction level of PLE.

Tang et al., "Progressive Layered Extraction (PLE)", RecSys 2020, section 4.
For task k at a level, with task input x_k and shared input x_s:

    g_k(x_k)   = softmax(W_k x_k)                          (eq. 4)
    S_k(x_k)   = [E_k,1 .. E_k,m_k, E_s,1 .. E_s,m_s]       (eq. 5)
    y_k        = sum_j g_k,j(x_k) * S_k,j                   (eq. 3)

and the shared gate of a level that is not the last mixes every expert from
x_s (eq. 6-7). Expert E_k,j reads x_k, shared expert E_s,j reads x_s.
"""

from typing import List, Sequence

import tensorflow as tf

from duia.layers import row_split
from duia.layers import softmax


def _mlp(units: Sequence[int], name: str) -> tf.keras.Sequential:
  return tf.keras.Sequential(
      [tf.keras.layers.Dense(u, activation="relu") for u in units], name=name)


def _apply(layer: tf.keras.layers.Layer, x, training=None) -> tf.Tensor:
  """`layer(x)`; on a first-level input split by rows (`row_split.RowSplit`,
  the `rank` signature), the first Dense computes the user's columns once."""
  if not isinstance(x, row_split.RowSplit):
    return layer(x, training=training)
  if isinstance(layer, tf.keras.Sequential):
    y = x.dense(layer.layers[0])
    for inner in layer.layers[1:]:
      y = inner(y, training=training)
    return y
  return x.dense(layer)


def _mix(gate: tf.Tensor, experts: List[tf.Tensor]) -> tf.Tensor:
  """Eq. 3: sum_j gate[:, j] * experts[j], [B, U].

  A broadcast multiply and a sum rather than `einsum("be,beu->bu")`: on these
  sizes TensorFlow's oneDNN einsum kernel costs ~0.1 ms a call, the whole
  budget of several layers at serving (benchmarks/rank_split_bench.py).
  """
  return tf.reduce_sum(gate[:, :, None] * tf.stack(experts, axis=1), axis=1)


@tf.keras.utils.register_keras_serializable(package="duia")
class CGC(tf.keras.layers.Layer):
  """One CGC level with task experts, shared experts and softmax gates.

  Args:
    num_tasks: number of tasks.
    num_task_experts: experts owned by each task.
    num_shared_experts: experts shared by all tasks.
    expert_units: hidden sizes of every expert MLP; the last is its output width.
    shared_output: whether to emit the shared branch for a next level (all but
      the last level do).

  Call args:
    inputs: list of `num_tasks + 1` tensors [B, D]: each task's input, then the
      shared input. At the first level all are the same tensor, or the same
      `row_split.RowSplit` (the user's columns once, the candidates' per row).

  Returns:
    List of `num_tasks` tensors [B, expert_units[-1]], plus the shared one when
    `shared_output`.

  Example:
    >>> level = CGC(num_tasks=2, num_task_experts=1, num_shared_experts=1, expert_units=[8])
    >>> x = tf.ones([4, 3])
    >>> [y.shape for y in level([x, x, x])]
    [TensorShape([4, 8]), TensorShape([4, 8]), TensorShape([4, 8])]
  """

  def __init__(self, num_tasks: int, num_task_experts: int, num_shared_experts: int,
               expert_units: Sequence[int], shared_output: bool = True, **kwargs):
    super().__init__(**kwargs)
    if num_tasks < 1 or num_task_experts < 1 or num_shared_experts < 1:
      raise ValueError("CGC needs >= 1 task, task expert and shared expert. Received: "
                       f"{num_tasks}, {num_task_experts}, {num_shared_experts}")
    self.num_tasks = num_tasks
    self.num_task_experts = num_task_experts
    self.num_shared_experts = num_shared_experts
    self.expert_units = list(expert_units)
    self.shared_output = shared_output
    self.task_experts = [
        [_mlp(self.expert_units, f"task{k}_expert{j}") for j in range(num_task_experts)]
        for k in range(num_tasks)]
    self.shared_experts = [_mlp(self.expert_units, f"shared_expert{j}")
                           for j in range(num_shared_experts)]
    # The gates' softmax is applied in `gate_weights` (`softmax.softmax`, not
    # oneDNN's kernel); the layers hold the logits' weights.
    self.task_gates = [
        tf.keras.layers.Dense(num_task_experts + num_shared_experts, name=f"task{k}_gate")
        for k in range(num_tasks)]
    self.shared_gate = (tf.keras.layers.Dense(
        num_tasks * num_task_experts + num_shared_experts,
        name="shared_gate") if shared_output else None)

  def _check_inputs(self, inputs):
    if not isinstance(inputs, (list, tuple)) or len(inputs) != self.num_tasks + 1:
      raise ValueError(f"CGC expects a list of {self.num_tasks + 1} tensors (one per task, "
                       f"then shared). Received: {inputs!r}")

  def gate_weights(self, inputs: List[tf.Tensor]) -> List[tf.Tensor]:
    """The softmax gate weights [B, experts] of each task (and the shared gate)."""
    self._check_inputs(inputs)
    gates = [_apply(gate, x) for gate, x in zip(self.task_gates, inputs[:-1])]
    if self.shared_gate is not None:
      gates.append(_apply(self.shared_gate, inputs[-1]))
    return [softmax.softmax(g) for g in gates]

  def call(self, inputs: List[tf.Tensor], training=None) -> List[tf.Tensor]:
    self._check_inputs(inputs)
    shared = [_apply(e, inputs[-1], training) for e in self.shared_experts]
    per_task = [[_apply(e, x, training) for e in experts]
                for experts, x in zip(self.task_experts, inputs[:-1])]
    gates = self.gate_weights(inputs)
    outputs = []
    for k in range(self.num_tasks):
      outputs.append(_mix(gates[k], per_task[k] + shared))
    if self.shared_gate is not None:
      outputs.append(_mix(gates[-1], [e for experts in per_task for e in experts] + shared))
    return outputs

  def compute_output_shape(self, input_shape):
    batch = tf.TensorShape(input_shape[0])[0]
    shape = tf.TensorShape([batch, self.expert_units[-1]])
    return [shape] * (self.num_tasks + (1 if self.shared_output else 0))

  def get_config(self):
    config = super().get_config()
    config.update(num_tasks=self.num_tasks, num_task_experts=self.num_task_experts,
                  num_shared_experts=self.num_shared_experts,
                  expert_units=self.expert_units, shared_output=self.shared_output)
    return config
