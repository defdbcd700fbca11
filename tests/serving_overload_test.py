"""A 10x overload is shed with RESOURCE_EXHAUSTED (gRPC) and 429 (REST) instead
of queued without limit: the requests held at once never exceed the cap, every
admitted request is answered, and the server serves normally afterwards."""

import concurrent.futures
import json
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from duia.serving import server as server_lib
from tests import serving_fixtures as fx

CAP = 4
SLOW_S = 0.3


class _SlowBackend:
  """Wraps the backend's predict: slow, and counting the requests inside it."""

  def __init__(self, predict):
    self._predict = predict
    self._lock = threading.Lock()
    self.inside = 0
    self.most_inside = 0

  def __call__(self, request):
    with self._lock:
      self.inside += 1
      self.most_inside = max(self.most_inside, self.inside)
    try:
      time.sleep(SLOW_S)
      return self._predict(request)
    finally:
      with self._lock:
        self.inside -= 1


@pytest.fixture
def slow_server(tmp_path):
  root = fx.model_root(tmp_path, {1: 1.0})
  # More workers than the cap: the cap, not the thread pool, is what sheds.
  server, port = server_lib.start_server(str(root), max_workers=2 * CAP,
                                         max_concurrent_requests=CAP, rest_api_port=0)
  slow = _SlowBackend(server.backend.predict)
  server.backend.predict = slow
  yield server, port, slow
  server.stop(None)


def test_grpc_sheds_a_10x_overload_with_resource_exhausted(slow_server):
  server, port, slow = slow_server
  del server
  with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    barrier = threading.Barrier(10 * CAP)

    def call(_):
      barrier.wait()
      try:
        stub.Predict(fx.good_request(), timeout=30)
        return "OK"
      except grpc.RpcError as e:
        return e.code().name

    with concurrent.futures.ThreadPoolExecutor(10 * CAP) as pool:
      codes = list(pool.map(call, range(10 * CAP)))
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
    assert codes.count("OK") >= CAP
    assert codes.count("RESOURCE_EXHAUSTED") >= 5 * CAP  # shed, not queued
    assert slow.most_inside <= CAP
    # Afterwards it serves as before.
    assert stub.Predict(fx.good_request(), timeout=10).model_spec.version.value == 1


def test_rest_sheds_a_10x_overload_with_429(slow_server):
  server, _, slow = slow_server
  body = json.dumps({"instances": [{"b64": "AA=="}]}).encode()
  url = f"http://127.0.0.1:{server.rest_port}/v1/models/duia:predict"
  barrier = threading.Barrier(10 * CAP)

  def call(_):
    barrier.wait()
    try:
      with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as r:
        return r.status, None
    except urllib.error.HTTPError as e:
      return e.code, e.headers.get("Retry-After")

  with concurrent.futures.ThreadPoolExecutor(10 * CAP) as pool:
    answers = list(pool.map(call, range(10 * CAP)))
  statuses = [status for status, _ in answers]
  # 400: the one-byte example is not a valid tf.Example for the model; it was
  # admitted and answered. 429: shed, with a Retry-After.
  assert set(statuses) <= {200, 400, 429}, statuses
  assert statuses.count(429) >= 5 * CAP
  assert all(retry == "1" for status, retry in answers if status == 429)
  assert slow.most_inside <= CAP
  with urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/v1/models/duia",
                              timeout=10) as r:
    assert r.status == 200


def test_the_cap_is_validated_and_defaults_to_8_per_worker(tmp_path):
  with pytest.raises(ValueError, match="max_concurrent_requests must be >= 1"):
    server_lib.ServerConfig("/models", max_concurrent_requests=0)
  root = fx.model_root(tmp_path, {1: 1.0})
  server = server_lib.ModelServer(server_lib.ServerConfig(str(root), max_workers=3))
  assert server.max_concurrent_requests == 24
