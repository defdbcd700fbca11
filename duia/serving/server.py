"""A model server speaking TF Serving's gRPC and REST APIs.

No `tensorflow_model_server` binary exists on this stack (stack NOTES point 9),
so this server answers the same protocol, with TF Serving's own protos and
stubs, over SavedModels loaded with `tf.saved_model.load`. A client written for
it works unchanged against TF Serving in production, and vice versa; the pushed
model is deployable on TF Serving as it is (docs/serving.md).

- gRPC: `tensorflow.serving.PredictionService` (Predict, Classify, Regress,
  GetModelMetadata) and `tensorflow.serving.ModelService.GetModelStatus`.
- REST (`rest.py`) on a second port: TF Serving's `/v1/models/...` routes.
- Versions (`model_store.py`): polls the base path, loads and warms up a new
  version (`assets.extra/tf_serving_warmup_requests`), swaps atomically, keeps
  serving the old one until then; a version policy picks what is served.
- Batching (`batching.py`), off by default as in TF Serving.
- Binds 127.0.0.1 by default; TLS (and mutual TLS) on gRPC by config
  (`tls.py`); request size is capped (RESOURCE_EXHAUSTED from gRPC beyond
  `max_message_bytes`), and so is the number of requests held at once
  (RESOURCE_EXHAUSTED beyond `max_concurrent_requests`: an overload is shed,
  not queued); SIGINT/SIGTERM drain in-flight requests.

Every failure a request causes is answered with a status code and a message
that names the problem (`errors.RequestError`); it never stops the server.

Usage:
  python -m duia.serving.server --model_base_path=/models/duia --port=8500 \
      --rest_api_port=8501
"""

import concurrent.futures
import dataclasses
import functools
import logging
import signal
import threading
import time
from typing import Callable, List, Optional, Sequence, Tuple

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from duia.models import features
from duia.serving import backend as backend_lib
from duia.serving import batching as batching_lib
from duia.serving import errors
from duia.serving import merged_users
from duia.serving import model_loader
from duia.serving import model_store
from duia.serving import rest
from duia.serving import tls as tls_lib
from duia.serving import version_policy

DEFAULT_MODEL_NAME = "duia"
DEFAULT_PORT = 8500  # TF Serving's gRPC port, so clients need no new config.
# gRPC's 4 MiB default would reject a large candidate batch carrying long
# histories; TF Serving lifts the cap entirely. 256 MiB still bounds the memory
# one request can take.
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ServerConfig:
  """How a `ModelServer` runs; flags mirror `tensorflow_model_server`'s.

  Attributes:
    model_base_path: Directory of `<version>/saved_model.pb` subdirectories.
    model_name: The name requests must use.
    host: Interface to bind; loopback by default so nothing is exposed by accident.
    port: gRPC port; 0 picks a free one.
    rest_api_port: REST port; 0 picks a free one, None turns REST off.
    max_workers: Request threads per front end.
    max_concurrent_requests: Requests each front end holds at once (gRPC:
      running or waiting for a worker); beyond it gRPC answers
      RESOURCE_EXHAUSTED and REST 429 at once, so an overload is shed instead
      of queued without limit. None: 8 * max_workers.
    max_message_bytes: Cap on gRPC message and REST body size.
    poll_interval_s: Seconds between looks for new versions; 0 turns it off.
    policy: Which versions to serve.
    batching: Batching knobs; None turns batching off.
    warmup: Replay each new version's warmup file before serving it.
    tls: Serve gRPC over TLS with these files; None serves plaintext. REST has
      no TLS here (nor in TF Serving), so it cannot be combined with TLS.
  """

  model_base_path: str
  model_name: str = DEFAULT_MODEL_NAME
  host: str = "127.0.0.1"
  port: int = 0
  rest_api_port: Optional[int] = None
  max_workers: int = 4
  max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
  max_concurrent_requests: Optional[int] = None
  poll_interval_s: float = 0.0
  policy: version_policy.VersionPolicy = version_policy.VersionPolicy()
  batching: Optional[batching_lib.BatchingConfig] = None
  warmup: bool = True
  tls: Optional[tls_lib.TlsConfig] = None

  def __post_init__(self):
    if self.max_concurrent_requests is not None and self.max_concurrent_requests < 1:
      raise ValueError("max_concurrent_requests must be >= 1. "
                       f"Received: {self.max_concurrent_requests}")
    if self.tls is not None and self.rest_api_port is not None:
      raise ValueError("REST has no TLS: with TLS on, turn REST off (rest_api_port=None) "
                       "or put a TLS-terminating proxy in front of it.")


