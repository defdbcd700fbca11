"""PredictRequests for TF Serving's APIs, built from feature dicts.

`build_rank_request` fills the raw-tensor `rank` signature (the user once, the
candidates as a batch); `build_examples_request` the tf.Example signature.
Every value is checked against its feature's kind, and errors name the
feature; `client` sends the requests.
"""

import operator
from typing import Any, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import predict_pb2

from duia.models import features

DEFAULT_MODEL_NAME = "duia"

# Keys a user or candidate dict may carry without being sent: a whole dataset
# row (user, item and label columns) can be passed as either.
_KNOWN_KEYS = frozenset(features.RAW_FEATURE_KEYS + features.LABEL_KEYS)


def _check_keys(row: Mapping[str, Any], what: str) -> None:
  unknown = sorted(set(row) - _KNOWN_KEYS)
  if unknown:
    # A misspelt key would otherwise be sent as its default, silently.
    raise ValueError(f"Unknown feature keys in {what}: {unknown}. Keys must "
                     f"come from duia.models.features.")


def as_bytes(value: Any, key: str) -> bytes:
  """A string feature's value as bytes (None -> b""); TypeError names the feature."""
  if value is None:
    return b""
  if isinstance(value, bytes):
    return value
  if isinstance(value, str):
    return value.encode("utf-8")
  raise TypeError(f"Feature {key!r} expects a string. Received: "
                  f"{type(value).__name__} {value!r}")


def _as_bytes_list(value: Any, key: str) -> List[bytes]:
  if value is None:
    return []
  if isinstance(value, (str, bytes)):
    # Iterating a string would send one character per element.
    raise TypeError(f"Feature {key!r} expects a list of strings. Received: "
                    f"{type(value).__name__} {value!r}")
  return [as_bytes(v, key) for v in value]


def _as_int(value: Any, key: str) -> int:
  if value is None:
    return 0
  try:
    return operator.index(value)
  except TypeError as e:
    raise TypeError(f"Feature {key!r} expects an integer. Received: "
                    f"{type(value).__name__} {value!r}") from e


def _as_float(value: Any, key: str) -> float:
  if value is None:
    return 0.0
  try:
    return float(value)
  except (TypeError, ValueError) as e:
    raise TypeError(f"Feature {key!r} expects a number. Received: "
                    f"{type(value).__name__} {value!r}") from e


def _tensor(values: Sequence[Any], dtype: tf.DType) -> tensor_pb2.TensorProto:
  # The explicit numpy dtype keeps an empty list a [0] tensor of the right
  # type, and ints int64 even where numpy's default integer is 32-bit.
  array = np.array(values, dtype=object if dtype == tf.string else
                   dtype.as_numpy_dtype)
  return tf.make_tensor_proto(array, dtype=dtype, shape=array.shape)


def _as_int_list(value: Any, key: str) -> List[int]:
  if value is None:
    return []
  if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
    # A bare int (or a string of digits) would otherwise fail deep inside the
    # iteration, or send one element per character, without naming the feature.
    raise TypeError(f"Feature {key!r} expects a list of integers. Received: "
                    f"{type(value).__name__} {value!r}")
  return [_as_int(v, key) for v in value]


def _string_matrix(rows: List[List[bytes]]) -> tensor_pb2.TensorProto:
  # At least one column: a [n, 0] tensor would leave the model nothing to pad
  # or mask against, and b"" is the padding value the model already ignores.
  width = max([1] + [len(r) for r in rows])
  matrix = np.full((len(rows), width), b"", dtype=object)
  for i, row in enumerate(rows):
    matrix[i, :len(row)] = row
  return _tensor(matrix, tf.string)


def _int_matrix(rows: List[List[int]]) -> tensor_pb2.TensorProto:
  # As `_string_matrix`: at least one column, padded with 0, which the model
  # drops before Transform (a real Unix time is never 0).
  width = max([1] + [len(r) for r in rows])
  matrix = np.zeros((len(rows), width), dtype=np.int64)
  for i, row in enumerate(rows):
    matrix[i, :len(row)] = row
  return _tensor(matrix, tf.int64)


