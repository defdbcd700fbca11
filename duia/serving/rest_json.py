"""TF Serving's REST JSON formats <-> TF Serving's protos.

The rules follow TF Serving's `util/json_tensor.cc`
(https://www.tensorflow.org/tfx/serving/api_rest): each input takes the dtype
the signature declares; strings are UTF-8 text or `{"b64": "..."}`; row format
(`instances`) batches one value per instance for every input, so all inputs
share the 0-th dimension; columnar format (`inputs`) sends each input whole, so
0-th dimensions may differ; a single-input signature takes bare values. Float
outputs are written with the shortest digits that round-trip in their own
precision (a float32 0.2 prints as 0.2), as TF Serving does. Like TF Serving,
keys of a columnar `inputs` object that the signature does not have are
ignored.

Two deliberate differences from TF Serving: integer inputs are range-checked
against their exact dtype (TF Serving only checks int32 range for
int8/int16/uint8), and string outputs that are not valid UTF-8 are sent as
`{"b64": ...}` (TF Serving would write invalid JSON).

Every problem with a body is a `RequestError` (INVALID_ARGUMENT unless said
otherwise) whose message names the input; `rest.py` turns it into HTTP.
"""

import base64
import binascii
import inspect
import json
import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

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

SIGNATURE_DEF_FIELD = "signature_def"  # GetModelMetadataImpl::kSignatureDef
_BYTES_SUFFIX = "_bytes"  # TF Serving's marker for binary string outputs.
_SNIPPET_CHARS = 80

InputSpecs = Mapping[str, tf.TensorSpec]


def bad_request(message: str) -> RequestError:
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
  return bad_request(f"Input {name!r}: JSON value {_snippet(value)} "
              f"({_json_kind(value)}) is not of expected type {dtype.name}.")


