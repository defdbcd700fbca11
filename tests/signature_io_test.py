"""Tests for duia.serving.signature_io's two ways of running a request.

`run_protos` hands the serialized TensorProtos to the signature's in-graph
decoder (`model_loader`'s `from_protos`); `run(convert_inputs(...))` decodes
them in Python. Both must give the same outputs and the same errors.
"""

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from duia.models import features
from duia.serving import errors
from duia.serving import model_loader
from duia.serving import signature_io
from tests import serving_fixtures as fx


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  root = tmp_path_factory.mktemp("models") / "duia"
  fx.save(1.0, root / "1")
  return model_loader.load_version(str(root), 1, "duia")


def _array_path(signature, request, output_filter=()):
  arrays = signature_io.convert_inputs(signature, request.inputs)
  return signature_io.run(signature, arrays, signature_io.output_aliases(signature, output_filter))


def _examples_request():
  request = predict_pb2.PredictRequest()
  request.inputs[features.SERVING_EXAMPLES_INPUT].CopyFrom(
      tf.make_tensor_proto(fx.examples()))
  return request


def test_every_signature_has_an_in_graph_decoder(model):
  assert {name: s.from_protos is not None for name, s in model.signatures.items()} == {
      features.SERVING_EXAMPLES_SIGNATURE: True, features.SERVING_RAW_SIGNATURE: True}


@pytest.mark.parametrize("signature_name", [features.SERVING_RAW_SIGNATURE,
                                            features.SERVING_EXAMPLES_SIGNATURE])
def test_in_graph_decoding_gives_the_array_paths_outputs(model, signature_name):
  signature = model.signatures[signature_name]
  request = (fx.good_request() if signature_name == features.SERVING_RAW_SIGNATURE
             else _examples_request())
  fast = signature_io.run_protos(signature, request.inputs, [])
  slow = _array_path(signature, request)
  assert list(fast) == list(signature.outputs)
  for alias in slow:
    np.testing.assert_array_equal(fast[alias], slow[alias])


def test_output_filter_keeps_its_order(model):
  signature = model.signatures[features.SERVING_RAW_SIGNATURE]
  wanted = [features.FUSED_SCORE, features.TASK_LIKE]
  assert list(signature_io.run_protos(signature, fx.good_request().inputs, wanted)) == wanted


def _error(function):
  with pytest.raises(errors.RequestError) as info:
    function()
  return info.value


def test_a_payload_that_disagrees_with_its_header_gets_the_array_paths_error(model):
  signature = model.signatures[features.SERVING_RAW_SIGNATURE]
  request = fx.good_request()
  proto = request.inputs[features.DURATION_S]
  proto.ClearField("float_val")
  proto.tensor_content = np.zeros(2, np.float32).tobytes()  # the header says 5
  fast = _error(lambda: signature_io.run_protos(signature, request.inputs, []))
  slow = _error(lambda: _array_path(signature, request))
  assert (fast.code, fast.message) == (slow.code, slow.message)
  assert fast.code == grpc.StatusCode.INVALID_ARGUMENT
  assert features.DURATION_S in fast.message


def test_a_header_parse_tensor_rejects_is_answered_by_the_array_path(model):
  # ParseTensor rejects a -1 dimension; the Python decoder reshapes by it, as
  # it always has, so the request is answered the same as without the graph path.
  signature = model.signatures[features.SERVING_RAW_SIGNATURE]
  request = fx.good_request()
  request.inputs[features.DURATION_S].tensor_shape.dim[0].size = -1
  fast = signature_io.run_protos(signature, request.inputs, [])
  slow = _array_path(signature, request)
  for alias in slow:
    np.testing.assert_array_equal(fast[alias], slow[alias])


def test_a_models_own_failure_is_its_message_on_both_paths(model):
  signature = model.signatures[features.SERVING_RAW_SIGNATURE]
  request = fx.good_request()
  request.inputs[features.DURATION_S].CopyFrom(tf.make_tensor_proto([1.0, 2.0], tf.float32))
  fast = _error(lambda: signature_io.run_protos(signature, request.inputs, []))
  slow = _error(lambda: _array_path(signature, request))
  assert (fast.code, fast.message) == (slow.code, slow.message)
  assert "ncompatible shapes" in fast.message
