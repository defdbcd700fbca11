"""A first-layer input split by rows: the user's columns once, the candidates' per row.

The `rank` signature keeps the user's features at one row ([1, ...]) and the
candidates' at N (`rank_users`: several users' rows, see `user_rows`). Where
the two meet in the ranker's input vector, a Dense layer need not see N copies
of the user: see `RowSplit`.
"""

from typing import Sequence

import tensorflow as tf

from duia.layers import user_rows


def needs_split(parts: Sequence[tf.Tensor]) -> bool:
  """True where some parts have the user rows and others not (the `rank` graphs)."""
  users = [user_rows.is_user_level(p) for p in parts]
  return any(users) and not all(users)


class RowSplit:
  """The first layer's input as the user's columns [1 or U, Du] and the candidates' [N, Dc].

  `inputs.concat_rows(parts)` broadcasts the user's one row to N rows, and every
  first-layer Dense then multiplies N copies of it. A Dense layer is linear
  before its activation, so `W x = W_u x_u + W_c x_c` over the two column sets:
  `dense` computes the user's share once ([1, units]) and adds it to each
  candidate's, which is most of the first layer's work saved (two thirds of
  DUIA's input columns are the user's). The layers keep their one kernel, so
  checkpoints are unchanged.

  Args:
    parts: the input's column blocks in order, each [1, d_i] (user-level) or
      [N, d_i]; at least one of each kind (see `needs_split`).
  """

  def __init__(self, parts: Sequence[tf.Tensor]):
    user, candidates, user_columns, candidate_columns = [], [], [], []
    offset = 0
    for part in parts:
      width = int(part.shape[-1])
      columns = list(range(offset, offset + width))
      if user_rows.is_user_level(part):
        user.append(part)
        user_columns += columns
      else:
        candidates.append(part)
        candidate_columns += columns
      offset += width
    self.width = offset
    self.user = tf.concat(user, axis=-1)
    self.candidates = tf.concat(candidates, axis=-1)
    self.user_columns = tf.constant(user_columns, tf.int32)
    self.candidate_columns = tf.constant(candidate_columns, tf.int32)

  def dense(self, layer: tf.keras.layers.Dense) -> tf.Tensor:
    """`layer(inputs.concat_rows(parts))`, [N, units], computing the user's share once."""
    if not layer.built:
      layer.build(tf.TensorShape([None, self.width]))
    kernel = tf.convert_to_tensor(layer.kernel)
    candidates = tf.matmul(self.candidates, tf.gather(kernel, self.candidate_columns))
    user = tf.matmul(self.user, tf.gather(kernel, self.user_columns))
    # One user's row broadcasts over the candidates; several users' rows
    # (`rank_users`) are gathered per candidate after the product.
    outputs = candidates + user_rows.align(user, candidates)
    if layer.use_bias:
      outputs = tf.nn.bias_add(outputs, layer.bias)
    return layer.activation(outputs) if layer.activation is not None else outputs
