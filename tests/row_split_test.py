"""The first layer on the user's columns once (`row_split.RowSplit`), as in `rank`.

A Dense layer or a CGC level on a RowSplit must give what it gives on the
parts concatenated with the user's row broadcast to every candidate
(`inputs.concat_rows`), whatever the order of the user's and the
candidates' column blocks.
"""

import numpy as np
import pytest
import tensorflow as tf

from duia.layers import cgc
from duia.layers import row_split
from duia.models import inputs as inputs_lib

CANDIDATES = 7


def _parts():
  """Interleaved blocks: user [1, d] and candidate [N, d], as `base_parts` mixes them."""
  widths_and_rows = [(5, 1), (3, CANDIDATES), (4, 1), (1, CANDIDATES), (2, 1), (6, CANDIDATES)]
  return [tf.random.normal([rows, width], seed=i) for i, (width, rows) in
          enumerate(widths_and_rows)]


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid"])
def test_dense_on_the_split_equals_dense_on_the_broadcast_concatenation(activation):
  parts = _parts()
  layer = tf.keras.layers.Dense(8, activation=activation)
  expected = layer(inputs_lib.concat_rows(parts))
  split = inputs_lib.first_layer_input(parts)
  assert isinstance(split, row_split.RowSplit)
  assert split.user.shape == (1, 11) and split.candidates.shape == (CANDIDATES, 10)
  np.testing.assert_allclose(split.dense(layer), expected, rtol=1e-5, atol=1e-6)


def test_a_cgc_level_on_the_split_equals_it_on_the_concatenation():
  parts = _parts()
  level = cgc.CGC(num_tasks=2, num_task_experts=2, num_shared_experts=1, expert_units=[8, 4])
  x = inputs_lib.concat_rows(parts)
  expected = level([x, x, x])
  split = inputs_lib.first_layer_input(parts)
  got = level([split, split, split])
  assert len(got) == len(expected) == 3
  for g, e in zip(got, expected):
    np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def test_an_unbuilt_dense_is_built_for_the_full_width():
  parts = _parts()
  layer = tf.keras.layers.Dense(3)
  split = row_split.RowSplit(parts)
  out = split.dense(layer)
  assert out.shape == (CANDIDATES, 3)
  assert layer.kernel.shape == (21, 3)
  np.testing.assert_allclose(out, layer(inputs_lib.concat_rows(parts)), rtol=1e-5, atol=1e-6)


def test_parts_with_equal_rows_are_just_concatenated():
  batch = [tf.ones([4, 2]), tf.zeros([4, 3])]
  x = inputs_lib.first_layer_input(batch)
  assert isinstance(x, tf.Tensor) and x.shape == (4, 5)
  one_user_only = [tf.ones([1, 2]), tf.zeros([1, 3])]  # a request of one candidate
  assert inputs_lib.first_layer_input(one_user_only).shape == (1, 5)
  tensor = tf.ones([3, 5])
  assert inputs_lib.first_layer_input(tensor) is tensor


def test_the_rank_graph_multiplies_the_user_columns_on_one_row():
  """In `rank`'s shapes, no first-level kernel is applied to N copies of the user."""
  from duia.models import signatures  # pylint: disable=g-import-not-at-top
  from tests import model_fixtures  # pylint: disable=g-import-not-at-top
  model = model_fixtures.tiny_ranker({"duia": {
      "variant": "duia", "user_level1": 4, "user_children": 2, "item_level1": 4,
      "item_children": 2, "memory_dim": 8}}, 40)
  inputs, _ = model_fixtures.transformed_batch(16, 40, 0)
  model(inputs)  # built as training builds it
  specs = {k: tf.TensorSpec([1 if k in signatures.USER_LEVEL_TRANSFORMED else None]
                            + v.shape[1:], v.dtype) for k, v in inputs.items()}
  graph = tf.function(model.serving_outputs).get_concrete_function(specs).graph
  level0 = [op for op in graph.get_operations()
            if op.type == "MatMul" and "cgc_level0" in op.name]
  kernel_rows = {int(op.inputs[1].shape[0]) for op in level0 if op.inputs[1].shape.rank == 2}
  one_row = [op for op in level0 if op.inputs[0].shape[0] == 1]
  width = model.levels[0].shared_gate.kernel.shape[0]
  # Every first-layer Dense (experts and gates) runs twice: user columns on one
  # row, the candidates' columns on N; none multiplies the full width.
  assert one_row and width not in kernel_rows
  assert sum(int(op.inputs[1].shape[0]) for op in one_row[:1]) < width