def _abort_on_error(method: Callable):
  """Wraps a servicer method: RequestError -> its status; a bug -> INTERNAL."""

  def handler(self, request, context):
    try:
      return method(self, request)
    except errors.RequestError as e:
      context.abort(e.code, e.message)
    except Exception as e:  # pylint: disable=broad-except
      # A bug here must cost one request, not the server.
      logging.exception("%s failed unexpectedly", method.__name__)
      context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")

  handler.__name__ = method.__name__
  return handler


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """`tensorflow.serving.PredictionService` over a `ServingBackend`."""

  def __init__(self, backend: backend_lib.ServingBackend):
    self._backend = backend

  # pylint: disable=invalid-name
  @_abort_on_error
  def Predict(self, request):
    return self._backend.predict(request)

  @_abort_on_error
  def Classify(self, request):
    return self._backend.classify(request)

  @_abort_on_error
  def Regress(self, request):
    return self._backend.regress(request)

  @_abort_on_error
  def GetModelMetadata(self, request):
    return self._backend.get_model_metadata(request)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
  """`tensorflow.serving.ModelService`: GetModelStatus (reloading by RPC is not offered)."""

  def __init__(self, backend: backend_lib.ServingBackend):
    self._backend = backend

  @_abort_on_error
  def GetModelStatus(self, request):  # pylint: disable=invalid-name
    return self._backend.get_model_status(request)


def _address(host: str, port: int) -> str:
  return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _warmup(model: model_loader.LoadedModel, several_users: bool = False) -> None:
  """Replays the version's warmup requests; with `several_users` (batching on)
  also runs its `rank` requests merged, so the first merged call of
  concurrent users does not pay for instantiating `rank_users`."""
  from duia.serving import warmup  # pylint: disable=g-import-not-at-top
  requests = warmup.read_warmup_requests(model.path)
  count = warmup.replay(requests, lambda r: backend_lib.predict_on(model, r))
  rank = [r.inputs for r in requests
          if r.model_spec.signature_name == features.SERVING_RAW_SIGNATURE]
  if several_users and rank and features.SERVING_USERS_SIGNATURE in model.signatures:
    merged_users.warm_up(model, rank)
    logging.info("Warmed up %r's merged rank_users graphs", model.name)
  logging.info("Warmed up model %r version %d with %d requests", model.name,
               model.version, count)


