"""The server's APIs on a real loopback port: status, metadata, Classify/Regress,
REST, request size limit and batching, over the tiny ranker of `serving_fixtures`."""

import base64
import json
import threading
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2

from duia.models import features
from duia.serving import client as client_lib
from duia.serving import server as server_lib
from duia.serving import version_policy
from tests import serving_fixtures as fx

_AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE



def test_status_metadata_and_policy_over_grpc(tmp_path):
  root = fx.model_root(tmp_path, {1: 1.0, 2: 2.0, 3: 3.0})
  server, port = server_lib.start_server(
      str(root), policy=version_policy.VersionPolicy(latest=2))
  try:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
      models = model_service_pb2_grpc.ModelServiceStub(channel)
      predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      request = get_model_status_pb2.GetModelStatusRequest()
      request.model_spec.name = "duia"
      status = models.GetModelStatus(request, timeout=10)
      assert [(s.version, s.state) for s in status.model_version_status] == [
          (3, _AVAILABLE), (2, _AVAILABLE)]
      assert all(s.status.error_code == 0 for s in status.model_version_status)
      request.model_spec.version.value = 1
      with pytest.raises(grpc.RpcError) as info:
        models.GetModelStatus(request, timeout=10)
      assert info.value.code() == grpc.StatusCode.NOT_FOUND

      # Both served versions answer when asked by number; version 1 does not.
      for version in (2, 3):
        response = predictions.Predict(fx.good_request(version=version), timeout=10)
        assert response.model_spec.version.value == version
      with pytest.raises(grpc.RpcError) as info:
        predictions.Predict(fx.good_request(version=1), timeout=10)
      assert info.value.code() == grpc.StatusCode.NOT_FOUND
      assert "loaded versions: [2, 3]" in info.value.details()

      metadata_request = get_model_metadata_pb2.GetModelMetadataRequest()
      metadata_request.model_spec.name = "duia"
      metadata_request.metadata_field.append("signature_def")
      metadata = predictions.GetModelMetadata(metadata_request, timeout=10)
      assert metadata.model_spec.version.value == 3
      signature_map = get_model_metadata_pb2.SignatureDefMap()
      metadata.metadata["signature_def"].Unpack(signature_map)
      signatures = signature_map.signature_def
      assert set(signatures) >= {features.SERVING_EXAMPLES_SIGNATURE,
                                 features.SERVING_RAW_SIGNATURE}
      rank = signatures[features.SERVING_RAW_SIGNATURE]
      assert rank.method_name == "tensorflow/serving/predict"
      assert set(rank.inputs) == set(fx.rank_input_specs())
      assert features.FUSED_SCORE in rank.outputs
      metadata_request.metadata_field[:] = ["nope"]
      with pytest.raises(grpc.RpcError) as info:
        predictions.GetModelMetadata(metadata_request, timeout=10)
      assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

      # Classify/Regress need classify/regress signatures; ours are predict ones.
      regress = regression_pb2.RegressionRequest()
      regress.model_spec.name = "duia"
      regress.input.example_list.examples.add()
      with pytest.raises(grpc.RpcError) as info:
        predictions.Regress(regress, timeout=10)
      assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
      assert "tensorflow/serving/regress" in info.value.details()
      classify = classification_pb2.ClassificationRequest()
      classify.model_spec.name = "nope"
      with pytest.raises(grpc.RpcError) as info:
        predictions.Classify(classify, timeout=10)
      assert info.value.code() == grpc.StatusCode.NOT_FOUND
  finally:
    server.stop(None)


def test_oversized_request_is_resource_exhausted_and_server_keeps_serving(tmp_path):
  root = fx.model_root(tmp_path, {1: 1.0})
  server, port = server_lib.start_server(str(root), max_message_bytes=64 * 1024)
  try:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      big = client_lib.build_rank_request(
          fx.USER, [{features.ITEM_ID: f"item-{i:06d}"} for i in range(20_000)], fx.TS)
      assert big.ByteSize() > 64 * 1024
      with pytest.raises(grpc.RpcError) as info:
        stub.Predict(big, timeout=10)
      assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
      assert stub.Predict(fx.good_request(), timeout=10).model_spec.version.value == 1
  finally:
    server.stop(None)


def test_batching_server_merges_concurrent_requests_with_unchanged_answers(tmp_path):
  root = fx.model_root(tmp_path, {1: 1.0})
  loaded = tf.saved_model.load(str(root / "1"))
  examples = fx.examples()
  expected = loaded.signatures[features.SERVING_EXAMPLES_SIGNATURE](
      **{features.SERVING_EXAMPLES_INPUT: tf.constant(examples)})
  config = server_lib.batching_lib.BatchingConfig(
      max_batch_size=64, batch_timeout_micros=50_000, num_batch_threads=1)
  server, port = server_lib.start_server(str(root), batching=config, max_workers=8)
  results, failures = [], []

  def client(i):
    try:
      rows = examples[i % len(examples):]  # requests of different sizes
      outputs = client_lib.predict_examples(f"127.0.0.1:{port}", rows)
      results.append((len(examples) - len(rows), outputs))
    except client_lib.ServingError as e:
      failures.append(e)

  try:
    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
      t.start()
    for t in threads:
      t.join(30)
    # The rank signature (user dim 1, candidates N) is not batchable: it runs alone.
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      response = client_lib.predict(stub, fx.good_request())
    assert response[features.FUSED_SCORE].shape == (len(fx.CANDIDATES),)
  finally:
    server.stop(None)
  assert not failures, failures
  assert len(results) == 8
  for offset, outputs in results:
    for name, values in outputs.items():
      np.testing.assert_allclose(values, expected[name].numpy()[offset:], atol=1e-6)
  assert server.batcher.requests_run == 8
  assert server.batcher.batches_run < 8  # some requests shared a model call


