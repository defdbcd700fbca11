"""The protocol-neutral core of the server: TF Serving's API calls on protos.

Both front ends call it: the gRPC servicers (`server.py`) and the REST gateway
(`rest.py`). Every method takes and returns TF Serving's own request and
response protos and raises `errors.RequestError` with the status code the
request is answered with.

- Predict: any signature; batched (`batching.py`) when a batcher is given and
  the request's inputs share their 0-th dimension, and `rank` requests of a
  model that has `rank_users` merged into it across users.
- Classify / Regress: only on signatures whose method name says so
  (`tensorflow/serving/classify` / `regress`) and which take serialized
  tf.Examples, as TF Serving requires; other signatures are INVALID_ARGUMENT
  with the method name found. Keras/TF2 exports (ours) only have predict
  signatures.
- GetModelMetadata: the "signature_def" field, a SignatureDefMap.
- GetModelStatus: every version seen, with its state and load error.
"""

from typing import Dict, Mapping, Optional, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import regression_pb2

from duia.serving import batching
from duia.serving import merged_users
from duia.serving import errors
from duia.serving import model_loader
from duia.serving import model_store
from duia.serving import signature_io
from duia.serving import tensor_codec

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
_METADATA_FIELD = "signature_def"
_STATE_ENUM = get_model_status_pb2.ModelVersionStatus.State


class ServingBackend:
  """Answers TF Serving API calls from the models in `stores`.

  Args:
    stores: Model name -> its store (already refreshed at least once).
    batcher: Merges concurrent batchable Predict calls; None runs each alone.
  """

  def __init__(self, stores: Mapping[str, model_store.ModelStore],
               batcher: Optional[batching.Batcher] = None):
    self._stores = dict(stores)
    self._batcher = batcher

  def _store(self, name: str) -> model_store.ModelStore:
    if name not in self._stores:
      raise errors.RequestError(
          grpc.StatusCode.NOT_FOUND,
          f"Servable not found for request: model {name!r} is not served here "
          f"(serving {sorted(self._stores)}).")
    return self._stores[name]

  def model(self, spec: model_pb2.ModelSpec) -> model_loader.LoadedModel:
    """The loaded version a ModelSpec names (version number; labels unsupported)."""
    if spec.version_label:
      raise errors.RequestError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"Version labels are not supported; request by version number. "
          f"Received: version_label={spec.version_label!r}")
    version = spec.version.value if spec.HasField("version") else None
    return self._store(spec.name).get(version)

  def input_specs(self, spec: model_pb2.ModelSpec) -> Mapping[str, tf.TensorSpec]:
    """Input name -> TensorSpec of the signature `spec` resolves to."""
    return signature_io.resolve_signature(self.model(spec), spec).inputs

  # --- PredictionService ---------------------------------------------------

  def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    """TF Serving's Predict: checked inputs in, the selected outputs out."""
    return predict_on(self.model(request.model_spec), request, self._batcher)

  def _examples_signature(self, spec, method: str):
    model = self.model(spec)
    signature = signature_io.resolve_signature(model, spec)
    found = model.signature_defs.get(signature.name)
    found_method = found.method_name if found is not None else "(unknown)"
    if found_method != method:
      raise errors.RequestError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"Expected signature {signature.name!r} to have method_name {method}; it is "
          f"{found_method}. Use Predict for this signature.")
    string_inputs = [n for n, s in signature.inputs.items() if s.dtype == tf.string]
    if len(signature.inputs) != 1 or not string_inputs:
      raise errors.RequestError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"Signature {signature.name!r} must take one string input of serialized "
          f"tf.Examples. Received inputs: {sorted(signature.inputs)}")
    return model, signature, string_inputs[0]

  def _run_examples(self, signature, input_name, request_input
                   ) -> Tuple[Dict[str, np.ndarray], int]:
    """Runs the signature on the request's tf.Examples; returns outputs and row count."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
      examples = list(request_input.example_list.examples)
    elif kind == "example_list_with_context":
      context = request_input.example_list_with_context.context
      examples = []
      for example in request_input.example_list_with_context.examples:
        merged = tf.train.Example()
        merged.CopyFrom(context)
        merged.MergeFrom(example)
        examples.append(merged)
    else:
      raise errors.RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                "Input is empty: set example_list or example_list_with_context.")
    if not examples:
      raise errors.RequestError(grpc.StatusCode.INVALID_ARGUMENT, "Input has no examples.")
    serialized = np.array([e.SerializeToString() for e in examples], dtype=object)
    return signature_io.run(signature, {input_name: serialized}), len(examples)

  def classify(self, request: classification_pb2.ClassificationRequest
              ) -> classification_pb2.ClassificationResponse:
    """TF Serving's Classify, on classify signatures ("classes" and/or "scores")."""
    model, signature, input_name = self._examples_signature(request.model_spec, CLASSIFY_METHOD)
    outputs, n = self._run_examples(signature, input_name, request.input)
    classes, scores = outputs.get("classes"), outputs.get("scores")
    if classes is None and scores is None:
      raise errors.RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                f"Signature {signature.name!r} has neither 'classes' nor 'scores'.")
    # One row of K classes per example; either tensor may be absent.
    classes = None if classes is None else classes.reshape(n, -1)
    scores = None if scores is None else scores.reshape(n, -1)
    response = classification_pb2.ClassificationResponse()
    _set_spec(response.model_spec, model, signature.name)
    for i in range(n):
      row = response.result.classifications.add()
      for k in range((classes if classes is not None else scores).shape[1]):
        klass = row.classes.add()
        if classes is not None:
          klass.label = _text(classes[i, k])
        if scores is not None:
          klass.score = float(scores[i, k])
    return response

  def regress(self, request: regression_pb2.RegressionRequest
             ) -> regression_pb2.RegressionResponse:
    """TF Serving's Regress, on regress signatures (one "outputs" value per example)."""
    model, signature, input_name = self._examples_signature(request.model_spec, REGRESS_METHOD)
    outputs, n = self._run_examples(signature, input_name, request.input)
    if "outputs" not in outputs or outputs["outputs"].size != n:
      raise errors.RequestError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"Signature {signature.name!r} must have an 'outputs' tensor with one value per "
          f"example. Outputs: {sorted(outputs)}")
    response = regression_pb2.RegressionResponse()
    _set_spec(response.model_spec, model, signature.name)
    for value in outputs["outputs"].reshape(-1):
      response.result.regressions.add().value = float(value)
    return response

  def get_model_metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest
                        ) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """The SignatureDefMap of the requested (or highest) version."""
    unknown = sorted(set(request.metadata_field) - {_METADATA_FIELD})
    if unknown or not request.metadata_field:
      raise errors.RequestError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"Metadata field(s) {unknown or '(none)'} not supported; only "
          f"{_METADATA_FIELD!r} is. Received: metadata_field={list(request.metadata_field)}")
    model = self.model(request.model_spec)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in model.signature_defs.items():
      signature_map.signature_def[name].CopyFrom(signature_def)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    _set_spec(response.model_spec, model, "")
    response.metadata[_METADATA_FIELD].Pack(signature_map)
    return response

  # --- ModelService ----------------------------------------------------------

  def get_model_status(self, request: get_model_status_pb2.GetModelStatusRequest
                      ) -> get_model_status_pb2.GetModelStatusResponse:
    """Every version's state, or one version's if the request names it."""
    store = self._store(request.model_spec.name)
    status = store.status()
    if request.model_spec.HasField("version"):
      version = request.model_spec.version.value
      if version not in status:
        raise errors.RequestError(
            grpc.StatusCode.NOT_FOUND,
            f"Could not find version {version} of model {store.model_name!r}. "
            f"Known versions: {sorted(status)}")
      status = {version: status[version]}
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, entry in sorted(status.items(), reverse=True):
      out = response.model_version_status.add()
      out.version = version
      out.state = _STATE_ENUM.Value(entry.state.value)
      # tensorflow.error.Code shares gRPC's numbers: 0 OK, 2 UNKNOWN.
      out.status.error_code = grpc.StatusCode.UNKNOWN.value[0] if entry.error else 0
      out.status.error_message = entry.error
    return response


