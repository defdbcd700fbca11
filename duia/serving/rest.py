"""TF Serving's REST API (`/v1/models/...`), as a gateway over a `Backend`.

TF Serving answers REST on a second port (8501) beside gRPC (8500), with the
JSON formats of https://www.tensorflow.org/tfx/serving/api_rest. This module
speaks those formats on Python's `http.server` and translates each request to
the same protos the gRPC servicers take, so the models run in one place (the
`Backend`) and the two protocols cannot drift apart.

Routes (matched case-insensitively, as TF Serving's RE2 patterns are):
  GET  /v1/models/<name>[/versions/<v>]            model status
  GET  /v1/models/<name>[/versions/<v>]/metadata   signature defs
  POST /v1/models/<name>[/versions/<v>]:predict    row or columnar predict

The JSON <-> tensor rules follow TF Serving's `util/json_tensor.cc`: each input
takes the dtype the signature declares; strings are UTF-8 text or
`{"b64": "..."}`; row format (`instances`) batches one value per instance for
every input, so all inputs share the 0-th dimension; columnar format (`inputs`)
sends each input whole, so 0-th dimensions may differ; a single-input signature
takes bare values. Float outputs are written with the shortest digits that
round-trip in their own precision (a float32 0.2 prints as 0.2), as TF Serving
does.

Errors are `{"error": "<message>"}` with the HTTP status TF Serving's
`model_servers/http_server.cc` (`ToHTTPStatusCode`) gives the gRPC code; see
`HTTP_STATUS_BY_CODE`. Deliberate differences from TF Serving, each so that a
mistake gets a clear answer instead of a misleading one:
  - A path matching no route is 404 and a route asked with the wrong method is
    405 (TF Serving says 400 "Malformed request" for anything under /v1/).
  - Version labels (`/labels/<label>`) are rejected with 400: this server has
    none. `:classify` and `:regress` answer 501: only Predict is served.
  - A body over `max_body_bytes` is 413 Payload Too Large (HTTP's status for
    it; RESOURCE_EXHAUSTED's 429 would tell the client to retry later),
    answered from the Content-Length header before the body is read, also
    when the client waits on `Expect: 100-continue`. POST needs a
    Content-Length (411 otherwise); chunked bodies are not accepted.
  - Integer inputs are range-checked against their exact dtype (TF Serving only
    checks int32 range for int8/int16/uint8), and string outputs that are not
    valid UTF-8 are sent as `{"b64": ...}` (TF Serving would write invalid
    JSON).
Like TF Serving, keys of a columnar `inputs` object that the signature does not
have are ignored.

Usage:
  gateway = RestGateway(backend, port=DEFAULT_REST_PORT)
  gateway.start()
  ...
  gateway.stop()
"""

import base64
import binascii
import dataclasses
import http.server
import inspect
import json
import logging
import math
import re
import socket
import socketserver
import threading
import urllib.parse
from typing import (Any, Callable, Dict, List, Mapping, Optional, Protocol,
                    Tuple, Union)

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import predict_pb2

from duia.serving.errors import RequestError

DEFAULT_REST_PORT = 8501  # TF Serving's REST port.
DEFAULT_MAX_BODY_BYTES = 256 * 1024 * 1024  # Matches the gRPC message cap.

# TF Serving's `ToHTTPStatusCode` (model_servers/http_server.cc), with the
# numbers from util/net_http/server/public/response_code_enum.h.
HTTP_STATUS_BY_CODE: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,  # nginx's "Client Closed Request".
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

_SIGNATURE_DEF_FIELD = "signature_def"  # GetModelMetadataImpl::kSignatureDef
_BYTES_SUFFIX = "_bytes"  # TF Serving's marker for binary string outputs.
# A client that stops sending mid-request, or an idle keep-alive connection,
# frees its thread after this long.
_SOCKET_TIMEOUT_S = 60.0
_SNIPPET_CHARS = 80

InputSpecs = Mapping[str, tf.TensorSpec]


class Backend(Protocol):
  """What the gateway calls; every failure is raised as `RequestError`."""

  def predict(self, request: predict_pb2.PredictRequest
             ) -> predict_pb2.PredictResponse:
    ...

  def get_model_metadata(
      self, request: get_model_metadata_pb2.GetModelMetadataRequest
  ) -> get_model_metadata_pb2.GetModelMetadataResponse:
    ...

  def get_model_status(
      self, request: get_model_status_pb2.GetModelStatusRequest
  ) -> get_model_status_pb2.GetModelStatusResponse:
    ...

  def input_specs(self, model_spec: model_pb2.ModelSpec) -> InputSpecs:
    """The inputs of the signature `model_spec` resolves to, by name."""
    ...


