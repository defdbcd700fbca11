"""Tests for duia.serving.rest: TF Serving's REST API over a fake backend.

A real `RestGateway` serves on a free loopback port; the backend is a fake with
real protos, so these tests cover the HTTP and JSON layers, not the models.
"""

import base64
import json
import logging
import socket
import threading
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import predict_pb2

from duia.serving import rest
from duia.serving.errors import RequestError

MODEL = "duia"
VERSION = 2
MAX_BODY = 64 * 1024

# Signature name -> input specs. "echo" is also the default signature.
_ECHO = {"x": tf.TensorSpec([None], tf.float32),
         "s": tf.TensorSpec([None], tf.string)}
_SIGNATURES = {
    "serving_default": _ECHO,
    "echo": _ECHO,
    "single": {"x": tf.TensorSpec([None], tf.float32)},
    "boom": {"x": tf.TensorSpec([None], tf.float32)},
}
# Signatures "fail_<CODE>" raise RequestError(<CODE>) from predict.
_FAIL_PREFIX = "fail_"


class FakeBackend:
  """Serves model `duia` version 2; implements `rest.Backend`."""

  def __init__(self):
    self.requests = []  # Every request received, in order.

  def _check_model(self, spec: model_pb2.ModelSpec) -> None:
    if spec.name != MODEL:
      raise RequestError(grpc.StatusCode.NOT_FOUND,
                         f"Servable not found: model {spec.name!r}")
    if spec.HasField("version") and spec.version.value != VERSION:
      raise RequestError(grpc.StatusCode.NOT_FOUND,
                         f"Servable not found: version {spec.version.value}")

  def input_specs(self, model_spec):
    self._check_model(model_spec)
    name = model_spec.signature_name or "serving_default"
    if name.startswith(_FAIL_PREFIX):
      return _SIGNATURES["single"]
    if name not in _SIGNATURES:
      raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                         f"Serving signature {name!r} not found")
    return _SIGNATURES[name]

  def predict(self, request):
    self.requests.append(request)
    self._check_model(request.model_spec)
    name = request.model_spec.signature_name or "serving_default"
    if name.startswith(_FAIL_PREFIX):
      code = grpc.StatusCode[name[len(_FAIL_PREFIX):]]
      raise RequestError(code, f"injected {code.name}")
    if name == "boom":
      raise RuntimeError("backend bug")
    x = tf.make_ndarray(request.inputs["x"])
    response = predict_pb2.PredictResponse()
    response.model_spec.name = MODEL
    response.model_spec.version.value = VERSION
    if name == "single":
      response.outputs["y"].CopyFrom(tf.make_tensor_proto(x * 2))
      return response
    s = tf.make_ndarray(request.inputs["s"])
    response.outputs["doubled"].CopyFrom(tf.make_tensor_proto(x * 2))
    response.outputs["s_out"].CopyFrom(tf.make_tensor_proto(s))
    response.outputs["s_bytes"].CopyFrom(tf.make_tensor_proto(s))
    return response

  def get_model_status(self, request):
    self.requests.append(request)
    self._check_model(request.model_spec)
    response = get_model_status_pb2.GetModelStatusResponse()
    status = response.model_version_status.add()
    status.version = VERSION
    status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    return response

  def get_model_metadata(self, request):
    self.requests.append(request)
    self._check_model(request.model_spec)
    signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/"
                                            "predict")
    signature.inputs["x"].name = "x:0"
    signature.inputs["x"].dtype = tf.float32.as_datatype_enum
    signature.inputs["x"].tensor_shape.dim.add(size=-1)
    signature.outputs["y"].name = "y:0"
    signature.outputs["y"].dtype = tf.float32.as_datatype_enum
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    signature_map.signature_def["serving_default"].CopyFrom(signature)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = MODEL
    response.model_spec.version.value = VERSION
    packed = any_pb2.Any()
    packed.Pack(signature_map)
    response.metadata["signature_def"].CopyFrom(packed)
    return response


