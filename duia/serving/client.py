"""Ranking client for TF Serving's `PredictionService` (DESIGN section 7).

Works against `duia.serving.server` and `tensorflow_model_server` alike: it only
uses TF Serving's protos. A ranking request scores one user against many
candidates through the raw-tensor signature (`features.SERVING_RAW_SIGNATURE`):
user features go once, with a leading dimension of 1, and the model broadcasts
them over the N candidates, so the user's history is not repeated N times.

Example:
  with RankingClient("localhost:8500") as client:
    ranked = client.rank(
        user={features.USER_ID: "u1", features.HIST_ITEM_IDS: ["i9", "i4"]},
        candidates=[{features.ITEM_ID: "i1", features.DURATION_S: 31.0},
                    {features.ITEM_ID: "i2", features.DURATION_S: 12.5}],
        ts=1700000000)
    best = ranked[0].item_id
"""

import dataclasses
import operator
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from duia.models import features

DEFAULT_MODEL_NAME = "duia"
DEFAULT_TIMEOUT_S = 5.0
# Matches the server's cap (server.DEFAULT_MAX_MESSAGE_BYTES); gRPC's 4 MiB
# default would reject large batches. Not imported, to keep the client free of
# server code.
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024

# Keys a user or candidate dict may carry without being sent: a whole dataset
# row (user, item and label columns) can be passed as either.
_KNOWN_KEYS = frozenset(features.RAW_FEATURE_KEYS + features.LABEL_KEYS)
_Stub = prediction_service_pb2_grpc.PredictionServiceStub


class ServingError(RuntimeError):
  """A Predict call the server rejected or that failed in transport.

  Attributes:
    code: The `grpc.StatusCode`.
    details: The server's message.
  """

  def __init__(self, code: grpc.StatusCode, details: str):
    super().__init__(f"Predict failed with {code.name}: {details}")
    self.code = code
    self.details = details


@dataclasses.dataclass(frozen=True)
class RankedCandidate:
  """One scored candidate.

  Attributes:
    item_id: The candidate's `features.ITEM_ID`.
    score: The fused score (`features.FUSED_SCORE`) it is ranked by.
    task_scores: Every other output of the signature, by name.
    index: The candidate's position in the request's list.
  """

  item_id: str
  score: float
  task_scores: Dict[str, float]
  index: int


def _check_keys(row: Mapping[str, Any], what: str) -> None:
  unknown = sorted(set(row) - _KNOWN_KEYS)
  if unknown:
    # A misspelt key would otherwise be sent as its default, silently.
    raise ValueError(f"Unknown feature keys in {what}: {unknown}. Keys must "
                     f"come from duia.models.features.")


def _as_bytes(value: Any, key: str) -> bytes:
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
  return [_as_bytes(v, key) for v in value]


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
    inputs[key].CopyFrom(_tensor([_as_bytes(user.get(key), key)], tf.string))
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
        _tensor([_as_bytes(c.get(key), key) for c in candidates], tf.string))
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


