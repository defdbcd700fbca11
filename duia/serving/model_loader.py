"""Finds and loads model versions laid out as TF Serving expects.

TF Serving, and TFX's Pusher which feeds it, lay a model out as
`<model_base_path>/<version>/saved_model.pb`, where `<version>` is a base-10
integer directory name (Pusher writes a Unix timestamp). A `LoadedModel` is one
loaded version: its signatures (callable) and its SignatureDefs (as
GetModelMetadata reports them). Which versions are served, and when, is
`model_store.py`.

Example:
  version, _ = latest_version("/models/duia")
  model = load_version("/models/duia", version, "duia")
  outputs = model.signatures["serving_default"].function(examples=...)
"""

import dataclasses
import logging
import re
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import saved_model_pb2

# TF Serving reads either form of the graph file.
_GRAPH_FILES = ("saved_model.pb", "saved_model.pbtxt")
_VERSION_DIR = re.compile(r"[0-9]+")


class NoServableVersionError(FileNotFoundError):
  """Raised when a model base path holds no loadable version."""


@dataclasses.dataclass(frozen=True)
class Signature:
  """One signature of a loaded SavedModel.

  Attributes:
    name: The signature key, e.g. "serving_default".
    inputs: Input name -> `tf.TensorSpec` (dtype and possibly partial shape).
    outputs: Output names, sorted.
    function: Calls the concrete function: keyword tensors in (every input,
      of the signature's dtypes and shapes, as `signature_io.convert_inputs`
      checks them), a dict of output name -> tensor out.
    from_protos: The same call on the inputs' serialized TensorProtos, one
      string tensor [len(inputs)] in `inputs`' order, decoded inside the graph
      (`tf.io.parse_tensor`); None where it could not be built.
    headers: Input name -> (dtype enum, dims as a tuple with None for any
      size, or None for any rank), in `inputs`' order: what the request path
      compares a TensorProto's header with, as plain ints
      (`TensorShape.is_compatible_with` costs ~15 us an input, a third of a
      millisecond for the 25 inputs of `rank`).
  """

  name: str
  inputs: Mapping[str, tf.TensorSpec]
  outputs: Tuple[str, ...]
  function: Callable[..., Mapping[str, tf.Tensor]]
  from_protos: Optional[Callable[[tf.Tensor], Mapping[str, tf.Tensor]]] = None
  headers: Mapping[str, Tuple[int, Optional[Tuple[Optional[int], ...]]]] = dataclasses.field(
      default_factory=dict, repr=False)

  def __post_init__(self):
    if not self.headers:
      object.__setattr__(self, "headers", {
          name: (spec.dtype.as_datatype_enum,
                 None if spec.shape.rank is None else tuple(spec.shape.as_list()))
          for name, spec in self.inputs.items()})


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """One loaded version of a model.

  Attributes:
    name: The name the model is served under.
    version: The integer version (its directory name).
    path: The version directory.
    signatures: Signature key -> `Signature`.
    saved_model: The object returned by `tf.saved_model.load`. Held because the
      signature functions do not keep the restored variables alive on their
      own: once it is garbage-collected, calls fail on deleted resources.
    signature_defs: Signature key -> `SignatureDef` proto of the "serve" graph,
      as TF Serving reports them in GetModelMetadata (with method names).
  """

  name: str
  version: int
  path: str
  signatures: Mapping[str, Signature]
  saved_model: Any = dataclasses.field(repr=False, compare=False)
  signature_defs: Mapping[str, meta_graph_pb2.SignatureDef] = dataclasses.field(
      default_factory=dict, repr=False, compare=False)


def graph_file(version_dir: str) -> Optional[str]:
  """The SavedModel graph file in `version_dir` (.pb or .pbtxt), or None."""
  for name in _GRAPH_FILES:
    path = _join(version_dir, name)
    if tf.io.gfile.exists(path):
      return path
  return None


def _join(base: str, name: str) -> str:
  # tf.io.gfile paths may be URLs (gs://...), where os.path.join is wrong on
  # Windows and a trailing slash from listdir must not be doubled.
  return base.rstrip("/") + "/" + name


def list_versions(model_base_path: str) -> Dict[int, str]:
  """Returns the loadable versions under `model_base_path`.

  A version is a subdirectory whose name is a base-10 integer and that holds
  `saved_model.pb` (or `.pbtxt`). Anything else is skipped: TF Serving only
  considers integer names, and a version directory still being copied (no graph
  file yet) must not be picked up half-written.

  Args:
    model_base_path: The model's directory; any path `tf.io.gfile` can read.

  Returns:
    Version -> version directory path.

  Raises:
    NoServableVersionError: if `model_base_path` is not a directory.
  """
  if not tf.io.gfile.isdir(model_base_path):
    raise NoServableVersionError(
        f"Model base path does not exist or is not a directory. "
        f"Received: model_base_path={model_base_path!r}")
  versions = {}
  for entry in sorted(tf.io.gfile.listdir(model_base_path)):
    name = entry.rstrip("/")
    if not _VERSION_DIR.fullmatch(name):
      continue
    path = _join(model_base_path, name)
    if not any(tf.io.gfile.exists(_join(path, f)) for f in _GRAPH_FILES):
      logging.warning("Skipping version directory without %s: %s",
                      " or ".join(_GRAPH_FILES), path)
      continue
    versions[int(name)] = path
  return versions