@pytest.fixture(scope="module")
def backend():
  return FakeBackend()


@pytest.fixture(scope="module")
def gateway(backend):
  gw = rest.RestGateway(backend, max_body_bytes=MAX_BODY)
  gw.start()
  yield gw
  gw.stop()


# urllib would otherwise route 127.0.0.1 through any proxy in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(gw, method, path, body=None, raw=None):
  """Returns (status, decoded JSON body, headers) of one request."""
  data = raw if raw is not None else (
      None if body is None else json.dumps(body).encode())
  request = urllib.request.Request(f"http://127.0.0.1:{gw.port}{path}",
                                   data=data, method=method)
  try:
    with _OPENER.open(request, timeout=10) as response:
      return response.status, json.loads(response.read()), response.headers
  except urllib.error.HTTPError as e:
    with e:
      return e.code, json.loads(e.read()), e.headers


def raw_exchange(gw, request_head: bytes) -> bytes:
  """Sends only `request_head` (no body) and returns what the server says."""
  with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as conn:
    conn.sendall(request_head)
    chunks = []
    while True:
      chunk = conn.recv(65536)  # Times out (fails) if the server waits.
      if not chunk:
        return b"".join(chunks)
      chunks.append(chunk)


def assert_still_serving(gw):
  status, body, _ = call(gw, "GET", f"/v1/models/{MODEL}")
  assert status == 200, body
  assert body["model_version_status"][0]["state"] == "AVAILABLE"


def b64(data: bytes) -> dict:
  return {"b64": base64.b64encode(data).decode()}


# ---------------------------------------------------------------------------
# Predict


def test_row_predict_with_named_inputs_and_b64(gateway, backend):
  status, body, headers = call(
      gateway, "POST", f"/v1/models/{MODEL}:predict",
      {"signature_name": "echo",
       "instances": [{"x": 1.5, "s": "a"}, {"x": -2, "s": b64(b"\xff\x00")}]})
  assert status == 200, body
  assert headers["Content-Type"] == "application/json"
  assert body == {"predictions": [
      {"doubled": 3.0, "s_bytes": b64(b"a"), "s_out": "a"},
      # Not UTF-8, so s_out falls back to b64 as well.
      {"doubled": -4.0, "s_bytes": b64(b"\xff\x00"),
       "s_out": b64(b"\xff\x00")},
  ]}
  request = backend.requests[-1]
  assert request.model_spec.signature_name == "echo"
  assert not request.model_spec.HasField("version")
  assert request.inputs["x"].dtype == tf.float32.as_datatype_enum
  np.testing.assert_array_equal(tf.make_ndarray(request.inputs["x"]),
                                [1.5, -2.0])
  assert tf.make_ndarray(request.inputs["s"]).tolist() == [b"a", b"\xff\x00"]


def test_row_predict_bare_instances_for_single_input(gateway, backend):
  status, body, _ = call(gateway, "POST",
                         f"/v1/models/{MODEL}/versions/{VERSION}:predict",
                         {"signature_name": "single",
                          "instances": [1.0, 2.5, 0.1]})
  assert status == 200, body
  # 0.1 * 2 in float32 prints as 0.2, as TF Serving writes it.
  assert body == {"predictions": [2.0, 5.0, 0.2]}
  assert backend.requests[-1].model_spec.version.value == VERSION


def test_row_predict_bare_instances_rejected_for_two_inputs(gateway):
  status, body, _ = call(gateway, "POST", f"/v1/models/{MODEL}:predict",
                         {"instances": [1.0, 2.0]})
  assert status == 400
  assert "bare values" in body["error"]
  assert "['s', 'x']" in body["error"]
  assert_still_serving(gateway)


def test_row_predict_rejects_differing_0th_dims(gateway):
  status, body, _ = call(
      gateway, "POST", f"/v1/models/{MODEL}:predict",
      {"instances": [{"x": 1.0, "s": "a"}, {"x": 2.0}]})
  assert status == 400
  assert "Element 1 of 'instances' lacks inputs ['s']" in body["error"]
  assert "columnar" in body["error"]
  assert_still_serving(gateway)