def http_status(code: grpc.StatusCode) -> int:
  """The HTTP status TF Serving answers a gRPC status code with."""
  return HTTP_STATUS_BY_CODE.get(code, 500)


def _bad(message: str) -> RequestError:
  return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _snippet(value: Any) -> str:
  """`value` as JSON, cut short: error messages must not echo whole tensors."""
  text = json.dumps(value)
  if len(text) > _SNIPPET_CHARS:
    text = text[:_SNIPPET_CHARS] + "..."
  return text


def _a_json_kind(value: Any) -> str:
  kind = _json_kind(value)
  return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _json_kind(value: Any) -> str:
  if value is None:
    return "null"
  if isinstance(value, bool):
    return "boolean"
  if isinstance(value, (int, float)):
    return "number"
  if isinstance(value, str):
    return "string"
  if isinstance(value, list):
    return "array"
  return "object"


# ---------------------------------------------------------------------------
# JSON values -> TensorProto


def _is_b64(value: Any) -> bool:
  # TF Serving's IsValBase64Object: exactly one key, "b64", holding a string.
  return (isinstance(value, dict) and len(value) == 1 and
          isinstance(value.get("b64"), str))


def _is_named_object(value: Any) -> bool:
  """An object keyed by input name, as opposed to a `{"b64": ...}` value."""
  return isinstance(value, dict) and not _is_b64(value)


def _type_error(name: str, value: Any, dtype: tf.DType) -> RequestError:
  return _bad(f"Input {name!r}: JSON value {_snippet(value)} "
              f"({_json_kind(value)}) is not of expected type {dtype.name}.")


def _decode_b64(name: str, value: Any) -> bytes:
  if not _is_b64(value):
    raise _bad(f"Input {name!r}: JSON value {_snippet(value)} must be a "
               f"string or an object with the single key 'b64' holding a "
               f"string.")
  text = value["b64"]
  try:
    # absl::Base64Unescape, which TF Serving uses, accepts missing padding.
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
  except (binascii.Error, ValueError) as e:
    raise _bad(f"Input {name!r}: JSON value {_snippet(value)} is not valid "
               f"base64 ({e}).") from e


# Each `_*_converter(name, dtype)` returns the function that checks and
# converts one JSON leaf value of input `name`; the bounds are looked up once,
# not per value (`tf.DType.max` is computed on every access).


def _string_converter(name: str, dtype: tf.DType) -> Callable[[Any], Any]:
  def convert(value):
    if isinstance(value, str):
      return value.encode("utf-8")
    if isinstance(value, dict):
      return _decode_b64(name, value)
    raise _type_error(name, value, dtype)
  return convert


def _bool_converter(name: str, dtype: tf.DType) -> Callable[[Any], Any]:
  def convert(value):
    if isinstance(value, bool):
      return value
    raise _type_error(name, value, dtype)
  return convert


# Largest integer each float type holds exactly: TF Serving's
# IsLosslessDecimal rejects larger ones rather than round them silently.
_FLOAT_EXACT_INT = {tf.float32: 2**24 - 1, tf.float64: 2**53 - 1}


def _float_converter(name: str, dtype: tf.DType) -> Callable[[Any], Any]:
  exact, largest = _FLOAT_EXACT_INT[dtype], dtype.max

  def convert(value):
    if isinstance(value, float):
      # NaN and +-Infinity are accepted, as TF Serving parses them.
      if abs(value) > largest and math.isfinite(value):
        raise _bad(f"Input {name!r}: JSON value {value!r} is out of range "
                   f"for {dtype.name} (largest magnitude {largest}).")
      return value
    if isinstance(value, bool) or not isinstance(value, int):
      raise _type_error(name, value, dtype)
    if abs(value) > exact:
      raise _bad(f"Input {name!r}: cannot convert JSON value {value} to "
                 f"{dtype.name} without loss of precision (integers up to "
                 f"{exact} in magnitude are exact).")
    return float(value)
  return convert


def _int_converter(name: str, dtype: tf.DType) -> Callable[[Any], Any]:
  low, high = dtype.min, dtype.max

  def convert(value):
    # A JSON number with a fraction or exponent (1.0, 1e3) is not an integer
    # here, as in TF Serving's rapidjson.
    if isinstance(value, bool) or not isinstance(value, int):
      raise _type_error(name, value, dtype)
    if not low <= value <= high:
      raise _bad(f"Input {name!r}: JSON value {value} is out of range for "
                 f"{dtype.name} [{low}, {high}].")
    return value
  return convert


