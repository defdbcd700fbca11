"""Tests for duia.serving.rest_json: TF Serving's REST JSON <-> protos, without HTTP."""

import base64

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from duia.serving import rest_json
from duia.serving.errors import RequestError

MODEL = "duia"


def b64(data: bytes) -> dict:
  return {"b64": base64.b64encode(data).decode()}


def _spec(dtype):
  return {"v": tf.TensorSpec(None, dtype)}


@pytest.mark.parametrize("dtype, value, message", [
    (tf.int64, [1, 1.5], "JSON value 1.5 (number) is not of expected type "
                         "int64"),
    (tf.int32, [2**31], "out of range for int32"),
    (tf.uint8, [-1], "out of range for uint8"),
    (tf.int64, [True], "(boolean) is not of expected type int64"),
    (tf.float32, ["a"], "(string) is not of expected type float32"),
    (tf.float32, [2**24], "without loss of precision"),
    (tf.float32, [1e39], "out of range for float32"),
    (tf.bool, [1], "(number) is not of expected type bool"),
    (tf.string, [5], "(number) is not of expected type string"),
    (tf.string, [{"b64": "@@"}], "is not valid base64"),
    (tf.string, [{"b64": "YQ==", "x": 1}], "single key 'b64'"),
    (tf.float32, [None], "(null) is not of expected type float32"),
    (tf.float32, [[1.0, 2.0], [3.0]], "is ragged"),
    (tf.float32, [[1.0], 2.0], "is ragged"),
    (tf.float32, [1.0, [2.0]], "is ragged"),
])
def test_request_from_json_value_errors_name_the_input(dtype, value, message):
  with pytest.raises(RequestError) as raised:
    rest_json.request_from_json(MODEL, None, {"inputs": value}, _spec(dtype))
  assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
  assert "Input 'v'" in raised.value.message
  assert message in raised.value.message


def test_request_from_json_unsupported_dtype_is_unimplemented():
  with pytest.raises(RequestError) as raised:
    rest_json.request_from_json(MODEL, None, {"inputs": [1.0]},
                           _spec(tf.complex64))
  assert raised.value.code == grpc.StatusCode.UNIMPLEMENTED
  assert "Input 'v' has dtype complex64" in raised.value.message


@pytest.mark.parametrize("dtype, value, expected", [
    (tf.int64, [[1, 2], [3, 4]], np.array([[1, 2], [3, 4]], np.int64)),
    (tf.uint64, [2**64 - 1], np.array([2**64 - 1], np.uint64)),
    (tf.float64, [1, 0.1, float("nan")], np.array([1, 0.1, np.nan])),
    (tf.float32, 7, np.float32(7)),
    (tf.bool, [[True], [False]], np.array([[True], [False]])),
    (tf.string, [["é", {"b64": "/w"}]], np.array([["é".encode(), b"\xff"]],
                                                 object)),
    (tf.float32, [], np.zeros([0], np.float32)),
])
def test_request_from_json_converts_to_declared_dtype(dtype, value, expected):
  request, row_format = rest_json.request_from_json(
      MODEL, 3, {"signature_name": "sig", "inputs": {"v": value}},
      _spec(dtype))
  assert not row_format
  assert request.model_spec.name == MODEL
  assert request.model_spec.version.value == 3
  assert request.model_spec.signature_name == "sig"
  proto = request.inputs["v"]
  assert proto.dtype == dtype.as_datatype_enum
  np.testing.assert_array_equal(tf.make_ndarray(proto), expected)


def test_request_from_json_row_format_batches_instances():
  specs = {"ids": tf.TensorSpec([None, 2], tf.int64),
           "w": tf.TensorSpec([None], tf.float32)}
  request, row_format = rest_json.request_from_json(
      MODEL, None, {"instances": [{"ids": [1, 2], "w": 0.5},
                                  {"ids": [3, 4], "w": 1.5}]}, specs)
  assert row_format
  np.testing.assert_array_equal(tf.make_ndarray(request.inputs["ids"]),
                                [[1, 2], [3, 4]])
  np.testing.assert_array_equal(tf.make_ndarray(request.inputs["w"]),
                                np.array([0.5, 1.5], np.float32))


def test_request_from_json_calls_a_specs_callable_with_the_model_spec():
  seen = []

  def specs(model_spec):
    seen.append(model_spec)
    return _spec(tf.int32)

  rest_json.request_from_json(MODEL, 4, {"signature_name": "s", "inputs": [1]},
                         specs)
  assert [(s.name, s.version.value, s.signature_name) for s in seen] == [
      (MODEL, 4, "s")]


def _response(**outputs):
  response = predict_pb2.PredictResponse()
  for name, array in outputs.items():
    response.outputs[name].CopyFrom(tf.make_tensor_proto(array))
  return response


def test_response_to_json_row_format_needs_one_batch_size():
  response = _response(a=np.zeros([2], np.float32), b=np.zeros([3], np.int64))
  with pytest.raises(RequestError) as raised:
    rest_json.response_to_json(response, row_format=True)
  assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
  assert "differing 0-th dimensions {'a': 2, 'b': 3}" in raised.value.message
  assert rest_json.response_to_json(response, row_format=False) == {
      "outputs": {"a": [0.0, 0.0], "b": [0, 0, 0]}}


def test_response_to_json_row_format_rejects_scalar_outputs():
  with pytest.raises(RequestError, match=r"Outputs \['s'\] are scalars"):
    rest_json.response_to_json(_response(s=np.float32(1)), row_format=True)


def test_response_to_json_values():
  response = _response(
      f=np.array([[0.1, 1.0]], np.float32), d=np.array([0.1]),
      i=np.array([[7]], np.int32), b=np.array([True]),
      t=np.array([b"ok", b"\xc3"], object), raw_bytes=np.array([b"ok"], object))
  assert rest_json.response_to_json(response, row_format=False) == {"outputs": {
      "b": [True], "d": [0.1], "f": [[0.1, 1.0]], "i": [[7]],
      "raw_bytes": [b64(b"ok")], "t": ["ok", b64(b"\xc3")]}}