class ModelServer:
  """The gRPC (and optionally REST) front ends over one model's versions.

  Example:
    server = ModelServer(ServerConfig("/models/duia", rest_api_port=0)).start()
    ...  # server.port, server.rest_port
    server.stop(grace=5).wait()
  """

  def __init__(self, config: ServerConfig):
    self.config = config
    self.store = model_store.ModelStore(
        config.model_base_path, config.model_name, config.policy,
        warmup=functools.partial(_warmup, several_users=config.batching is not None)
        if config.warmup else None)
    self.batcher = batching_lib.Batcher(config.batching) if config.batching else None
    self.backend = backend_lib.ServingBackend({config.model_name: self.store}, self.batcher)
    self._grpc: Optional[grpc.Server] = None
    self._rest = None
    self.port: Optional[int] = None
    self.rest_port: Optional[int] = None
    # Per front end: gRPC and REST each hold at most this many requests.
    self.max_concurrent_requests = config.max_concurrent_requests or 8 * config.max_workers

  def start(self) -> "ModelServer":
    """Loads the served versions, then binds and starts the front ends.

    Raises:
      model_loader.NoServableVersionError: if there is no version to load.
      OSError: if an address cannot be bound.
    """
    config = self.config
    self.store.refresh()
    if self.batcher is not None:
      self.batcher.start()
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(
            max_workers=config.max_workers, thread_name_prefix="duia-serving"),
        maximum_concurrent_rpcs=self.max_concurrent_requests,
        options=[
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.max_receive_message_length", config.max_message_bytes),
            # gRPC sets SO_REUSEPORT by default, which lets a second server bind
            # a busy port silently and steal half its traffic.
            ("grpc.so_reuseport", 0),
        ])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(self.backend), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.backend), server)
    address = _address(config.host, config.port)
    try:
      if config.tls is not None:
        bound = server.add_secure_port(address, config.tls.server_credentials())
      else:
        bound = server.add_insecure_port(address)
    except RuntimeError as e:
      raise OSError(f"Could not bind {address}: {e}") from e
    if bound == 0:  # Older grpcio reports failure this way instead of raising.
      raise OSError(f"Could not bind {address}")
    server.start()
    self._grpc, self.port = server, bound
    if config.rest_api_port is not None:
      self._rest = rest.RestGateway(self.backend, config.host, config.rest_api_port,
                                    max_body_bytes=config.max_message_bytes,
                                    max_concurrent_requests=self.max_concurrent_requests)
      self.rest_port = self._rest.start()
    if config.poll_interval_s > 0:
      self.store.start_polling(config.poll_interval_s)
    return self

  def stop(self, grace: Optional[float] = None) -> threading.Event:
    """Stops polling and REST, then gRPC after `grace` seconds of draining.

    Returns:
      An event set once gRPC has stopped (as `grpc.Server.stop`).
    """
    self.store.stop_polling()
    if self._rest is not None:
      self._rest.stop()
    done = self._grpc.stop(grace) if self._grpc is not None else threading.Event()
    if self.batcher is not None:
      # After gRPC has drained: queued requests still get their answers.
      threading.Thread(target=lambda: (done.wait(), self.batcher.stop()), daemon=True).start()
    return done


def start_server(model_base_path: str,
                 model_name: str = DEFAULT_MODEL_NAME,
                 host: str = "127.0.0.1",
                 port: int = 0,
                 max_workers: int = 4,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 **options) -> Tuple[ModelServer, int]:
  """Starts a `ModelServer`; returns it and its bound gRPC port.

  Args:
    model_base_path, model_name, host, port, max_workers, max_message_bytes:
      as in `ServerConfig`.
    **options: Any other `ServerConfig` field (rest_api_port, poll_interval_s,
      policy, batching, warmup, tls).

  Raises:
    model_loader.NoServableVersionError: if there is no version to load.
    OSError: if the address cannot be bound.
  """
  server = ModelServer(ServerConfig(
      model_base_path, model_name, host, port, max_workers=max_workers,
      max_message_bytes=max_message_bytes, **options)).start()
  return server, server.port


def serve(config: ServerConfig, grace_s: float = 5.0) -> None:
  """Serves until SIGINT or SIGTERM, then drains in-flight requests.

  Must be called from the main thread (Python delivers signals only there).

  Raises:
    model_loader.NoServableVersionError: if there is no version to load.
    OSError: if an address cannot be bound.
    ValueError: if called outside the main thread.
  """
  received: List[int] = []

  def _on_signal(signum, unused_frame):
    # Only record it: taking locks (Event.set, server.stop) inside a handler
    # can deadlock against the interrupted main thread.
    received.append(signum)

  # Installed before the server starts, so a signal is never missed and a call
  # from a non-main thread fails (ValueError) before anything is running.
  previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
  server = None
  try:
    server = ModelServer(config).start()
    logging.info("Serving model %r version %d on %s", config.model_name,
                 server.store.get().version, _address(config.host, server.port))
    if server.rest_port is not None:
      logging.info("REST API on http://%s/v1/models/%s",
                   _address(config.host, server.rest_port), config.model_name)
    while not received:
      time.sleep(0.1)
    logging.info("Received signal %d; stopping (grace %.1f s)", received[0], grace_s)
  finally:
    if server is not None:
      server.stop(grace_s).wait()
    for s, handler in previous.items():
      signal.signal(s, handler)


def main(argv: Optional[Sequence[str]] = None) -> None:
  """Command-line entry point."""
  from duia.serving import server_flags  # pylint: disable=g-import-not-at-top (it imports this)
  args = server_flags.build_parser().parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  server_flags.set_tensorflow_threads(args.tensorflow_intra_op_parallelism,
                                      args.tensorflow_inter_op_parallelism)
  serve(server_flags.config_from_args(args), args.grace_s)


if __name__ == "__main__":
  main()
