"""Serving several versions: hot reload under load, policy, broken versions, warmup.

A real server polls a model base path on a loopback port while clients send
requests; versions of the tiny ranker in `serving_fixtures` are pushed to it.
"""

import shutil
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from duia.models import features
from duia.serving import model_store
from duia.serving import server as server_lib
from duia.serving import version_policy
from tests import serving_fixtures as fx


def _wait_for(condition, timeout_s=30.0):
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    if condition():
      return True
    time.sleep(0.05)
  return False


def test_version_policy_parses_and_selects():
  policy = version_policy.VersionPolicy.parse("latest:2")
  assert policy.select([5, 1, 3]) == [3, 5]
  assert version_policy.VersionPolicy.parse("specific:1,3").select([1, 2]) == [1]
  assert str(version_policy.VersionPolicy.parse("specific:3,1")) == "specific:1,3"
  with pytest.raises(ValueError, match="latest:N"):
    version_policy.VersionPolicy.parse("newest")
  with pytest.raises(ValueError, match=">= 1"):
    version_policy.VersionPolicy(latest=0)


def test_new_version_swaps_in_under_load_without_failed_requests(tmp_path):
  root = fx.model_root(tmp_path, {1: 1.0})
  server, port = server_lib.start_server(str(root), poll_interval_s=0.1)
  target = f"127.0.0.1:{port}"
  answers, failures, stop = [], [], threading.Event()

  def client():
    with grpc.insecure_channel(target) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      while not stop.is_set():
        try:
          response = stub.Predict(fx.good_request(), timeout=10)
          answers.append((response.model_spec.version.value,
                          tf.make_ndarray(response.outputs[features.FUSED_SCORE])))
        except grpc.RpcError as e:
          failures.append(e)

  threads = [threading.Thread(target=client) for _ in range(4)]
  try:
    for t in threads:
      t.start()
    assert _wait_for(lambda: len(answers) >= 20)
    fx.push(root, 2, 3.0, tmp_path)
    assert _wait_for(lambda: answers and answers[-1][0] == 2)
    served_before = len(answers)
    assert _wait_for(lambda: len(answers) >= served_before + 20)
  finally:
    stop.set()
    for t in threads:
      t.join(30)
    server.stop(None)
  assert not failures, failures[:3]
  versions = [v for v, _ in answers]
  switch = versions.index(2)
  # Four clients may overlap the swap by a request or two each, no more.
  assert versions[switch + 8:] == [2] * len(versions[switch + 8:])
  expected = {v: fx.expected_rank_scores(root, v) for v in (1, 2)}
  assert np.max(np.abs(expected[1] - expected[2])) > 1e-3
  for version, scores in answers:
    np.testing.assert_allclose(scores, expected[version], atol=1e-6)


def test_broken_version_is_reported_and_never_served(tmp_path):
  root = fx.model_root(tmp_path, {1: 1.0})
  store = model_store.ModelStore(str(root), "duia")
  assert store.refresh() == [1]
  broken = root / "2"
  broken.mkdir()
  (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
  assert store.refresh() == [1]  # the old version keeps serving
  status = store.status()
  assert status[2].state == model_store.State.END and status[2].error
  assert status[1].state == model_store.State.AVAILABLE
  # A re-push (new files) is retried and swaps in.
  shutil.rmtree(broken)
  fx.push(root, 2, 2.0, tmp_path)
  assert store.refresh() == [2]
  assert store.status()[1].state == model_store.State.END
  assert store.get().version == 2


def test_warmup_is_replayed_and_a_failing_warmup_blocks_the_version(tmp_path):
  root = tmp_path / "duia"
  root.mkdir()
  replayed = []
  good = [fx.good_request(), fx.good_request(signature_name=features.SERVING_RAW_SIGNATURE)]
  fx.push(root, 1, 1.0, tmp_path, warmup_requests=good)

  def warm(model):
    replayed.append(model.version)
    server_lib._warmup(model)  # pylint: disable=protected-access

  store = model_store.ModelStore(str(root), "duia", warmup=warm)
  assert store.refresh() == [1] and replayed == [1]
  bad = fx.good_request()
  bad.inputs.pop(features.USER_ID)
  fx.push(root, 2, 2.0, tmp_path, warmup_requests=[bad])
  assert store.refresh() == [1]
  assert "Missing but required" in store.status()[2].error