def _rest(port, path, body=None):
  data = None if body is None else json.dumps(body).encode()
  request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
  try:
    with urllib.request.urlopen(request, timeout=10) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def test_rest_predict_metadata_and_status_match_the_model(tmp_path):
  root = fx.model_root(tmp_path, {1: 1.0, 2: 2.0})
  server, _ = server_lib.start_server(str(root), rest_api_port=0)
  try:
    port = server.rest_port
    request = fx.good_request()
    columns = {}
    for name, proto in request.inputs.items():
      array = tf.make_ndarray(proto)
      columns[name] = (np.vectorize(lambda b: b.decode())(array).tolist()
                       if array.dtype == object else array.tolist())
    status, body = _rest(port, "/v1/models/duia:predict",
                         {"signature_name": features.SERVING_RAW_SIGNATURE, "inputs": columns})
    assert status == 200, body
    expected = fx.expected_rank_scores(root, 2)
    np.testing.assert_allclose(body["outputs"][features.FUSED_SCORE], expected, atol=1e-6)

    # Row format on serving_default: serialized examples as b64.
    examples = fx.examples()
    status, body = _rest(port, "/v1/models/duia/versions/2:predict", {
        "instances": [{"b64": base64.b64encode(e).decode()} for e in examples]})
    assert status == 200, body
    loaded = tf.saved_model.load(str(root / "2"))
    scores = loaded.signatures[features.SERVING_EXAMPLES_SIGNATURE](
        **{features.SERVING_EXAMPLES_INPUT: tf.constant(examples)})[features.FUSED_SCORE]
    np.testing.assert_allclose([p[features.FUSED_SCORE] for p in body["predictions"]],
                               scores.numpy(), atol=1e-6)

    status, body = _rest(port, "/v1/models/duia")
    assert status == 200
    assert body["model_version_status"][0]["version"] == "2"
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    status, body = _rest(port, "/v1/models/duia/metadata")
    assert status == 200
    assert body["model_spec"]["version"] == "2"
    assert features.SERVING_RAW_SIGNATURE in body["metadata"]["signature_def"]["signature_def"]
    status, body = _rest(port, "/v1/models/duia/versions/1:predict",
                         {"signature_name": features.SERVING_RAW_SIGNATURE, "inputs": columns})
    assert status == 404 and "version 1" in body["error"]
    columns.pop(features.USER_ID)
    status, body = _rest(port, "/v1/models/duia:predict",
                         {"signature_name": features.SERVING_RAW_SIGNATURE, "inputs": columns})
    assert status == 400 and features.USER_ID in body["error"]
    assert _rest(port, "/v1/models/duia")[0] == 200  # still serving
  finally:
    server.stop(None)


def _save_estimator_style_model(path):
  """A TF1-style SavedModel with classify and regress signatures over tf.Examples,
  as Estimators export them (Keras/TF2 exports have predict signatures only)."""
  graph = tf.Graph()
  with graph.as_default():
    serialized = tf.compat.v1.placeholder(tf.string, [None], name="inputs")
    x = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([], tf.float32)})["x"]
    value = 2.0 * x + 1.0
    scores = tf.stack([tf.sigmoid(-x), tf.sigmoid(x)], axis=1)
    classes = tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(x)[0], 1])
    builder = tf.compat.v1.saved_model.Builder(str(path))
    with tf.compat.v1.Session(graph=graph) as session:
      builder.add_meta_graph_and_variables(session, [tf.saved_model.SERVING], signature_def_map={
          "regress": tf.compat.v1.saved_model.regression_signature_def(serialized, value),
          "classify": tf.compat.v1.saved_model.classification_signature_def(
              serialized, classes, scores),
      })
    builder.save()


def test_classify_and_regress_on_signatures_that_allow_them(tmp_path):
  root = tmp_path / "estimator"
  _save_estimator_style_model(root / "1")
  server, port = server_lib.start_server(str(root), model_name="estimator")
  try:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      regress = regression_pb2.RegressionRequest()
      regress.model_spec.name = "estimator"
      regress.model_spec.signature_name = "regress"
      for value in (0.0, 1.5):
        regress.input.example_list.examples.add().features.feature[
            "x"].float_list.value.append(value)
      result = stub.Regress(regress, timeout=10)
      assert [r.value for r in result.result.regressions] == [1.0, 4.0]
      assert result.model_spec.signature_name == "regress"

      classify = classification_pb2.ClassificationRequest()
      classify.model_spec.name = "estimator"
      classify.model_spec.signature_name = "classify"
      classify.input.CopyFrom(regress.input)
      result = stub.Classify(classify, timeout=10)
      rows = [[(c.label, round(c.score, 4)) for c in row.classes]
              for row in result.result.classifications]
      assert rows == [[("neg", 0.5), ("pos", 0.5)], [("neg", 0.1824), ("pos", 0.8176)]]

      # The classify signature is not a regress one: refused with its method name.
      regress.model_spec.signature_name = "classify"
      with pytest.raises(grpc.RpcError) as info:
        stub.Regress(regress, timeout=10)
      assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
      assert "tensorflow/serving/classify" in info.value.details()
  finally:
    server.stop(None)