def _decode_b64(name: str, value: Any) -> bytes:
  if not _is_b64(value):
    raise bad_request(f"Input {name!r}: JSON value {_snippet(value)} must be a "
               f"string or an object with the single key 'b64' holding a "
               f"string.")
  text = value["b64"]
  try:
    # absl::Base64Unescape, which TF Serving uses, accepts missing padding.
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
  except (binascii.Error, ValueError) as e:
    raise bad_request(f"Input {name!r}: JSON value {_snippet(value)} is not valid "
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
        raise bad_request(f"Input {name!r}: JSON value {value!r} is out of range "
                   f"for {dtype.name} (largest magnitude {largest}).")
      return value
    if isinstance(value, bool) or not isinstance(value, int):
      raise _type_error(name, value, dtype)
    if abs(value) > exact:
      raise bad_request(f"Input {name!r}: cannot convert JSON value {value} to "
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
      raise bad_request(f"Input {name!r}: JSON value {value} is out of range for "
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
  return bad_request(f"Input {name!r} is ragged: its first elements give it shape "
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
    raise bad_request(f"Input {name!r} is nested too deeply.") from e
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
      raise bad_request(f"Element {index} of 'instances' is an object, but element 0 "
                 f"is a bare value; all elements must be one or the other.")
    return {next(iter(specs)): instance}
  if not _is_named_object(instance):
    raise bad_request(f"Element {index} of 'instances' is {_a_json_kind(instance)}, "
               f"but element 0 is an object keyed by input name; all "
               f"elements must be objects.")
  unknown = sorted(set(instance) - set(specs))
  if unknown:
    raise bad_request(f"Element {index} of 'instances' has keys {unknown} that are "
               f"not inputs of signature {signature!r} (inputs: "
               f"{sorted(specs)}).")
  missing = sorted(set(specs) - set(instance))
  if missing:
    raise bad_request(
        f"Element {index} of 'instances' lacks inputs {missing} (signature "
        f"{signature!r} has {sorted(specs)}). In row format every instance "
        f"carries one value of every input, so all inputs share the 0-th "
        f"(batch) dimension; send inputs with differing 0-th dimensions in "
        f"columnar format ('inputs').")
  return instance


def _tensors_from_instances(instances: Any, specs: InputSpecs, signature: str
                           ) -> Dict[str, tensor_pb2.TensorProto]:
  if not isinstance(instances, list):
    raise bad_request(f"'instances' must be a list; got {_a_json_kind(instances)}.")
  if not instances:
    raise bad_request("'instances' is empty; send at least one instance.")
  named = _is_named_object(instances[0])
  if not named and len(specs) > 1:
    raise bad_request(f"'instances' holds bare values, but signature {signature!r} "
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
        raise bad_request(f"Input {name!r} has shape {shape} in element {index} of "
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
      raise bad_request(f"'inputs' is a bare value, but signature {signature!r} has "
                 f"{len(specs)} inputs {sorted(specs)}: 'inputs' must be an "
                 f"object keyed by input name.")
    inputs = {next(iter(specs)): inputs}
  missing = sorted(set(specs) - set(inputs))
  if missing:
    raise bad_request(f"'inputs' lacks inputs {missing} of signature {signature!r} "
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
    raise bad_request(f"Signature {_signature_label(model_spec)!r} of model "
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
    raise bad_request(f"The request body must be a JSON object; got "
               f"{_a_json_kind(body)}.")
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  if version is not None:
    request.model_spec.version.value = version
  if "signature_name" in body:
    if not isinstance(body["signature_name"], str):
      raise bad_request(f"'signature_name' must be a string; got "
                 f"{_snippet(body['signature_name'])}.")
    request.model_spec.signature_name = body["signature_name"]
  has_rows, has_columns = "instances" in body, "inputs" in body
  if has_rows == has_columns:
    raise bad_request("The body must have exactly one of 'instances' (row format) "
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
    raise bad_request(f"Output {name!r} could not be read as a tensor: {e}") from e
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
  raise bad_request(f"Output {name!r} has dtype {array.dtype}, which has no JSON "
             f"form.")


def _rows(values: Dict[str, Any], shapes: Dict[str, Tuple[int, ...]]
         ) -> List[Any]:
  scalars = sorted(name for name, shape in shapes.items() if not shape)
  if scalars:
    raise bad_request(f"Outputs {scalars} are scalars, but row format needs a 0-th "
               f"(batch) dimension on every output; use columnar format "
               f"('inputs').")
  batch = {name: shape[0] for name, shape in shapes.items()}
  if len(set(batch.values())) > 1:
    raise bad_request(f"Outputs have differing 0-th dimensions {batch}, so they "
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
    raise bad_request("The model returned no outputs; there is nothing to answer "
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
  if SIGNATURE_DEF_FIELD not in response.metadata:
    raise RequestError(
        grpc.StatusCode.INTERNAL,
        f"The GetModelMetadataResponse has no {SIGNATURE_DEF_FIELD!r} entry "
        f"in its metadata map (entries: {sorted(response.metadata)}).")
  signature_defs = get_model_metadata_pb2.SignatureDefMap()
  if not response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_defs):
    raise RequestError(
        grpc.StatusCode.INTERNAL,
        f"The {SIGNATURE_DEF_FIELD!r} metadata entry is a "
        f"{response.metadata[SIGNATURE_DEF_FIELD].type_url!r}, not a "
        f"SignatureDefMap.")
  return {
      "model_spec": _message_to_dict(response.model_spec, preserve_names=True),
      "metadata": {
          SIGNATURE_DEF_FIELD: _message_to_dict(signature_defs,
                                                 preserve_names=True)
      },
  }


def parse_body(body: bytes) -> Dict[str, Any]:
  if not body.strip():
    raise bad_request("JSON Parse error: The document is empty.")
  try:
    document = json.loads(body)
  except (ValueError, RecursionError) as e:  # Includes UnicodeDecodeError.
    raise bad_request(f"JSON Parse error: {e}") from e
  if not isinstance(document, dict):
    raise bad_request(f"The request body must be a JSON object; got "
               f"{_a_json_kind(document)}.")
  return document
