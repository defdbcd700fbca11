"""Tests for duia.serving: the PredictionService server, model store and client.

A tiny SavedModel with the two signatures of docs/design.md §7 (`serving_default`
over serialized tf.Examples, `rank` over raw tensors with the user sent once) is
saved as versions 1 and 2; a real gRPC server on a loopback port serves it and
every answer is compared with the loaded signature called in-process.
"""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from duia.models import features
from duia.serving import client as client_lib
from duia.serving import model_loader
from duia.serving import server as server_lib
from tests import serving_fixtures as fx
from tests.serving_fixtures import CANDIDATES as _CANDIDATES, TASKS as _TASKS, TS as _TS, USER as _USER


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("models") / "duia"
  fx.save(1.0, root / "1")
  fx.save(2.0, root / "2")
  # Neither may be picked: "3" is a version still being copied (no graph file),
  # "tmp-5" is not an integer.
  (root / "3").mkdir()
  (root / "tmp-5").mkdir()
  return root


@pytest.fixture(scope="module")
def loaded(model_root):
  return {v: tf.saved_model.load(str(model_root / str(v))) for v in (1, 2)}


@pytest.fixture(scope="module")
def target(model_root):
  server, port = server_lib.start_server(str(model_root), port=0)
  yield f"127.0.0.1:{port}"
  server.stop(None)


@pytest.fixture(scope="module")
def stub(target):
  with grpc.insecure_channel(target) as channel:
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _good_request():
  return client_lib.build_rank_request(_USER, _CANDIDATES, _TS)


def _in_process(saved_model, signature, request):
  inputs = {k: tf.constant(tf.make_ndarray(v))
            for k, v in request.inputs.items()}
  return {k: v.numpy() for k, v in
          saved_model.signatures[signature](**inputs).items()}


def test_build_rank_request_shapes_dtypes_and_padding():
  request = _good_request()
  arrays = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
  n = len(_CANDIDATES)
  assert request.model_spec.signature_name == features.SERVING_RAW_SIGNATURE
  assert set(arrays) == set(fx.rank_input_specs())
  assert arrays[features.USER_ID].tolist() == [b"u42"]
  assert arrays[features.GENDER].tolist() == [b""]
  assert arrays[features.HIST_ITEM_IDS].tolist() == [[b"i1", b"i7", b"i3"]]
  # An empty user list is still one column wide, padded with b"".
  assert arrays[features.NEG_ITEM_IDS].tolist() == [[b""]]
  assert arrays[features.HIST_TS].tolist() == [[_TS - 3_600, _TS - 86_400, _TS - 7 * 86_400]]
  # Int lists likewise: one column wide, padded with 0.
  assert arrays[features.NEG_TS].tolist() == [[0]]
  assert arrays[features.NEG_TS].dtype == np.int64
  assert arrays[features.USER_VALID_COUNT].tolist() == [12]
  assert arrays[features.TIMESTAMP].tolist() == [_TS]
  assert arrays[features.TAGS].tolist() == [
      [b"x", b"", b""], [b"x", b"y", b"z"], [b"", b"", b""], [b"", b"", b""],
      [b"", b"", b""]]
  assert arrays[features.DURATION_S].dtype == np.float32
  np.testing.assert_array_equal(arrays[features.DURATION_S],
                                [30.0, 5.5, 0.0, 120.0, 60.0])
  assert arrays[features.ITEM_PRIOR_EXPOSURES].tolist() == [0, 40, 0, 0, 0]
  assert arrays[features.CAT1].shape == (n,)
  assert request.inputs[features.TIMESTAMP].dtype == tf.int64.as_datatype_enum