# The input dtypes TF Serving's AddValueToTensor converts.
_CONVERTERS: Dict[tf.DType, Callable[[str, tf.DType], Callable[[Any], Any]]] = {
    tf.string: _string_converter,
    tf.bool: _bool_converter,
    tf.float32: _float_converter,
    tf.float64: _float_converter,
    tf.int8: _int_converter,
    tf.int16: _int_converter,
    tf.int32: _int_converter,
    tf.int64: _int_converter,
    tf.uint8: _int_converter,
    tf.uint32: _int_converter,
    tf.uint64: _int_converter,
}


def _dense_shape(value: Any) -> List[int]:
  """The shape `value` claims, read along its first elements (as TF Serving)."""
  shape = []
  while isinstance(value, list):
    shape.append(len(value))
    if not value:
      break
    value = value[0]
  return shape


def _ragged_error(name: str, shape: List[int], value: Any,
                  depth: int) -> RequestError:
  if isinstance(value, list):
    found = f"a list of {len(value)} elements at depth {depth}"
  else:
    found = f"the value {_snippet(value)} at depth {depth}"
  return _bad(f"Input {name!r} is ragged: its first elements give it shape "
              f"{shape}, but it has {found}. Every list at one depth must "
              f"have the same length.")


def _flatten(value: Any, shape: List[int], depth: int,
             convert: Callable[[Any], Any], name: str, out: List[Any]) -> None:
  """Appends the leaves of `value` to `out`; checks it has shape `shape`."""
  if not isinstance(value, list):
    if depth != len(shape):
      raise _ragged_error(name, shape, value, depth)
    out.append(convert(value))
    return
  if depth >= len(shape) or len(value) != shape[depth]:
    raise _ragged_error(name, shape, value, depth)
  if depth < len(shape) - 1:
    for item in value:
      _flatten(item, shape, depth + 1, convert, name, out)
    return
  # The innermost lists hold nearly all values: no recursion per value.
  for item in value:
    if isinstance(item, list):
      raise _ragged_error(name, shape, item, depth + 1)
    out.append(convert(item))


def _converter(name: str, dtype: tf.DType) -> Callable[[Any], Any]:
  make_converter = _CONVERTERS.get(dtype)
  if make_converter is None:
    raise RequestError(
        grpc.StatusCode.UNIMPLEMENTED,
        f"Input {name!r} has dtype {dtype.name}, which has no JSON form here; "
        f"supported: {sorted(d.name for d in _CONVERTERS)}.")
  return make_converter(name, dtype)


def _json_to_values(name: str, value: Any, convert: Callable[[Any], Any]
                   ) -> Tuple[List[int], List[Any]]:
  """Checks one input's JSON value; returns its shape and flat values."""
  shape = _dense_shape(value)
  flat: List[Any] = []
  try:
    _flatten(value, shape, 0, convert, name, flat)
  except RecursionError as e:
    raise _bad(f"Input {name!r} is nested too deeply.") from e
  return shape, flat


def _make_tensor_proto(shape: List[int], flat: List[Any],
                       dtype: tf.DType) -> tensor_pb2.TensorProto:
  numpy_dtype = object if dtype == tf.string else dtype.as_numpy_dtype
  array = np.array(flat, dtype=numpy_dtype).reshape(shape)
  return tf.make_tensor_proto(array, dtype=dtype)


def _dtype_of(specs: InputSpecs, name: str) -> tf.DType:
  return tf.dtypes.as_dtype(specs[name].dtype)


def _signature_label(model_spec: model_pb2.ModelSpec) -> str:
  return (model_spec.signature_name or
          tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY)


def _row_instance_items(index: int, instance: Any, named: bool,
                        specs: InputSpecs, signature: str
                       ) -> Dict[str, Any]:
  """The `{input name: value}` one element of `instances` gives."""
  if not named:
    if _is_named_object(instance):
      raise _bad(f"Element {index} of 'instances' is an object, but element 0 "
                 f"is a bare value; all elements must be one or the other.")
    return {next(iter(specs)): instance}
  if not _is_named_object(instance):
    raise _bad(f"Element {index} of 'instances' is {_a_json_kind(instance)}, "
               f"but element 0 is an object keyed by input name; all "
               f"elements must be objects.")
  unknown = sorted(set(instance) - set(specs))
  if unknown:
    raise _bad(f"Element {index} of 'instances' has keys {unknown} that are "
               f"not inputs of signature {signature!r} (inputs: "
               f"{sorted(specs)}).")
  missing = sorted(set(specs) - set(instance))
  if missing:
    raise _bad(
        f"Element {index} of 'instances' lacks inputs {missing} (signature "
        f"{signature!r} has {sorted(specs)}). In row format every instance "
        f"carries one value of every input, so all inputs share the 0-th "
        f"(batch) dimension; send inputs with differing 0-th dimensions in "
        f"columnar format ('inputs').")
  return instance