def test_columnar_predict_accepts_differing_0th_dims(gateway, backend):
  status, body, _ = call(
      gateway, "POST", f"/v1/models/{MODEL}:predict",
      {"inputs": {"x": [[1, 2]], "s": ["u", "v", b64(b"w")]}})
  assert status == 200, body
  assert body == {"outputs": {
      "doubled": [[2.0, 4.0]],
      "s_bytes": [b64(b"u"), b64(b"v"), b64(b"w")],
      "s_out": ["u", "v", "w"],
  }}
  request = backend.requests[-1]
  assert list(tf.make_ndarray(request.inputs["x"]).shape) == [1, 2]
  assert list(tf.make_ndarray(request.inputs["s"]).shape) == [3]


def test_columnar_predict_bare_value_for_single_input(gateway):
  status, body, _ = call(gateway, "POST", f"/v1/models/{MODEL}:predict",
                         {"signature_name": "single", "inputs": [0.5, 4]})
  assert status == 200, body
  assert body == {"outputs": [1.0, 8.0]}


def test_row_predict_instances_of_differing_shape_rejected(gateway):
  status, body, _ = call(gateway, "POST", f"/v1/models/{MODEL}:predict",
                         {"signature_name": "single",
                          "instances": [[1.0, 2.0], [3.0]]})
  assert status == 400
  assert "Input 'x' has shape [1] in element 1" in body["error"]
  assert_still_serving(gateway)


@pytest.mark.parametrize("body, message", [
    ({"instances": [{"x": 1.0, "s": "a"}], "inputs": {"x": [1.0]}},
     "it has both"),
    ({"signature_name": "echo"}, "it has neither"),
    ({"instances": []}, "'instances' is empty"),
    ({"instances": {"x": 1.0}}, "'instances' must be a list"),
    ({"signature_name": 3, "instances": [1.0]}, "'signature_name' must be"),
    ({"inputs": {"x": [1.0]}}, "'inputs' lacks inputs ['s']"),
    ({"instances": [{"x": 1.0, "s": "a", "z": 1}]}, "keys ['z']"),
    ({"inputs": {"x": ["one"], "s": ["a"]}},
     "Input 'x': JSON value \"one\" (string) is not of expected type float32"),
    ({"signature_name": "nope", "instances": [1.0]}, "'nope' not found"),
])
def test_predict_bad_bodies_are_400(gateway, body, message):
  status, reply, _ = call(gateway, "POST", f"/v1/models/{MODEL}:predict",
                          body)
  assert status == 400, reply
  assert message in reply["error"]
  assert_still_serving(gateway)


@pytest.mark.parametrize("path", [
    "/v1/models/other:predict",
    f"/v1/models/{MODEL}/versions/7:predict",
])
def test_predict_unknown_model_or_version_is_404(gateway, path):
  status, body, _ = call(gateway, "POST", path, {"instances": [1.0]})
  assert status == 404
  assert "Servable not found" in body["error"]
  assert_still_serving(gateway)


@pytest.mark.parametrize("code, expected", [
    ("NOT_FOUND", 404),
    ("RESOURCE_EXHAUSTED", 429),
    ("UNAVAILABLE", 503),
    ("DEADLINE_EXCEEDED", 504),
    ("FAILED_PRECONDITION", 400),
    ("INTERNAL", 500),
])
def test_backend_error_codes_become_http_statuses(gateway, code, expected):
  status, body, _ = call(gateway, "POST", f"/v1/models/{MODEL}:predict",
                         {"signature_name": _FAIL_PREFIX + code,
                          "instances": [1.0]})
  assert (status, body) == (expected, {"error": f"injected {code}"})
  assert_still_serving(gateway)