def test_build_rank_request_rejects_bad_features():
  with pytest.raises(ValueError, match="hist_itemids"):
    client_lib.build_rank_request({"hist_itemids": []}, _CANDIDATES, _TS)
  with pytest.raises(TypeError, match=features.HIST_ITEM_IDS):
    client_lib.build_rank_request({features.HIST_ITEM_IDS: "i1"}, _CANDIDATES,
                                  _TS)
  with pytest.raises(TypeError, match=f"{features.HIST_TS}.*list of integers"):
    client_lib.build_rank_request({features.HIST_TS: 1_700_000_000}, _CANDIDATES, _TS)
  with pytest.raises(TypeError, match=f"{features.NEG_TS}.*integer"):
    client_lib.build_rank_request({features.NEG_TS: [1.5]}, _CANDIDATES, _TS)
  with pytest.raises(TypeError, match=f"{features.DURATION_S}"):
    client_lib.build_rank_request(
        {}, [{features.ITEM_ID: "a", features.DURATION_S: "long"}], _TS)


def test_rank_matches_in_process_and_is_sorted(target, loaded):
  with client_lib.RankingClient(target) as client:
    ranked = client.rank(_USER, _CANDIDATES, _TS)
  expected = _in_process(loaded[2], features.SERVING_RAW_SIGNATURE,
                         _good_request())
  assert sorted(r.index for r in ranked) == list(range(len(_CANDIDATES)))
  scores = [r.score for r in ranked]
  assert scores == sorted(scores, reverse=True)
  assert len(set(scores)) == len(scores)  # Else the order check is weak.
  for r in ranked:
    assert r.item_id == _CANDIDATES[r.index][features.ITEM_ID]
    assert set(r.task_scores) == set(_TASKS)
    np.testing.assert_allclose(r.score, expected[features.FUSED_SCORE][r.index],
                               rtol=0, atol=1e-6)
    for task in _TASKS:
      np.testing.assert_allclose(r.task_scores[task], expected[task][r.index],
                                 rtol=0, atol=1e-6)


def test_serving_default_matches_in_process(target, stub, loaded):
  examples = fx.examples()
  request_input = tf.constant(examples)
  expected = {k: v.numpy() for k, v in loaded[2].signatures[
      features.SERVING_EXAMPLES_SIGNATURE](
          **{features.SERVING_EXAMPLES_INPUT: request_input}).items()}
  for stub_or_target in (target, stub):
    outputs = client_lib.predict_examples(stub_or_target, examples)
    assert set(outputs) == set(_TASKS) | {features.FUSED_SCORE}
    for name, values in outputs.items():
      assert values.shape == (len(examples),)
      np.testing.assert_allclose(values, expected[name], rtol=0, atol=1e-6)
  filtered = client_lib.predict_examples(
      stub, examples, output_filter=[features.TASK_LIKE])
  assert list(filtered) == [features.TASK_LIKE]


def test_highest_version_is_served(model_root, stub, loaded):
  assert sorted(model_loader.list_versions(str(model_root))) == [1, 2]
  response = stub.Predict(_good_request(), timeout=5)
  assert response.model_spec.name == "duia"
  assert response.model_spec.version.value == 2
  assert (response.model_spec.signature_name ==
          features.SERVING_RAW_SIGNATURE)
  served = tf.make_ndarray(response.outputs[features.FUSED_SCORE])
  v1, v2 = (_in_process(loaded[v], features.SERVING_RAW_SIGNATURE,
                        _good_request())[features.FUSED_SCORE] for v in (1, 2))
  assert np.max(np.abs(v1 - v2)) > 1e-3  # The versions are distinguishable.
  np.testing.assert_allclose(served, v2, rtol=0, atol=1e-6)


def _set(key, value, dtype, shape=None):
  def mutate(request):
    request.inputs[key].CopyFrom(tf.make_tensor_proto(value, dtype, shape))
  return mutate


def _spec(**fields):
  def mutate(request):
    for name, value in fields.items():
      if name == "version":
        request.model_spec.version.value = value
      else:
        setattr(request.model_spec, name, value)
  return mutate


def _truncated_content(request):
  proto = request.inputs[features.DURATION_S]
  proto.ClearField("float_val")
  proto.tensor_content = np.zeros(2, np.float32).tobytes()  # Shape says 5.