def _tensors_from_instances(instances: Any, specs: InputSpecs, signature: str
                           ) -> Dict[str, tensor_pb2.TensorProto]:
  if not isinstance(instances, list):
    raise _bad(f"'instances' must be a list; got {_a_json_kind(instances)}.")
  if not instances:
    raise _bad("'instances' is empty; send at least one instance.")
  named = _is_named_object(instances[0])
  if not named and len(specs) > 1:
    raise _bad(f"'instances' holds bare values, but signature {signature!r} "
               f"has {len(specs)} inputs {sorted(specs)}: each instance must "
               f"be an object keyed by input name.")
  converters = {name: _converter(name, _dtype_of(specs, name))
                for name in specs}
  shapes: Dict[str, List[int]] = {}
  values: Dict[str, List[Any]] = {name: [] for name in specs}
  for index, instance in enumerate(instances):
    items = _row_instance_items(index, instance, named, specs, signature)
    for name, value in items.items():
      shape, flat = _json_to_values(name, value, converters[name])
      first = shapes.setdefault(name, shape)
      if shape != first:
        raise _bad(f"Input {name!r} has shape {shape} in element {index} of "
                   f"'instances' but {first} in element 0; every instance "
                   f"must give an input the same shape.")
      values[name].extend(flat)
  return {name: _make_tensor_proto([len(instances)] + shapes[name],
                                   values[name], _dtype_of(specs, name))
          for name in specs}


def _tensors_from_inputs(inputs: Any, specs: InputSpecs, signature: str
                        ) -> Dict[str, tensor_pb2.TensorProto]:
  if not _is_named_object(inputs):
    if len(specs) > 1:
      raise _bad(f"'inputs' is a bare value, but signature {signature!r} has "
                 f"{len(specs)} inputs {sorted(specs)}: 'inputs' must be an "
                 f"object keyed by input name.")
    inputs = {next(iter(specs)): inputs}
  missing = sorted(set(specs) - set(inputs))
  if missing:
    raise _bad(f"'inputs' lacks inputs {missing} of signature {signature!r} "
               f"(inputs: {sorted(specs)}).")
  tensors = {}
  for name in specs:
    dtype = _dtype_of(specs, name)
    shape, flat = _json_to_values(name, inputs[name], _converter(name, dtype))
    tensors[name] = _make_tensor_proto(shape, flat, dtype)
  return tensors


def _resolve_specs(specs: Union[InputSpecs, Callable[[model_pb2.ModelSpec],
                                                    InputSpecs]],
                   model_spec: model_pb2.ModelSpec) -> InputSpecs:
  resolved = specs(model_spec) if callable(specs) else specs
  if not resolved:
    raise _bad(f"Signature {_signature_label(model_spec)!r} of model "
               f"{model_spec.name!r} has no inputs to fill from JSON.")
  return resolved


def request_from_json(
    model_name: str,
    version: Optional[int],
    body: Mapping[str, Any],
    input_specs: Union[InputSpecs, Callable[[model_pb2.ModelSpec],
                                            InputSpecs]],
) -> Tuple[predict_pb2.PredictRequest, bool]:
  """Builds the PredictRequest a REST predict body asks for.

  Args:
    model_name: The model, from the URL.
    version: The version from the URL, or None for the server's choice.
    body: The decoded JSON body: `{"signature_name": ..., "instances": [...]}`
      (row format) or `{"signature_name": ..., "inputs": ...}` (columnar).
    input_specs: The signature's inputs (name -> spec with `dtype`), or a
      callable returning them for a `ModelSpec` (such as
      `Backend.input_specs`), called once `signature_name` is known.

  Returns:
    `(request, row_format)`: the request, and whether the body was in row
    format (the response must then be too).

  Raises:
    RequestError: INVALID_ARGUMENT naming what is wrong with the body or which
      input a value does not fit; UNIMPLEMENTED for an input dtype with no
      JSON form; whatever a callable `input_specs` raises.
  """
  if not isinstance(body, Mapping):
    raise _bad(f"The request body must be a JSON object; got "
               f"{_a_json_kind(body)}.")
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  if version is not None:
    request.model_spec.version.value = version
  if "signature_name" in body:
    if not isinstance(body["signature_name"], str):
      raise _bad(f"'signature_name' must be a string; got "
                 f"{_snippet(body['signature_name'])}.")
    request.model_spec.signature_name = body["signature_name"]
  has_rows, has_columns = "instances" in body, "inputs" in body
  if has_rows == has_columns:
    raise _bad("The body must have exactly one of 'instances' (row format) "
               "and 'inputs' (columnar format)"
               + ("; it has both." if has_rows else "; it has neither."))
  specs = _resolve_specs(input_specs, request.model_spec)
  signature = _signature_label(request.model_spec)
  if has_rows:
    tensors = _tensors_from_instances(body["instances"], specs, signature)
  else:
    tensors = _tensors_from_inputs(body["inputs"], specs, signature)
  for name, tensor in tensors.items():
    request.inputs[name].CopyFrom(tensor)
  return request, has_rows