def test_unexpected_backend_exception_is_500_and_logged(gateway, caplog):
  with caplog.at_level(logging.ERROR):
    status, body, _ = call(gateway, "POST", f"/v1/models/{MODEL}:predict",
                           {"signature_name": "boom", "instances": [1.0]})
  assert status == 500
  assert body == {"error": "RuntimeError: backend bug"}
  assert any("failed unexpectedly" in r.getMessage() and r.exc_info
             for r in caplog.records)
  assert_still_serving(gateway)


# ---------------------------------------------------------------------------
# Status and metadata


@pytest.mark.parametrize("path", [f"/v1/models/{MODEL}",
                                  f"/v1/models/{MODEL}/versions/{VERSION}"])
def test_model_status_json(gateway, backend, path):
  status, body, _ = call(gateway, "GET", path)
  assert status == 200
  assert body == {"model_version_status": [{
      "version": "2",
      "state": "AVAILABLE",
      "status": {"error_code": "OK", "error_message": ""},
  }]}
  request = backend.requests[-1]
  assert isinstance(request, get_model_status_pb2.GetModelStatusRequest)
  assert request.model_spec.name == MODEL
  assert request.model_spec.HasField("version") == ("versions" in path)


@pytest.mark.parametrize("path", [f"/v1/models/{MODEL}/metadata",
                                  f"/v1/models/{MODEL}/versions/2/metadata"])
def test_model_metadata_json(gateway, backend, path):
  status, body, _ = call(gateway, "GET", path)
  assert status == 200, body
  assert body["model_spec"] == {"name": MODEL, "signature_name": "",
                                "version": "2"}
  signatures = body["metadata"]["signature_def"]["signature_def"]
  assert list(signatures) == ["serving_default"]
  assert signatures["serving_default"]["method_name"] == (
      "tensorflow/serving/predict")
  assert signatures["serving_default"]["inputs"]["x"] == {
      "name": "x:0", "dtype": "DT_FLOAT",
      "tensor_shape": {"dim": [{"size": "-1", "name": ""}],
                       "unknown_rank": False}}
  request = backend.requests[-1]
  assert isinstance(request, get_model_metadata_pb2.GetModelMetadataRequest)
  assert list(request.metadata_field) == ["signature_def"]


@pytest.mark.parametrize("path", ["/v1/models/other",
                                  "/v1/models/other/metadata",
                                  f"/v1/models/{MODEL}/versions/9"])
def test_status_and_metadata_of_unknown_model_are_404(gateway, path):
  status, body, _ = call(gateway, "GET", path)
  assert status == 404
  assert "Servable not found" in body["error"]
  assert_still_serving(gateway)


# ---------------------------------------------------------------------------
# HTTP-level errors


@pytest.mark.parametrize("method, path, body, expected, message", [
    ("POST", f"/v1/models/{MODEL}:predict", b"{not json", 400,
     "JSON Parse error"),
    ("POST", f"/v1/models/{MODEL}:predict", b"", 400, "document is empty"),
    ("POST", f"/v1/models/{MODEL}:predict", b"\xff\xfe{", 400,
     "JSON Parse error"),
    ("POST", f"/v1/models/{MODEL}:predict", b"[1, 2]", 400,
     "must be a JSON object; got an array"),
    ("GET", "/v2/models/duia", None, 404, "No route for GET /v2/models/duia"),
    ("GET", f"/v1/models/{MODEL}/versions/x", None, 404, "No route"),
    ("POST", f"/v1/models/{MODEL}:explain", b"{}", 404, "No route"),
    ("GET", f"/v1/models/{MODEL}:predict", None, 405, "takes POST, not GET"),
    ("PUT", f"/v1/models/{MODEL}", b"{}", 405, "takes GET, not PUT"),
    ("DELETE", f"/v1/models/{MODEL}/metadata", None, 405, "takes GET"),
    ("POST", f"/v1/models/{MODEL}/labels/stable:predict", b"{}", 400,
     "Version labels are not supported"),
    ("GET", f"/v1/models/{MODEL}/labels/stable", None, 400,
     "label 'stable'"),
    ("GET", "/v1/models", None, 400, "Missing model name"),
    ("POST", f"/v1/models/{MODEL}/versions/99999999999999999999:predict",
     b"{}", 400, "Failed to convert version"),
    ("POST", f"/v1/models/{MODEL}:classify", b"{}", 501,
     "classify is not served here"),
])
def test_http_errors(gateway, method, path, body, expected, message):
  status, reply, headers = call(gateway, method, path, raw=body)
  assert status == expected, reply
  assert message in reply["error"]
  if expected == 405:
    assert headers["Allow"] == ("POST" if ":predict" in path else "GET")
  assert_still_serving(gateway)


