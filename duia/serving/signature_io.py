"""Checking a request against a signature, and turning its tensors into outputs.

Follows TF Serving's `predict_util.cc`: every signature input present and no
others, matching dtype and shape, known `output_filter` aliases; anything else
is INVALID_ARGUMENT with a message naming the input. One deliberate difference:
an unknown signature is INVALID_ARGUMENT here (TF Serving says
FAILED_PRECONDITION), since it is the request that is wrong.
"""

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import model_pb2

from duia.serving import errors
from duia.serving import model_loader
from duia.serving import tensor_codec

_INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _dtype_name(enum: int) -> str:
  try:
    return tf.dtypes.as_dtype(enum).name
  except TypeError:  # DT_INVALID or an enum this TensorFlow does not know.
    return f"DataType({enum})"


def resolve_signature(model: model_loader.LoadedModel,
                      spec: model_pb2.ModelSpec) -> model_loader.Signature:
  """The signature `spec.signature_name` names ("serving_default" if empty)."""
  name = spec.signature_name or tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
  if name not in model.signatures:
    raise errors.RequestError(
        _INVALID, f"Serving signature {name!r} not found in model {model.name!r} "
        f"version {model.version}. Available signatures: {sorted(model.signatures)}")
  return model.signatures[name]


def _check_names(signature: model_loader.Signature, inputs: Mapping[str, object]) -> None:
  expected = signature.inputs
  missing = sorted(set(expected) - set(inputs))
  extra = sorted(set(inputs) - set(expected))
  if missing or extra:
    problems = ([f"Missing but required: {missing}."] if missing else []) + (
        [f"Sent extra: {extra}."] if extra else [])
    raise errors.RequestError(
        _INVALID, f"Inputs do not match signature {signature.name!r}. "
        f"{' '.join(problems)} Expected: {sorted(expected)}")


def _check_dtype(signature: model_loader.Signature, name: str,
                 proto: tensor_pb2.TensorProto) -> None:
  spec = signature.inputs[name]
  if proto.dtype != spec.dtype.as_datatype_enum:
    raise errors.RequestError(
        _INVALID, f"Input {name!r} of signature {signature.name!r} expects dtype "
        f"{spec.dtype.name}. Received: dtype={_dtype_name(proto.dtype)}")


def _fits(dims: Optional[Tuple], shape: Tuple[int, ...]) -> bool:
  """Whether `shape` is compatible with `dims` (None: any rank; a None dim: any size)."""
  if dims is None:
    return True
  return len(dims) == len(shape) and all(d is None or d == n for d, n in zip(dims, shape))


def _check_shape(signature: model_loader.Signature, name: str, shape: Sequence[int]) -> None:
  spec = signature.inputs[name]
  if not _fits(signature.headers[name][1], tuple(shape)):
    raise errors.RequestError(
        _INVALID, f"Input {name!r} of signature {signature.name!r} expects shape "
        f"{spec.shape} (rank {spec.shape.rank}). Received: shape={list(shape)}")


def convert_inputs(signature: model_loader.Signature,
                   inputs: Mapping[str, tensor_pb2.TensorProto]) -> Dict[str, np.ndarray]:
  """Decodes and checks the request's TensorProtos against the signature.

  Returns:
    Input name -> array of the signature's dtype and a compatible shape.

  Raises:
    errors.RequestError: INVALID_ARGUMENT naming the input and the problem.
  """
  _check_names(signature, inputs)
  arrays = {}
  for name in signature.inputs:
    proto = inputs[name]
    _check_dtype(signature, name, proto)
    try:
      array = tensor_codec.to_ndarray(proto)
    except Exception as e:  # pylint: disable=broad-except
      raise errors.RequestError(_INVALID, f"Input {name!r} is not a valid TensorProto: {e}") from e
    _check_shape(signature, name, array.shape)
    arrays[name] = array
  return arrays