# ---------------------------------------------------------------------------
# TensorProto -> JSON values


def _map_nested(function: Callable[[Any], Any], value: Any) -> Any:
  if isinstance(value, list):
    return [_map_nested(function, item) for item in value]
  return function(value)


def _b64(data: bytes) -> Dict[str, str]:
  return {"b64": base64.b64encode(data).decode("ascii")}


def _text_or_b64(data: bytes) -> Any:
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError:
    # Raw bytes in a JSON string would make the whole response invalid JSON.
    return _b64(data)


def _output_to_json(name: str, proto: tensor_pb2.TensorProto) -> Any:
  """One output tensor as nested JSON lists (a bare value for a scalar)."""
  try:
    array = tf.make_ndarray(proto)
  except Exception as e:  # pylint: disable=broad-except
    # TF Serving answers outputs it cannot write with INVALID_ARGUMENT.
    raise _bad(f"Output {name!r} could not be read as a tensor: {e}") from e
  kind = array.dtype.kind
  if kind == "O":  # DT_STRING.
    encode = _b64 if name.endswith(_BYTES_SUFFIX) else _text_or_b64
    return _map_nested(encode, array.tolist())
  if kind == "f" and array.dtype.itemsize < 8:
    # str() of a float32 is its shortest round-tripping form (0.2, not
    # 0.20000000298023224); TF Serving writes floats the same way.
    return array.astype(str).astype(np.float64).tolist()
  if kind in "fiub":
    return array.tolist()
  raise _bad(f"Output {name!r} has dtype {array.dtype}, which has no JSON "
             f"form.")


def _rows(values: Dict[str, Any], shapes: Dict[str, Tuple[int, ...]]
         ) -> List[Any]:
  scalars = sorted(name for name, shape in shapes.items() if not shape)
  if scalars:
    raise _bad(f"Outputs {scalars} are scalars, but row format needs a 0-th "
               f"(batch) dimension on every output; use columnar format "
               f"('inputs').")
  batch = {name: shape[0] for name, shape in shapes.items()}
  if len(set(batch.values())) > 1:
    raise _bad(f"Outputs have differing 0-th dimensions {batch}, so they "
               f"cannot be split into rows; use columnar format ('inputs').")
  count = next(iter(batch.values()))
  if len(values) == 1:
    return list(next(iter(values.values())))
  return [{name: value[i] for name, value in values.items()}
          for i in range(count)]


def response_to_json(response: predict_pb2.PredictResponse,
                     row_format: bool) -> Dict[str, Any]:
  """The REST body for a PredictResponse, as TF Serving writes it.

  Args:
    response: The backend's response.
    row_format: Whether the request was in row format.

  Returns:
    `{"predictions": [...]}` (one entry per row: the value of a single output,
    or an object of all outputs) in row format; `{"outputs": ...}` (the single
    output's value, or an object of all outputs) in columnar format. DT_STRING
    values are text, or `{"b64": ...}` for outputs named `*_bytes` and bytes
    that are not UTF-8.

  Raises:
    RequestError: INVALID_ARGUMENT if there are no outputs, an output has no
      JSON form, or (row format) outputs are scalars or differ in 0-th
      dimension.
  """
  names = sorted(response.outputs)
  if not names:
    raise _bad("The model returned no outputs; there is nothing to answer "
               "with.")
  values = {name: _output_to_json(name, response.outputs[name])
            for name in names}
  if row_format:
    shapes = {name: tuple(d.size for d in response.outputs[name]
                          .tensor_shape.dim) for name in names}
    return {"predictions": _rows(values, shapes)}
  if len(values) == 1:
    return {"outputs": values[names[0]]}
  return {"outputs": values}


# ---------------------------------------------------------------------------
# Status and metadata JSON


