"""Ranking client for TF Serving's `PredictionService` (docs/design.md §7).

Works against `duia.serving.server` and `tensorflow_model_server` alike: it only
uses TF Serving's protos. A ranking request scores one user against many
candidates through the raw-tensor signature (`features.SERVING_RAW_SIGNATURE`):
user features go once, with a leading dimension of 1, and the model computes
the user side once and meets each of the N candidates with it, so the user's
history is neither sent nor processed N times.

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
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from duia.models import features
from duia.serving import predict_requests
# Re-exported: the request builders are part of the client's API.
from duia.serving.predict_requests import (  # noqa: F401
    DEFAULT_MODEL_NAME, build_examples_request, build_rank_request)

DEFAULT_TIMEOUT_S = 5.0
# Matches the server's cap (server.DEFAULT_MAX_MESSAGE_BYTES); gRPC's 4 MiB
# default would reject large batches. Not imported, to keep the client free of
# server code.
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024

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
            item_id=predict_requests.as_bytes(c[features.ITEM_ID], features.ITEM_ID).decode(),
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