def predict(stub: _Stub,
            request: predict_pb2.PredictRequest,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> Dict[str, np.ndarray]:
  """Calls Predict and decodes the outputs.

  Args:
    stub: A PredictionService stub.
    request: The request.
    timeout_s: Call deadline.

  Returns:
    Output name -> array.

  Raises:
    ServingError: if the call fails, with its status code and message.
  """
  try:
    response = stub.Predict(request, timeout=timeout_s)
  except grpc.RpcError as e:
    raise ServingError(e.code(), e.details()) from e
  return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def _channel(target: str, max_message_bytes: int,
             credentials: Optional[grpc.ChannelCredentials] = None) -> grpc.Channel:
  options = [("grpc.max_send_message_length", max_message_bytes),
             ("grpc.max_receive_message_length", max_message_bytes)]
  if credentials is not None:
    return grpc.secure_channel(target, credentials, options=options)
  return grpc.insecure_channel(target, options=options)


def predict_examples(
    stub_or_target: Union[str, _Stub],
    serialized_examples: Sequence[bytes],
    model_name: str = DEFAULT_MODEL_NAME,
    signature_name: str = features.SERVING_EXAMPLES_SIGNATURE,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
  """Scores serialized tf.Examples through the `serving_default` signature.

  Args:
    stub_or_target: A PredictionService stub, or a "host:port" target for a
      channel opened and closed by this call.
    serialized_examples: One serialized `tf.train.Example` per row.
    model_name: `model_spec.name`.
    signature_name: `model_spec.signature_name`.
    timeout_s: Call deadline.
    output_filter: Outputs to return; empty for all.

  Returns:
    Output name -> array with one row per example.

  Raises:
    ServingError: if the call fails.
  """
  request = build_examples_request(serialized_examples, model_name,
                                   signature_name, output_filter)
  if not isinstance(stub_or_target, str):
    return predict(stub_or_target, request, timeout_s)
  with _channel(stub_or_target, DEFAULT_MAX_MESSAGE_BYTES) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return predict(stub, request, timeout_s)


class RankingClient:
  """Ranks candidates for a user through the raw-tensor signature.

  Thread-safe: one client (one channel) can serve many threads.
  """

  def __init__(self,
               target: str,
               model_name: str = DEFAULT_MODEL_NAME,
               signature: str = features.SERVING_RAW_SIGNATURE,
               timeout_s: float = DEFAULT_TIMEOUT_S,
               max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
               credentials: Optional[grpc.ChannelCredentials] = None):
    """Opens a channel to `target` ("host:port"); no call is made yet.

    `credentials` (e.g. `tls.channel_credentials(ca_file)`) make it a TLS
    channel; None is plaintext.
    """
    self._model_name = model_name
    self._signature = signature
    self._timeout_s = timeout_s
    self._channel = _channel(target, max_message_bytes, credentials)
    self._stub = prediction_service_pb2_grpc.PredictionServiceStub(
        self._channel)

  def rank(self, user: Mapping[str, Any],
           candidates: Sequence[Mapping[str, Any]],
           ts: int) -> List[RankedCandidate]:
    """Scores `candidates` for `user` and returns them best first.

    Args:
      user: User feature values (see `build_rank_request`).
      candidates: Item feature values, one dict per candidate; each needs
        `features.ITEM_ID`.
      ts: Request time, Unix seconds.

    Returns:
      The candidates sorted by fused score, descending; ties keep input order.

    Raises:
      ServingError: if the server rejects the call.
      ValueError: on a candidate without an item id, unknown keys, or a
        response that does not have one fused score per candidate.
    """
    if not candidates:
      return []
    for i, candidate in enumerate(candidates):
      if not candidate.get(features.ITEM_ID):
        raise ValueError(f"Candidate {i} has no {features.ITEM_ID!r}. "
                         f"Received: {dict(candidate)!r}")
    request = build_rank_request(user, candidates, ts, self._model_name,
                                 self._signature)
    outputs = predict(self._stub, request, self._timeout_s)
    n = len(candidates)
    if features.FUSED_SCORE not in outputs:
      raise ValueError(f"Response has no {features.FUSED_SCORE!r} output. "
                       f"Received outputs: {sorted(outputs)}")
    columns = {}
    for name, array in outputs.items():
      if array.size != n:
        raise ValueError(f"Output {name!r} should hold one value per candidate "
                         f"({n}). Received: shape={list(array.shape)}")
      columns[name] = array.reshape(n).astype(np.float64)
    tasks = sorted(set(columns) - {features.FUSED_SCORE})
    ranked = [
        RankedCandidate(
            item_id=_as_bytes(c[features.ITEM_ID], features.ITEM_ID).decode(),
            score=float(columns[features.FUSED_SCORE][i]),
            task_scores={t: float(columns[t][i]) for t in tasks},
            index=i) for i, c in enumerate(candidates)
    ]
    # sorted() is stable, so equal scores keep the caller's order.
    return sorted(ranked, key=lambda r: -r.score)

  def close(self) -> None:
    self._channel.close()

  def __enter__(self) -> "RankingClient":
    return self

  def __exit__(self, *unused_exc_info) -> None:
    self.close()