# protobuf 3.x calls the option including_default_value_fields; 5.26+
# renamed it.
_PRINT_DEFAULTS = (
    {"always_print_fields_with_no_presence": True}
    if "always_print_fields_with_no_presence"
    in inspect.signature(json_format.MessageToDict).parameters else
    {"including_default_value_fields": True})


def _message_to_dict(message, preserve_names: bool) -> Dict[str, Any]:
  # TF Serving prints with always_print_primitive_fields, so an OK status
  # still shows error_code and an empty error_message.
  return json_format.MessageToDict(
      message, preserving_proto_field_name=preserve_names, **_PRINT_DEFAULTS)


def status_to_json(
    response: get_model_status_pb2.GetModelStatusResponse) -> Dict[str, Any]:
  """The REST body for a GetModelStatusResponse, as TF Serving prints it.

  The protos' json_name options make the keys snake_case, e.g.
  `{"model_version_status": [{"version": "2", "state": "AVAILABLE",
  "status": {"error_code": "OK", "error_message": ""}}]}`. An unset `status`
  is printed as that OK, which is what it means: TF Serving always sets it,
  and clients read `status.error_code` without checking it is there.
  """
  response = get_model_status_pb2.GetModelStatusResponse.FromString(
      response.SerializeToString())
  for version_status in response.model_version_status:
    version_status.status.SetInParent()
  return _message_to_dict(response, preserve_names=False)


def metadata_to_json(response: get_model_metadata_pb2.GetModelMetadataResponse
                    ) -> Dict[str, Any]:
  """The REST body for a GetModelMetadataResponse, as TF Serving prints it.

  Returns:
    `{"model_spec": {...}, "metadata": {"signature_def": <SignatureDefMap>}}`,
    proto field names kept, so the signatures are under
    `["metadata"]["signature_def"]["signature_def"]`.

  Raises:
    RequestError: INTERNAL if the response holds no SignatureDefMap.
  """
  if _SIGNATURE_DEF_FIELD not in response.metadata:
    raise RequestError(
        grpc.StatusCode.INTERNAL,
        f"The GetModelMetadataResponse has no {_SIGNATURE_DEF_FIELD!r} entry "
        f"in its metadata map (entries: {sorted(response.metadata)}).")
  signature_defs = get_model_metadata_pb2.SignatureDefMap()
  if not response.metadata[_SIGNATURE_DEF_FIELD].Unpack(signature_defs):
    raise RequestError(
        grpc.StatusCode.INTERNAL,
        f"The {_SIGNATURE_DEF_FIELD!r} metadata entry is a "
        f"{response.metadata[_SIGNATURE_DEF_FIELD].type_url!r}, not a "
        f"SignatureDefMap.")
  return {
      "model_spec": _message_to_dict(response.model_spec, preserve_names=True),
      "metadata": {
          _SIGNATURE_DEF_FIELD: _message_to_dict(signature_defs,
                                                 preserve_names=True)
      },
  }


# ---------------------------------------------------------------------------
# Routing


# TF Serving's kPredictionApiGegex and kModelStatusApiRegex, case-insensitive.
_POST_ROUTE = re.compile(
    r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?"
    r":(classify|regress|predict)", re.IGNORECASE)
_GET_ROUTE = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?"
    r"(?:/(metadata))?", re.IGNORECASE)
_INT64_MAX = 2**63 - 1
_ROUTES_HELP = ("GET /v1/models/<name>[/versions/<v>][/metadata], "
                "POST /v1/models/<name>[/versions/<v>]:predict")


class _HttpError(Exception):
  """A failure with an HTTP status of its own (no gRPC code maps to it)."""

  def __init__(self, status: int, message: str,
               headers: Optional[Dict[str, str]] = None):
    super().__init__(message)
    self.status = status
    self.message = message
    self.headers = headers or {}


@dataclasses.dataclass(frozen=True)
class _Route:
  action: str  # "predict", "classify", "regress", "status" or "metadata".
  model_name: str
  version: Optional[int]


def _parse_version(text: Optional[str]) -> Optional[int]:
  if text is None:
    return None
  # The length check first: int() refuses strings over 4300 digits.
  if len(text) > 19 or int(text) > _INT64_MAX:
    raise _bad(f"Failed to convert version: {text} to numeric (it exceeds "
               f"int64).")
  return int(text)