def predict_on(model: model_loader.LoadedModel, request: predict_pb2.PredictRequest,
               batcher: Optional[batching.Batcher] = None) -> predict_pb2.PredictResponse:
  """Predict on a given loaded version (the request's name/version are not looked up).

  Used for requests once their version is resolved, and for warmup, which
  runs a version before it is served.
  """
  signature = signature_io.resolve_signature(model, request.model_spec)
  key = (model.name, model.version, signature.name)
  if batcher is not None and merged_users.available(model, signature):
    outputs = _rank_merged(model, signature, request, batcher, key)
    aliases = list(outputs)
  elif batcher is None and signature.from_protos is not None:
    outputs = signature_io.run_protos(signature, request.inputs, request.output_filter)
    aliases = list(outputs)
  else:
    # The batcher merges requests as arrays, so they are decoded in Python.
    arrays = signature_io.convert_inputs(signature, request.inputs)
    aliases = signature_io.output_aliases(signature, request.output_filter)
    if batcher is not None and batching.batchable(arrays):
      outputs = batcher.submit(key, lambda merged: signature_io.run(signature, merged), arrays)
    else:
      outputs = signature_io.run(signature, arrays, aliases)
  response = predict_pb2.PredictResponse()
  _set_spec(response.model_spec, model, signature.name)
  for alias in aliases:
    response.outputs[alias].CopyFrom(tensor_codec.to_proto(outputs[alias]))
  return response


def _rank_merged(model: model_loader.LoadedModel, rank: model_loader.Signature,
                 request: predict_pb2.PredictRequest, batcher: batching.Batcher,
                 key) -> Dict[str, np.ndarray]:
  """A `rank` request through the batcher, merged with other users' into
  `rank_users` (`merged_users.py`); alone, or with a header the merge cannot
  read, it runs as without batching (`signature_io.run_serialized`)."""
  aliases = signature_io.output_aliases(rank, request.output_filter)
  merger = merged_users.for_model(model)
  serialized, candidates = merger.checked(request.inputs)
  if candidates is None:
    return signature_io.run_serialized(rank, serialized, request.inputs, aliases)
  merge = batching.SeveralUsers(
      run_alone=lambda r: signature_io.run_serialized(rank, r[1], r[0].inputs, aliases),
      candidates=lambda r: r[2], users_per_call=merger.users_per_call)
  outputs = batcher.submit(
      key, lambda requests: merger.run([r[1] for r in requests], [r[2] for r in requests],
                                       rank.outputs),
      (request, serialized, candidates), merge)
  return {alias: outputs[alias] for alias in aliases}


def _set_spec(spec: model_pb2.ModelSpec, model: model_loader.LoadedModel,
              signature_name: str) -> None:
  spec.name = model.name
  spec.version.value = model.version
  if signature_name:
    spec.signature_name = signature_name


def _text(value) -> str:
  return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