def test_missing_content_length_is_411(gateway):
  reply = raw_exchange(gateway, f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\n"
                       f"Host: x\r\n\r\n".encode())
  assert reply.startswith(b"HTTP/1.1 411 ")
  assert b"POST needs a Content-Length header" in reply
  assert_still_serving(gateway)


@pytest.mark.parametrize("expect", [False, True])
def test_oversized_body_is_413_without_reading_it(gateway, expect):
  # Only the head is sent: a server that tried to read the body would hang
  # and raw_exchange would time out.
  head = (f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\n"
          f"Content-Length: {MAX_BODY + 1}\r\n"
          + ("Expect: 100-continue\r\n" if expect else "") + "\r\n")
  reply = raw_exchange(gateway, head.encode())
  assert reply.startswith(b"HTTP/1.1 413 ")
  assert b"100 Continue" not in reply
  _, _, body = reply.partition(b"\r\n\r\n")
  assert json.loads(body) == {"error": f"Request body of {MAX_BODY + 1} "
                                       f"bytes exceeds the limit of "
                                       f"{MAX_BODY} bytes."}
  assert_still_serving(gateway)


def test_body_at_the_limit_is_accepted(gateway):
  body = json.dumps({"signature_name": "single", "instances": [1.0]})
  raw = (body + " " * (MAX_BODY - len(body))).encode()
  assert len(raw) == MAX_BODY
  status, reply, _ = call(gateway, "POST", f"/v1/models/{MODEL}:predict",
                          raw=raw)
  assert (status, reply) == (200, {"predictions": [2.0]})


def test_keep_alive_connection_survives_an_error(gateway):
  import http.client  # pylint: disable=import-outside-toplevel
  conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
  try:
    conn.request("POST", f"/v1/models/{MODEL}:predict", body=b"{bad")
    first = conn.getresponse()
    assert first.status == 400
    first.read()
    conn.request("POST", f"/v1/models/{MODEL}:predict",
                 body=json.dumps({"signature_name": "single",
                                  "instances": [3.0]}))
    second = conn.getresponse()
    assert (second.status, json.loads(second.read())) == (
        200, {"predictions": [6.0]})
  finally:
    conn.close()


def test_concurrent_requests(gateway):
  results = []

  def worker(value):
    results.append(call(gateway, "POST", f"/v1/models/{MODEL}:predict",
                        {"signature_name": "single",
                         "instances": [value]})[:2])

  threads = [threading.Thread(target=worker, args=(float(i),))
             for i in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(10)
  assert sorted(r[1]["predictions"][0] for r in results) == [
      2.0 * i for i in range(8)]


# ---------------------------------------------------------------------------
# Lifecycle


def test_start_stop_and_bind_failure(backend):
  first = rest.RestGateway(backend)
  port = first.start()
  try:
    assert port > 0 and first.port == port
    with pytest.raises(RuntimeError, match="already serving"):
      first.start()
    second = rest.RestGateway(backend, port=port)
    with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
      second.start()
  finally:
    first.stop()
  first.stop()  # Idempotent.
  with pytest.raises(ConnectionRefusedError):
    socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_default_port_and_status_mapping():
  assert rest.DEFAULT_REST_PORT == 8501
  expected = {
      "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
      "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
      "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
      "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400,
      "UNIMPLEMENTED": 501, "INTERNAL": 500, "UNAVAILABLE": 503,
      "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
  }
  assert {c.name: rest.http_status(c) for c in grpc.StatusCode} == expected
