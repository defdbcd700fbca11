"""Which versions of a model are served, and swapping them without a pause.

A `model_loader.LoadedModel` is immutable, and so is the version -> model map
the store serves from. A request takes a reference once and keeps the version it started
with for its whole life; `ModelStore.refresh()` loads (and warms up) new
versions off the request path and then replaces the map in one assignment. A
version that fails to load or warm up is reported in its status and never
served; the versions already served stay. This is the hot reload of docs/design.md
§7, as TF Serving's file-system source and aspired-versions manager do
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
import threading
import types
from typing import Callable, Dict, List, Mapping, Optional

import grpc
import tensorflow as tf

from duia.serving import errors
from duia.serving import model_loader
from duia.serving import version_policy


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
WarmupFn = Callable[[model_loader.LoadedModel], None]


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
    self._served: Mapping[int, model_loader.LoadedModel] = types.MappingProxyType({})
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
    graph = model_loader.graph_file(path)
    if graph is None:
      return ""
    stat = tf.io.gfile.stat(graph)
    return f"{stat.mtime_nsec}:{stat.length}"

  def _load(self, version: int, path: str) -> Optional[model_loader.LoadedModel]:
    self._set_status(version, State.LOADING)
    try:
      model = model_loader.load_version(self._model_base_path, version, self._model_name)
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
      model_loader.NoServableVersionError: if nothing is served and nothing can be loaded.
    """
    with self._refresh_lock:
      on_disk = model_loader.list_versions(self._model_base_path)
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
        model_loader.latest_version(self._model_base_path)  # raises with the entries found
        raise model_loader.NoServableVersionError(
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

  def get(self, version: Optional[int] = None) -> model_loader.LoadedModel:
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

  def status(self) -> Dict[int, VersionStatus]:
    """Every version seen since start: served, loading, failed or unloaded."""
    return dict(self._status)

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