def checked_protos(signature: model_loader.Signature,
                   inputs: Mapping[str, tensor_pb2.TensorProto]) -> List[bytes]:
  """The inputs' serialized TensorProtos in `signature.headers`' order, after
  checking names, dtypes and the shapes the protos declare (a payload that
  disagrees with its header fails later, in `ParseTensor`).

  Raises:
    errors.RequestError: INVALID_ARGUMENT naming the input and the problem.
  """
  _check_names(signature, inputs)
  serialized = []
  for name, (dtype_enum, _) in signature.headers.items():
    proto = inputs[name]
    if proto.dtype != dtype_enum:
      _check_dtype(signature, name, proto)  # raises, with the message
    shape = tensor_codec.shape_of(proto)
    if not proto.tensor_shape.unknown_rank and min(shape, default=0) >= 0:
      _check_shape(signature, name, shape)  # else ParseTensor fails, and the array path says why
    serialized.append(proto.SerializeToString())
  return serialized


def run_protos(signature: model_loader.Signature, inputs: Mapping[str, tensor_pb2.TensorProto],
               output_filter: Sequence[str]) -> Dict[str, np.ndarray]:
  """`run(signature, convert_inputs(...), output_aliases(...))`, decoded in the graph.

  Checks names, dtypes and the shapes the protos declare in Python, then hands
  the serialized protos to `signature.from_protos` (one graph call, no arrays
  in Python). If the graph fails, the array path runs instead, so a malformed
  proto gets the same error naming its input, and any other failure the same
  status and message, as without this path.

  Returns:
    Output alias -> array, in `output_aliases` order.

  Raises:
    errors.RequestError: INVALID_ARGUMENT naming the input (or output alias)
      and the problem.
  """
  return run_serialized(signature, checked_protos(signature, inputs), inputs,
                        output_aliases(signature, output_filter))


def run_serialized(signature: model_loader.Signature, serialized: Sequence[bytes],
                   inputs: Mapping[str, tensor_pb2.TensorProto],
                   aliases: Sequence[str]) -> Dict[str, np.ndarray]:
  """`run_protos` after its checks: `serialized` from `checked_protos(signature, inputs)`."""
  try:
    outputs = signature.from_protos(tf.constant(list(serialized)))
    return {alias: outputs[alias].numpy() for alias in aliases}
  except Exception:  # pylint: disable=broad-except
    return run(signature, convert_inputs(signature, inputs), aliases)


def output_aliases(signature: model_loader.Signature, output_filter: Sequence[str]) -> List[str]:
  """The outputs to return: `output_filter`, checked, or all of them."""
  if not output_filter:
    return list(signature.outputs)
  seen = set()
  for alias in output_filter:
    if alias not in signature.outputs:
      raise errors.RequestError(
          _INVALID, f"output tensor alias not found in signature: {alias} Outputs "
          f"expected to be in the set {sorted(signature.outputs)}.")
    if alias in seen:
      raise errors.RequestError(_INVALID, f"duplicate output tensor alias: {alias}")
    seen.add(alias)
  return list(output_filter)


def run(signature: model_loader.Signature, arrays: Mapping[str, np.ndarray],
        aliases: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
  """Calls the signature's function; errors the model raises are the request's.

  Raises:
    errors.RequestError: INVALID_ARGUMENT with TensorFlow's message.
  """
  try:
    tensors = {name: tf.convert_to_tensor(array, dtype=signature.inputs[name].dtype)
               for name, array in arrays.items()}
    outputs = signature.function(**tensors)
    return {alias: outputs[alias].numpy() for alias in (aliases or outputs)}
  except tf.errors.OpError as e:
    raise errors.RequestError(_INVALID, e.message) from e
  except Exception as e:  # pylint: disable=broad-except
    # Shape inference inside the function raises ValueError/TypeError rather
    # than OpError; those are equally the request's fault.
    raise errors.RequestError(_INVALID, str(e)) from e
