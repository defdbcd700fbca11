"""The request path's TensorProto codec gives exactly what TensorFlow's functions give."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2

from duia.serving import tensor_codec

ARRAYS = [
    np.arange(12, dtype=np.int64).reshape(3, 4),
    np.linspace(0, 1, 7, dtype=np.float32),
    np.array(3.5, dtype=np.float64),
    np.array([[True, False]]),
    np.zeros((0, 3), dtype=np.float32),
    np.array([[b"a", b""], [b"c", b"\xff"]], dtype=object),
    np.array([b"one"], dtype=object),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_round_trip_matches_tensorflow(array):
  proto = tf.make_tensor_proto(array)
  decoded = tensor_codec.to_ndarray(proto)
  expected = tf.make_ndarray(proto)
  assert decoded.dtype == expected.dtype and decoded.shape == expected.shape
  np.testing.assert_array_equal(decoded, expected)
  if array.dtype != object:
    encoded = tf.make_ndarray(tensor_codec.to_proto(array))
    assert encoded.dtype == array.dtype and encoded.shape == array.shape
    np.testing.assert_array_equal(encoded, array)


def test_float_outputs_encode_as_tensorflow_encodes_them():
  scores = np.random.default_rng(0).random(100).astype(np.float32)
  assert tensor_codec.to_proto(scores) == tf.make_tensor_proto(scores)


def test_protos_without_content_fall_back_to_tensorflow():
  # One value standing for the whole shape, and typed repeated fields.
  filled = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[2.0])
  for _ in range(2):
    filled.tensor_shape.dim.add().size = 2
  np.testing.assert_array_equal(tensor_codec.to_ndarray(filled), np.full((2, 2), 2.0))
  typed = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, int64_val=[4, 5])
  typed.tensor_shape.dim.add().size = 2
  np.testing.assert_array_equal(tensor_codec.to_ndarray(typed), [4, 5])


def test_content_of_the_wrong_length_is_refused_as_tensorflow_refuses_it():
  proto = tf.make_tensor_proto(np.arange(4, dtype=np.int64))
  proto.tensor_shape.dim[0].size = 5
  with pytest.raises(Exception) as ours:
    tensor_codec.to_ndarray(proto)
  with pytest.raises(Exception) as theirs:
    tf.make_ndarray(proto)
  assert type(ours.value) is type(theirs.value)