def _route(method: str, path: str) -> _Route:
  """The route `method path` asks for.

  Raises:
    _HttpError: 404 for a path no route has, 405 for the wrong method.
    RequestError: INVALID_ARGUMENT for a version label, a version beyond
      int64 or a status request without a model name.
  """
  post = _POST_ROUTE.fullmatch(path)
  get = None if post else _GET_ROUTE.fullmatch(path)
  if not (post or get):
    raise _HttpError(404, f"No route for {method} {path}. Routes: "
                          f"{_ROUTES_HELP}.")
  allowed = "POST" if post else "GET"
  if method != allowed:
    raise _HttpError(405, f"{path} takes {allowed}, not {method}.",
                     {"Allow": allowed})
  name, version_text, label, action = (post or get).groups()
  if label is not None:
    raise _bad(f"Version labels are not supported; request by version number "
               f"(/versions/<n>) or none for the latest. Received: label "
               f"{urllib.parse.unquote(label)!r}")
  if get:
    action = "metadata" if action else "status"
    if name is None:
      raise _bad("Missing model name in request: use /v1/models/<name>.")
  return _Route(action.lower(), urllib.parse.unquote(name),
                _parse_version(version_text))


# ---------------------------------------------------------------------------
# HTTP server


class _Handler(http.server.BaseHTTPRequestHandler):
  """One connection; `self.server` is the `_Server` holding the backend."""

  protocol_version = "HTTP/1.1"  # Keep-alive, as TF Serving's server.
  timeout = _SOCKET_TIMEOUT_S
  server: "_Server"

  def do_GET(self):  # pylint: disable=invalid-name
    self._handle()

  do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    # The default writes every request to stderr.
    logging.debug("REST %s: %s", self.address_string(), format % args)

  def handle_expect_100(self):
    # Refuse an oversized body before the client sends it.
    try:
      self._content_length()
    except _HttpError as e:
      self._body_consumed = False
      self._send_json(e.status, {"error": e.message}, e.headers)
      return False
    return super().handle_expect_100()

  def _handle(self) -> None:
    self._body_consumed = False
    path = urllib.parse.urlsplit(self.path).path
    headers: Dict[str, str] = {}
    try:
      route = _route(self.command, path)
      body = self._read_body()
      status, payload = 200, self._dispatch(route, body)
    except _HttpError as e:
      status, payload, headers = e.status, {"error": e.message}, e.headers
    except RequestError as e:
      status, payload = http_status(e.code), {"error": e.message}
      if status >= 500:  # The backend's trouble, not the client's.
        logging.warning("REST %s %s -> %d: %s", self.command, path, status,
                        e)
    except Exception as e:  # pylint: disable=broad-except
      # A bug here must cost one request, not the server.
      logging.exception("REST %s %s failed unexpectedly", self.command, path)
      status, payload = 500, {"error": f"{type(e).__name__}: {e}"}
    self._send_json(status, payload, headers)

  def _content_length(self) -> Optional[int]:
    """The declared body size, or None if there is none; checks the cap."""
    if self.headers.get("Transfer-Encoding"):
      raise _HttpError(411, "Chunked (Transfer-Encoding) bodies are not "
                            "supported; send a Content-Length header.")
    values = self.headers.get_all("Content-Length") or []
    if not values:
      if self.command == "POST":
        raise _HttpError(411, "POST needs a Content-Length header.")
      return None
    if len(set(values)) > 1 or not values[0].strip().isdigit():
      raise _HttpError(400, f"Invalid Content-Length: {', '.join(values)}")
    length = int(values[0])
    limit = self.server.max_body_bytes
    if length > limit:
      raise _HttpError(413, f"Request body of {length} bytes exceeds the "
                            f"limit of {limit} bytes.")
    return length

  def _read_body(self) -> bytes:
    length = self._content_length()
    body = self.rfile.read(length) if length else b""
    if len(body) != (length or 0):
      raise _HttpError(400, f"Request body ended after {len(body)} of the "
                            f"{length} bytes its Content-Length declares.")
    self._body_consumed = True
    return body

  def _dispatch(self, route: _Route, body: bytes) -> Dict[str, Any]:
    backend = self.server.backend
    spec = model_pb2.ModelSpec(name=route.model_name)
    if route.version is not None:
      spec.version.value = route.version
    if route.action == "status":
      return status_to_json(backend.get_model_status(
          get_model_status_pb2.GetModelStatusRequest(model_spec=spec)))
    if route.action == "metadata":
      return metadata_to_json(backend.get_model_metadata(
          get_model_metadata_pb2.GetModelMetadataRequest(
              model_spec=spec, metadata_field=[_SIGNATURE_DEF_FIELD])))
    if route.action != "predict":
      raise RequestError(grpc.StatusCode.UNIMPLEMENTED,
                         f"{route.action} is not served here; use :predict.")
    request, row_format = request_from_json(
        route.model_name, route.version, _parse_json(body),
        backend.input_specs)
    return response_to_json(backend.predict(request), row_format)

  def _send_json(self, status: int, payload: Dict[str, Any],
                 headers: Mapping[str, str]) -> None:
    data = json.dumps(payload).encode("utf-8")
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    for key, value in headers.items():
      self.send_header(key, value)
    if not self._body_consumed:
      # Unread body bytes would be parsed as the next request.
      self.send_header("Connection", "close")
      self.close_connection = True
    self.end_headers()
    if self.command != "HEAD":
      self.wfile.write(data)