def build_rank_request(user: Mapping[str, Any],
                       candidates: Sequence[Mapping[str, Any]],
                       ts: int,
                       model_name: str = DEFAULT_MODEL_NAME,
                       signature_name: str = features.SERVING_RAW_SIGNATURE,
                       version: Optional[int] = None
                      ) -> predict_pb2.PredictRequest:
  """Builds the PredictRequest of the raw-tensor `rank` signature.

  Missing features get defaults ("" for strings, [] for lists, 0 for numbers).
  User inputs have leading dimension 1, candidate inputs N; string lists are
  padded with b"" and int lists (hist_ts, neg_ts) with 0 to the longest list
  (at least 1). Keys of the other level and label keys are ignored, so dataset
  rows can be passed as they are.

  Args:
    user: User feature values keyed by `features` constants.
    candidates: One dict of item feature values per candidate.
    ts: Request time, Unix seconds (`features.TIMESTAMP`).
    model_name: `model_spec.name`.
    signature_name: `model_spec.signature_name`.
    version: `model_spec.version`; None asks for the served one.

  Returns:
    The request.

  Raises:
    ValueError: on keys not defined in `features`.
    TypeError: on a value of the wrong kind, naming the feature.
  """
  _check_keys(user, "user")
  for i, candidate in enumerate(candidates):
    _check_keys(candidate, f"candidate {i}")
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  if version is not None:
    request.model_spec.version.value = version
  inputs = request.inputs
  for key in features.USER_SCALAR_STRING:
    inputs[key].CopyFrom(_tensor([as_bytes(user.get(key), key)], tf.string))
  for key in features.USER_SEQUENCE_STRING:
    inputs[key].CopyFrom(_string_matrix([_as_bytes_list(user.get(key), key)]))
  for key in features.USER_SCALAR_INT:
    inputs[key].CopyFrom(_tensor([_as_int(user.get(key), key)], tf.int64))
  for key in features.USER_SEQUENCE_INT:
    inputs[key].CopyFrom(_int_matrix([_as_int_list(user.get(key), key)]))
  inputs[features.TIMESTAMP].CopyFrom(
      _tensor([_as_int(ts, features.TIMESTAMP)], tf.int64))
  for key in features.ITEM_SCALAR_STRING:
    inputs[key].CopyFrom(
        _tensor([as_bytes(c.get(key), key) for c in candidates], tf.string))
  for key in features.ITEM_SEQUENCE_STRING:
    inputs[key].CopyFrom(_string_matrix(
        [_as_bytes_list(c.get(key), key) for c in candidates]))
  for key in features.ITEM_SCALAR_INT:
    inputs[key].CopyFrom(
        _tensor([_as_int(c.get(key), key) for c in candidates], tf.int64))
  for key in features.ITEM_SCALAR_FLOAT:
    inputs[key].CopyFrom(
        _tensor([_as_float(c.get(key), key) for c in candidates], tf.float32))
  return request


def build_examples_request(
    serialized_examples: Sequence[bytes],
    model_name: str = DEFAULT_MODEL_NAME,
    signature_name: str = features.SERVING_EXAMPLES_SIGNATURE,
    output_filter: Sequence[str] = (),
    version: Optional[int] = None) -> predict_pb2.PredictRequest:
  """Builds the PredictRequest of the tf.Example signature (`serving_default`).

  Args:
    serialized_examples: One serialized `tf.train.Example` per row; features
      the signature does not parse (labels, for instance) are ignored by it.
    model_name: `model_spec.name`.
    signature_name: `model_spec.signature_name`.
    output_filter: Outputs to return; empty for all.
    version: `model_spec.version`; None asks for the served one.

  Returns:
    The request.
  """
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  if version is not None:
    request.model_spec.version.value = version
  request.output_filter.extend(output_filter)
  request.inputs[features.SERVING_EXAMPLES_INPUT].CopyFrom(
      _tensor(list(serialized_examples), tf.string))
  return request
