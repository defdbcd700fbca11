"""Fuzzed requests (hypothesis): malformed protobufs, raw bytes and JSON bodies
are rejected with a client-side status, never a server error, and the server
keeps serving."""

import json
import urllib.error
import urllib.request

import grpc
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from duia.models import features
from duia.serving import server as server_lib
from tests import serving_fixtures as fx

# What a bad request may get: its own fault (INVALID_ARGUMENT), an unknown
# model or version (NOT_FOUND), or too big (RESOURCE_EXHAUSTED). INTERNAL or
# UNKNOWN would be a server bug.
REJECTED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.RESOURCE_EXHAUSTED}
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
DTYPES = [types_pb2.DT_STRING, types_pb2.DT_INT64, types_pb2.DT_FLOAT, types_pb2.DT_INT32,
          types_pb2.DT_DOUBLE, types_pb2.DT_BOOL, types_pb2.DT_INVALID, 99]
NAMES = sorted(fx.good_request().inputs) + ["", "x" * 300, "\u00e9\u0000"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  root = fx.model_root(tmp_path_factory.mktemp("fuzz"), {1: 1.0})
  server, port = server_lib.start_server(str(root), rest_api_port=0,
                                         max_message_bytes=1 << 20)
  channel = grpc.insecure_channel(f"127.0.0.1:{port}")
  yield server, channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)
  channel.close()
  server.stop(None)


def _still_serves(stub):
  assert stub.Predict(fx.good_request(), timeout=10).model_spec.version.value == 1


@st.composite
def tensor_protos(draw, dtype=None):
  """TensorProtos whose dtype, shape and contents may disagree with each other."""
  proto = tensor_pb2.TensorProto(dtype=dtype if dtype is not None else draw(st.sampled_from(DTYPES)))
  if draw(st.booleans()):
    proto.tensor_shape.unknown_rank = True
  for size in draw(st.lists(st.sampled_from([1, 2, 3, 0, -1, 5, 70_000]), max_size=4)):
    proto.tensor_shape.dim.add(size=size)
  kind = draw(st.sampled_from(["string", "int64", "float", "content", "none"]))
  if kind == "string":
    proto.string_val.extend(draw(st.lists(st.binary(max_size=20), max_size=6)))
  elif kind == "int64":
    proto.int64_val.extend(draw(st.lists(st.integers(-2**63, 2**63 - 1), max_size=6)))
  elif kind == "float":
    proto.float_val.extend(draw(st.lists(st.floats(width=32), max_size=6)))
  elif kind == "content":
    proto.tensor_content = draw(st.binary(max_size=64))
  return proto


@st.composite
def predict_requests(draw):
  """A good `rank` request with some of its parts broken."""
  request = fx.good_request()
  spec = request.model_spec
  # Mostly the right model and signature, so that most requests reach the
  # input checks and the model itself.
  spec.name = draw(st.sampled_from(["duia"] * 8 + ["other", ""]))
  spec.signature_name = draw(st.sampled_from(
      [features.SERVING_RAW_SIGNATURE] * 6 + [features.SERVING_EXAMPLES_SIGNATURE, "", "nope"]))
  if draw(st.sampled_from([False, False, False, True])):
    spec.version.value = draw(st.integers(-5, 5))
  for name in draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4)):
    action = draw(st.sampled_from(["reshape", "replace", "delete"]))
    if name in request.inputs and action == "delete":
      del request.inputs[name]
    elif name in request.inputs and action == "reshape":
      # The right dtype with another shape or content: past the dtype check.
      proto = draw(tensor_protos(dtype=request.inputs[name].dtype))
      request.inputs[name].CopyFrom(proto)
    else:
      request.inputs[name].CopyFrom(draw(tensor_protos()))
  request.output_filter.extend(draw(st.lists(st.sampled_from(
      [features.FUSED_SCORE, features.TASK_VALID, "nope"]), max_size=3)))
  return request


@FUZZ
@given(request=predict_requests())
def test_fuzzed_predict_requests_are_rejected_not_crashed(served, request):
  _, _, stub = served
  try:
    stub.Predict(request, timeout=20)
  except grpc.RpcError as e:
    assert e.code() in REJECTED, (e.code(), e.details())
  _still_serves(stub)


@FUZZ
@given(payload=st.binary(max_size=512))
def test_raw_bytes_on_the_predict_method_leave_the_server_serving(served, payload):
  _, channel, stub = served
  call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                             request_serializer=None,
                             response_deserializer=predict_pb2.PredictResponse.FromString)
  try:
    call(payload, timeout=20)
  except grpc.RpcError as e:
    # Undecodable bytes are refused by gRPC itself, before our code (INTERNAL:
    # "Exception deserializing request"); decodable ones reach our checks.
    assert e.code() in REJECTED | {grpc.StatusCode.INTERNAL}, e.code()
    if e.code() == grpc.StatusCode.INTERNAL:
      assert "deserializ" in e.details()
  _still_serves(stub)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["inputs", "instances", "signature_name", "b64"]
                                      + NAMES[:5]), children, max_size=4),
    max_leaves=20)


def _post(port, path, data: bytes):
  request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
  try:
    with urllib.request.urlopen(request, timeout=20) as response:
      return response.status, response.read()
  except urllib.error.HTTPError as e:
    return e.code, e.read()


@FUZZ
@given(body=JSON)
def test_fuzzed_rest_json_is_a_client_error_not_a_server_error(served, body):
  server, _, stub = served
  status, answer = _post(server.rest_port, "/v1/models/duia:predict", json.dumps(body).encode())
  assert status in (200, 400, 404, 413), (status, answer[:300])
  if status != 200:
    assert "error" in json.loads(answer)
  _still_serves(stub)


@FUZZ
@given(data=st.binary(max_size=256))
def test_non_json_rest_bodies_are_rejected(served, data):
  server, _, stub = served
  status, _ = _post(server.rest_port, "/v1/models/duia:predict", data)
  assert status in (400, 404), status
  _still_serves(stub)