def latest_version(model_base_path: str) -> Tuple[int, str]:
  """Returns `(version, path)` of the highest loadable version.

  Raises:
    NoServableVersionError: if there is none.
  """
  versions = list_versions(model_base_path)
  if not versions:
    entries = sorted(tf.io.gfile.listdir(model_base_path))
    raise NoServableVersionError(
        f"No servable version under {model_base_path!r}: expected "
        f"integer-named subdirectories holding saved_model.pb (e.g. "
        f"{_join(model_base_path, '1/saved_model.pb')}). Received entries: "
        f"{entries}")
  version = max(versions)
  return version, versions[version]


def _describe_signature(name: str, function: Any) -> Signature:
  args, kwargs = function.structured_input_signature
  if args:
    # tf.saved_model.save only exports keyword-argument signatures; a positional
    # one could not be addressed by name from a PredictRequest.
    raise ValueError(f"Signature {name!r} takes positional inputs. "
                     f"Received: structured_input_signature={(args, kwargs)}")
  return Signature(
      name=name,
      inputs=dict(kwargs),
      outputs=tuple(sorted(function.structured_outputs)),
      function=_flat_caller(function, kwargs),
      from_protos=_proto_caller(function, kwargs))


def _proto_caller(function: Any, inputs: Mapping[str, tf.TensorSpec]) -> Optional[Callable]:
  """The signature on serialized TensorProtos, decoded in the graph.

  Decoding 25 TensorProtos into arrays and those into tensors costs ~0.9 ms
  per `rank` request of 100 candidates from Python (~1.5 ms at 1,000); one
  `ParseTensor` op per input inside one graph call does it in C++. The server
  checks each input's presence, dtype and declared shape before the call, and
  `ensure_shape` gives the decoded tensors the static shapes the function was
  traced with; a proto whose payload disagrees with its header fails in
  `ParseTensor` (the caller then names the input with the Python decoder).
  """
  names = list(inputs)

  @tf.function(input_signature=[tf.TensorSpec([len(names)], tf.string)])
  def call(serialized):
    tensors = {name: tf.ensure_shape(tf.io.parse_tensor(serialized[i], inputs[name].dtype),
                                     inputs[name].shape)
               for i, name in enumerate(names)}
    return function(**tensors)

  try:
    concrete = call.get_concrete_function()
  except (TypeError, ValueError) as e:  # a signature this cannot wrap keeps the array path
    logging.warning("No in-graph TensorProto decoding for this signature: %s", e)
    return None
  call_flat = getattr(concrete, "_call_flat", None)
  if call_flat is None:  # as in `_flat_caller`: without it, the plain (binding) call
    return concrete
  captured = concrete.captured_inputs
  return lambda serialized: call_flat([serialized], captured)


def _flat_caller(function: Any, inputs: Mapping[str, tf.TensorSpec]) -> Callable[..., Any]:
  """`function(**tensors)` without the concrete function's per-call binding.

  Binding keyword tensors to the signature (TF 2.16's `FunctionType.bind`)
  costs ~0.3 ms per call for the 25 inputs of `rank` on these machines, a
  fifth of its latency target; the server has already checked every input's
  presence, dtype and shape (`signature_io.convert_inputs`), so the tensors go
  straight in, in the order the function was traced with. Falls back to the
  plain call where a TensorFlow version lacks that order.
  """
  order = getattr(function, "_arg_keywords", None)
  call_flat = getattr(function, "_call_flat", None)
  if call_flat is None or order is None or sorted(order) != sorted(inputs):
    return function
  order = list(order)
  captured = function.captured_inputs

  def call(**tensors):
    return call_flat([tensors[key] for key in order], captured)
  return call


def read_signature_defs(path: str) -> Dict[str, meta_graph_pb2.SignatureDef]:
  """The SignatureDefs of the "serve" MetaGraph of the SavedModel at `path`."""
  graph_file = _join(path, "saved_model.pb")
  saved_model = saved_model_pb2.SavedModel()
  if tf.io.gfile.exists(graph_file):
    with tf.io.gfile.GFile(graph_file, "rb") as f:
      saved_model.ParseFromString(f.read())
  else:  # the text form, which TF Serving reads too
    from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
    with tf.io.gfile.GFile(_join(path, "saved_model.pbtxt")) as f:
      text_format.Parse(f.read(), saved_model)
  for meta_graph in saved_model.meta_graphs:
    if tf.saved_model.SERVING in meta_graph.meta_info_def.tags:
      return dict(meta_graph.signature_def)
  return {}


def load_version(model_base_path: str, version: int,
                 model_name: str) -> LoadedModel:
  """Loads one version of the model.

  Args:
    model_base_path: The model's directory.
    version: The version to load; `<model_base_path>/<version>` must exist.
    model_name: The name to serve it under.

  Returns:
    The loaded model.

  Raises:
    NoServableVersionError: if the version is not loadable.
  """
  versions = list_versions(model_base_path)
  if version not in versions:
    raise NoServableVersionError(
        f"Version {version} not found under {model_base_path!r}. "
        f"Available versions: {sorted(versions)}")
  path = versions[version]
  saved_model = tf.saved_model.load(path)
  signatures = {
      name: _describe_signature(name, fn)
      for name, fn in saved_model.signatures.items()
  }
  logging.info("Loaded model %r version %d from %s; signatures: %s",
               model_name, version, path, sorted(signatures))
  return LoadedModel(model_name, version, path, signatures, saved_model,
                     read_signature_defs(path))
