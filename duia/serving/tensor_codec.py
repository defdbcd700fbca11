"""TensorProto <-> NumPy for the request path, without per-element Python.

`tf.make_ndarray` and `tf.make_tensor_proto` handle every TensorProto form;
the server's hot path sees two: numeric tensors with their bytes in
`tensor_content` and string tensors with one `string_val` per element. Those
are decoded with one `np.frombuffer` / one array construction, and numeric
outputs are encoded by copying their bytes (TF Serving's own fast path,
`tensor_content`). Anything else (typed repeated fields such as `int64_val`, a
single value standing for a whole shape, half floats) goes through TensorFlow's
functions, so the results are always theirs.
"""

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2

# Numeric dtypes whose `tensor_content` is the array's bytes in NumPy's layout.
_CONTENT_DTYPES = {
    types_pb2.DT_FLOAT: np.float32, types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_INT32: np.int32, types_pb2.DT_INT64: np.int64,
    types_pb2.DT_BOOL: np.bool_,
}
_ENUM_OF = {np.dtype(v): k for k, v in _CONTENT_DTYPES.items()}


def shape_of(proto: tensor_pb2.TensorProto):
  """The shape `proto` declares in its header (its payload may disagree)."""
  return tuple(d.size for d in proto.tensor_shape.dim)


def to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
  """The array `proto` holds, as `tf.make_ndarray` gives it.

  Raises:
    Whatever `tf.make_ndarray` raises on a malformed proto (the fallback).
  """
  shape = shape_of(proto)
  size = int(np.prod(shape, dtype=np.int64))
  dtype = _CONTENT_DTYPES.get(proto.dtype)
  if dtype is not None and proto.tensor_content:
    if len(proto.tensor_content) == size * np.dtype(dtype).itemsize:
      # Read-only view of the proto's bytes; copied so callers may keep it.
      return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape).copy()
  elif proto.dtype == types_pb2.DT_STRING and len(proto.string_val) == size and size:
    array = np.empty(size, dtype=object)
    array[:] = list(proto.string_val)
    return array.reshape(shape)
  return tf.make_ndarray(proto)


def to_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
  """`array` as a TensorProto, as `tf.make_tensor_proto(array)` would give it."""
  array = np.asarray(array)
  enum = _ENUM_OF.get(array.dtype)
  if enum is None:
    return tf.make_tensor_proto(array)
  proto = tensor_pb2.TensorProto(dtype=enum,
                                 tensor_content=np.ascontiguousarray(array).tobytes())
  for size in array.shape:
    proto.tensor_shape.dim.add().size = size
  return proto