_BAD_REQUESTS = {
    "unknown_model": (_spec(name="nope"), grpc.StatusCode.NOT_FOUND, ["nope"]),
    "unknown_signature": (_spec(signature_name="nope_sig"),
                          grpc.StatusCode.INVALID_ARGUMENT,
                          ["nope_sig", features.SERVING_RAW_SIGNATURE]),
    "missing_input": (lambda r: r.inputs.pop(features.CITY),
                      grpc.StatusCode.INVALID_ARGUMENT, [features.CITY]),
    "unknown_input": (_set("bogus", [1], tf.int64),
                      grpc.StatusCode.INVALID_ARGUMENT, ["bogus"]),
    "wrong_dtype": (_set(features.DURATION_S, [1.0] * 5, tf.float64),
                    grpc.StatusCode.INVALID_ARGUMENT,
                    [features.DURATION_S, "float32", "float64"]),
    "wrong_rank": (_set(features.USER_ID, [[b"u42"]], tf.string),
                   grpc.StatusCode.INVALID_ARGUMENT, [features.USER_ID]),
    "user_batch_of_two": (_set(features.USER_ID, [b"u1", b"u2"], tf.string),
                          grpc.StatusCode.INVALID_ARGUMENT, [features.USER_ID]),
    "version_on_disk_not_served": (_spec(version=1), grpc.StatusCode.NOT_FOUND,
                                   ["version 1"]),
    "version_absent": (_spec(version=7), grpc.StatusCode.NOT_FOUND,
                       ["version 7"]),
    "unknown_output": (lambda r: r.output_filter.append("nope_out"),
                       grpc.StatusCode.INVALID_ARGUMENT, ["nope_out"]),
    "malformed_tensor": (_truncated_content, grpc.StatusCode.INVALID_ARGUMENT,
                         [features.DURATION_S]),
    # Shapes pass the spec check; the model itself fails to broadcast.
    "model_error": (_set(features.DURATION_S, [1.0, 2.0], tf.float32),
                    grpc.StatusCode.INVALID_ARGUMENT, ["ncompatible shapes"]),
}


@pytest.mark.parametrize("case", sorted(_BAD_REQUESTS))
def test_bad_request_is_rejected_and_server_keeps_serving(case, stub):
  mutate, code, mentions = _BAD_REQUESTS[case]
  request = _good_request()
  mutate(request)
  with pytest.raises(client_lib.ServingError) as info:
    client_lib.predict(stub, request)
  assert info.value.code == code, info.value
  for text in mentions:
    assert text in info.value.details, info.value
  outputs = client_lib.predict(stub, _good_request())
  assert outputs[features.FUSED_SCORE].shape == (len(_CANDIDATES),)


def test_ranking_client_surfaces_status(target):
  with client_lib.RankingClient(target, model_name="nope") as client:
    with pytest.raises(client_lib.ServingError, match="NOT_FOUND.*nope"):
      client.rank(_USER, _CANDIDATES, _TS)
    assert client.rank(_USER, [], _TS) == []


def test_no_version_fails_clearly(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(model_loader.NoServableVersionError,
                     match="No servable version under.*empty"):
    server_lib.start_server(str(empty))
  with pytest.raises(model_loader.NoServableVersionError, match="missing"):
    server_lib.start_server(str(tmp_path / "missing"))


def test_serve_main_stops_on_sigterm(model_root):
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.Popen(
      [sys.executable, "-m", "duia.serving.server",
       f"--model_base_path={model_root}", "--port=0"],
      stderr=subprocess.PIPE, text=True, env=env)
  # A reader thread, so a server that never logs its port cannot block the
  # test in readline(), and a chatty one cannot fill the pipe and stall.
  lines = queue.Queue()
  reader = threading.Thread(
      target=lambda: [lines.put(l) for l in iter(proc.stderr.readline, "")],
      daemon=True)
  reader.start()
  try:
    port = None
    deadline = time.monotonic() + 60
    while port is None:
      try:
        line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
      except queue.Empty:
        pytest.fail("server did not report its port within 60 s")
      match = re.search(r"Serving model 'duia' version 2 on 127.0.0.1:(\d+)",
                        line)
      port = match and int(match.group(1))
    outputs = client_lib.predict_examples(f"127.0.0.1:{port}", fx.examples())
    assert outputs[features.FUSED_SCORE].shape == (len(_CANDIDATES),)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
    reader.join(timeout=5)
    proc.stderr.close()