def _parse_json(body: bytes) -> Dict[str, Any]:
  if not body.strip():
    raise _bad("JSON Parse error: The document is empty.")
  try:
    document = json.loads(body)
  except (ValueError, RecursionError) as e:  # Includes UnicodeDecodeError.
    raise _bad(f"JSON Parse error: {e}") from e
  if not isinstance(document, dict):
    raise _bad(f"The request body must be a JSON object; got "
               f"{_a_json_kind(document)}.")
  return document


class _Server(http.server.ThreadingHTTPServer):
  """A thread per connection; threads die with the process."""

  daemon_threads = True

  def __init__(self, address: Tuple[str, int], backend: Backend,
               max_body_bytes: int):
    self.address_family = (socket.AF_INET6 if ":" in address[0] else
                           socket.AF_INET)
    self.backend = backend
    self.max_body_bytes = max_body_bytes
    super().__init__(address, _Handler)

  def server_bind(self):
    # HTTPServer.server_bind also resolves the host's FQDN, a DNS lookup that
    # can stall start-up; nothing here uses the name.
    socketserver.TCPServer.server_bind(self)
    self.server_name, self.server_port = self.server_address[:2]

  def handle_error(self, request, client_address):
    # The default prints to stderr; a client hanging up is routine.
    logging.debug("REST connection from %s failed", client_address,
                  exc_info=True)


def _address(host: str, port: int) -> str:
  return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RestGateway:
  """TF Serving's REST API on its own port, answered by a `Backend`.

  Example:
    gateway = RestGateway(backend, port=DEFAULT_REST_PORT)
    port = gateway.start()
    ...
    gateway.stop()
  """

  def __init__(self, backend: Backend, host: str = "127.0.0.1", port: int = 0,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
    """Configures the gateway; nothing is bound until `start`.

    Args:
      backend: Answers the requests.
      host: Interface to bind; loopback by default so nothing is exposed by
        accident.
      port: Port to bind; 0 picks a free one.
      max_body_bytes: Largest request body accepted; larger ones get 413
        without being read.

    Raises:
      ValueError: if `max_body_bytes` is not positive.
    """
    if max_body_bytes <= 0:
      raise ValueError(f"max_body_bytes must be positive. Received: "
                       f"{max_body_bytes}")
    self._backend = backend
    self._host = host
    self._requested_port = port
    self._max_body_bytes = max_body_bytes
    self._server: Optional[_Server] = None
    self._thread: Optional[threading.Thread] = None
    self._lock = threading.Lock()

  @property
  def port(self) -> int:
    """The bound port while serving; before `start`, the port asked for."""
    server = self._server
    return server.server_address[1] if server else self._requested_port

  def start(self) -> int:
    """Binds and serves in a daemon thread.

    Returns:
      The bound port.

    Raises:
      OSError: if the address cannot be bound (the message names it).
      RuntimeError: if already started.
    """
    with self._lock:
      if self._server is not None:
        raise RuntimeError(f"RestGateway is already serving on "
                           f"{_address(self._host, self.port)}.")
      address = _address(self._host, self._requested_port)
      try:
        server = _Server((self._host, self._requested_port), self._backend,
                         self._max_body_bytes)
      except OSError as e:
        raise OSError(e.errno, f"Could not bind the REST gateway to "
                               f"{address}: {e.strerror or e}") from e
      self._thread = threading.Thread(target=server.serve_forever,
                                      name="duia-rest", daemon=True)
      self._server = server
      self._thread.start()
      logging.info("REST gateway serving on %s",
                   _address(self._host, self.port))
      return self.port

  def stop(self) -> None:
    """Stops accepting requests and waits for the serving thread; idempotent.

    Requests already being answered finish on their own (daemon) threads.
    """
    with self._lock:
      server, thread = self._server, self._thread
      if server is None:
        return
      server.shutdown()
      server.server_close()
      thread.join()
      self._server = self._thread = None

  def __enter__(self) -> "RestGateway":
    self.start()
    return self

  def __exit__(self, *unused_exc_info) -> None:
    self.stop()
