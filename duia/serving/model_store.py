"""Finds and loads model versions laid out as TF Serving expects.

TF Serving, and TFX's Pusher which feeds it, lay a model out as
`<model_base_path>/<version>/saved_model.pb`, where `<version>` is a base-10
integer directory name (Pusher writes a Unix timestamp). The highest version is
the one served.

A `LoadedModel` is immutable, and so is the version -> model map the store
serves from. A request takes a reference once and keeps the version it started
with for its whole life; `ModelStore.refresh()` loads (and warms up) new
versions off the request path and then replaces the map in one assignment. A
version that fails to load or warm up is reported in its status and never
served; the versions already served stay. This is the hot reload of DESIGN
section 7, as TF Serving's file-system source and aspired-versions manager do
it: poll, load, warm up, swap, unload.

Example:
  store = ModelStore("/models/duia", "duia", VersionPolicy(latest=2))
  store.refresh()
  model = store.get()  # the highest served version
  outputs = model.signatures["serving_default"].function(examples=...)
"""

import dataclasses
import enum
import logging
import re
import threading
import types
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import saved_model_pb2

from duia.serving import errors
from duia.serving import version_policy

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
    function: The concrete function; called with keyword tensors, it returns a
      dict of output name -> tensor.
  """

  name: str
  inputs: Mapping[str, tf.TensorSpec]
  outputs: Tuple[str, ...]
  function: Callable[..., Mapping[str, tf.Tensor]]


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
      function=function)


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


class State(enum.Enum):
  """A version's life cycle, named as TF Serving's `ModelVersionStatus.State`."""
  LOADING = "LOADING"
  AVAILABLE = "AVAILABLE"
  UNLOADING = "UNLOADING"
  END = "END"


@dataclasses.dataclass(frozen=True)
class VersionStatus:
  """What GetModelStatus reports for one version.

  Attributes:
    version: The version.
    state: Where it is in its life cycle.
    error: Why it failed to load or warm up ("" if it did not); such a version
      ends in State.END and is not retried until its directory changes.
  """

  version: int
  state: State
  error: str = ""


# Called on a freshly loaded version before it is served; raising rejects it.
WarmupFn = Callable[[LoadedModel], None]


class ModelStore:
  """Holds the served versions of one model and swaps them atomically.

  `get()` takes no lock: it reads one immutable mapping. `refresh()` loads and
  warms up new versions outside the swap lock, so loading never blocks
  requests, and serialises against other refreshes with its own lock.

  Args:
    model_base_path: Directory of `<version>/saved_model.pb` subdirectories.
    model_name: The name requests must use.
    policy: Which versions to serve (default: the latest one).
    warmup: Called with each new version before it is served (e.g. replaying
      its `assets.extra/tf_serving_warmup_requests`); an exception rejects the
      version.
  """

  def __init__(self, model_base_path: str, model_name: str,
               policy: Optional[version_policy.VersionPolicy] = None,
               warmup: Optional[WarmupFn] = None):
    self._model_base_path = model_base_path
    self._model_name = model_name
    self._policy = policy or version_policy.VersionPolicy()
    self._warmup = warmup
    self._refresh_lock = threading.Lock()
    self._served: Mapping[int, LoadedModel] = types.MappingProxyType({})
    self._status: Mapping[int, VersionStatus] = types.MappingProxyType({})
    self._failed: Dict[int, str] = {}  # version -> graph file mtime it failed at
    self._stop_polling = threading.Event()
    self._poller: Optional[threading.Thread] = None

  @property
  def model_name(self) -> str:
    return self._model_name

  @property
  def model_base_path(self) -> str:
    return self._model_base_path

  @property
  def policy(self) -> version_policy.VersionPolicy:
    return self._policy

  def _set_status(self, version: int, state: State, error: str = "") -> None:
    status = dict(self._status)
    status[version] = VersionStatus(version, state, error)
    self._status = types.MappingProxyType(status)

  def _stamp(self, path: str) -> str:
    # A failed version is retried only once its graph file changes (a re-push).
    # Size as well as mtime: some filesystems keep whole seconds only.
    for name in _GRAPH_FILES:
      graph = _join(path, name)
      if tf.io.gfile.exists(graph):
        stat = tf.io.gfile.stat(graph)
        return f"{stat.mtime_nsec}:{stat.length}"
    return ""

  def _load(self, version: int, path: str) -> Optional[LoadedModel]:
    self._set_status(version, State.LOADING)
    try:
      model = load_version(self._model_base_path, version, self._model_name)
      if self._warmup is not None:
        self._warmup(model)
    except Exception as e:  # pylint: disable=broad-except
      # Whatever is wrong with one version must not take the server down.
      logging.exception("Model %r version %d failed to load or warm up",
                        self._model_name, version)
      self._failed[version] = self._stamp(path)
      self._set_status(version, State.END, f"{type(e).__name__}: {e}")
      return None
    return model

  def refresh(self) -> List[int]:
    """Loads the versions the policy wants that are not served, and swaps.

    New versions are loaded and warmed up first; then the served map is
    replaced in one assignment, and versions the policy no longer wants are
    dropped (in-flight requests keep their reference until they finish). If no
    wanted version loads, the old ones keep serving.

    Returns:
      The served versions after the refresh, ascending.

    Raises:
      NoServableVersionError: if nothing is served and nothing can be loaded.
    """
    with self._refresh_lock:
      on_disk = list_versions(self._model_base_path)
      wanted = self._policy.select(on_disk)
      served = dict(self._served)
      for version in wanted:
        retry = self._failed.get(version) != self._stamp(on_disk[version])
        if version not in served and (version not in self._failed or retry):
          model = self._load(version, on_disk[version])
          if model is not None:
            self._failed.pop(version, None)
            served[version] = model
      keep = {v: m for v, m in served.items() if v in wanted}
      if not keep and served:
        logging.warning("No wanted version of %r loaded (wanted %s); keeping %s",
                        self._model_name, wanted, sorted(served))
        keep = served
      if not keep:
        latest_version(self._model_base_path)  # raises with the entries found
        raise NoServableVersionError(
            f"No version of model {self._model_name!r} under "
            f"{self._model_base_path!r} could be loaded: " + "; ".join(
                f"version {v}: {s.error}" for v, s in sorted(self._status.items())
                if s.error))
      self._served = types.MappingProxyType(keep)
      for version in sorted(set(served) - set(keep)):
        logging.info("Unloading model %r version %d", self._model_name, version)
        self._set_status(version, State.END)
      for version in keep:
        self._set_status(version, State.AVAILABLE)
      return sorted(keep)

  def load_latest(self) -> LoadedModel:
    """Refreshes and returns the highest served version."""
    self.refresh()
    return self.get()

  def get(self, version: Optional[int] = None) -> LoadedModel:
    """The served model of `version`, or the highest served one.

    Raises:
      errors.RequestError: NOT_FOUND if that version is not served (nothing
        loaded yet, or a version not on disk, not wanted or failed).
    """
    served = self._served
    if not served:
      raise errors.RequestError(
          grpc.StatusCode.NOT_FOUND,
          f"Servable not found: no version of model {self._model_name!r} is loaded.")
    if version is None:
      return served[max(served)]
    if version not in served:
      raise errors.RequestError(
          grpc.StatusCode.NOT_FOUND,
          f"Servable not found for request: model {self._model_name!r} version "
          f"{version} is not loaded (loaded versions: {sorted(served)}).")
    return served[version]

  def current(self) -> LoadedModel:
    """The highest served version (see `get`)."""
    return self.get()

  def served_versions(self) -> List[int]:
    return sorted(self._served)

  def status(self) -> Dict[int, VersionStatus]:
    """Every version seen since start: served, loading, failed or unloaded."""
    return dict(self._status)

  def versions(self) -> List[int]:
    """Returns the loadable versions on disk, ascending."""
    return sorted(list_versions(self._model_base_path))

  def start_polling(self, interval_s: float) -> None:
    """Calls `refresh()` every `interval_s` seconds in a daemon thread.

    TF Serving's `--file_system_poll_wait_seconds` (default 1 s). Errors are
    logged and the poll goes on: a half-written or broken version must not
    stop the server from picking up the next one.
    """
    if self._poller is not None:
      raise RuntimeError("Already polling.")
    if interval_s <= 0:
      raise ValueError(f"Poll interval must be > 0. Received: {interval_s}")

    def poll():
      while not self._stop_polling.wait(interval_s):
        try:
          self.refresh()
        except Exception:  # pylint: disable=broad-except
          logging.exception("Polling %s failed", self._model_base_path)

    self._poller = threading.Thread(target=poll, name="duia-version-poll", daemon=True)
    self._poller.start()

  def stop_polling(self) -> None:
    """Stops the poll thread, waiting for a refresh in progress."""
    self._stop_polling.set()
    if self._poller is not None:
      self._poller.join()
      self._poller = None
