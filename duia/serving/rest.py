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

The JSON <-> proto conversion is `rest_json.py`.

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

Usage:
  gateway = RestGateway(backend, port=DEFAULT_REST_PORT)
  gateway.start()
  ...
  gateway.stop()
"""

import http.server
import json
import logging
import socket
import socketserver
import threading
import urllib.parse
from typing import Any, Dict, Mapping, Optional, Protocol, Tuple

import grpc
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import predict_pb2

from duia.serving import rest_json
from duia.serving import rest_routes
from duia.serving.errors import RequestError

DEFAULT_REST_PORT = 8501  # TF Serving's REST port.
# The server passes its gRPC message cap (`server.DEFAULT_MAX_MESSAGE_BYTES`).
DEFAULT_MAX_BODY_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_CONCURRENT_REQUESTS = 32

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

# A client that stops sending mid-request, or an idle keep-alive connection,
# frees its thread after this long.
_SOCKET_TIMEOUT_S = 60.0


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

  def input_specs(self, model_spec: model_pb2.ModelSpec) -> rest_json.InputSpecs:
    """The inputs of the signature `model_spec` resolves to, by name."""
    ...


def http_status(code: grpc.StatusCode) -> int:
  """The HTTP status TF Serving answers a gRPC status code with."""
  return HTTP_STATUS_BY_CODE.get(code, 500)



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
    except rest_routes.HttpError as e:
      self._body_consumed = False
      self._send_json(e.status, {"error": e.message}, e.headers)
      return False
    return super().handle_expect_100()

  def _handle(self) -> None:
    self._body_consumed = False
    path = urllib.parse.urlsplit(self.path).path
    # A thread per connection: without a cap, an overload would hold one
    # thread and one request per client. Beyond the cap, shed at once.
    if not self.server.slots.acquire(blocking=False):
      self._discard_body()
      self._send_json(http_status(grpc.StatusCode.RESOURCE_EXHAUSTED), {
          "error": f"Server overloaded: {self.server.max_concurrent_requests} requests are "
                   "in progress; retry later."}, {"Retry-After": "1"})
      return
    try:
      self._handle_admitted(path)
    finally:
      self.server.slots.release()

  def _handle_admitted(self, path: str) -> None:
    headers: Dict[str, str] = {}
    try:
      route = rest_routes.route(self.command, path)
      body = self._read_body()
      status, payload = 200, self._dispatch(route, body)
    except rest_routes.HttpError as e:
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
      raise rest_routes.HttpError(411, "Chunked (Transfer-Encoding) bodies are not "
                                       "supported; send a Content-Length header.")
    values = self.headers.get_all("Content-Length") or []
    if not values:
      if self.command == "POST":
        raise rest_routes.HttpError(411, "POST needs a Content-Length header.")
      return None
    if len(set(values)) > 1 or not values[0].strip().isdigit():
      raise rest_routes.HttpError(400, f"Invalid Content-Length: {', '.join(values)}")
    length = int(values[0])
    limit = self.server.max_body_bytes
    if length > limit:
      raise rest_routes.HttpError(413, f"Request body of {length} bytes exceeds the "
                                       f"limit of {limit} bytes.")
    return length

  def _discard_body(self) -> None:
    """Reads a shed request's body in small chunks, keeping none of it.

    Closing on unread bytes would reset the connection under a client still
    sending, and it would see no answer at all. A body that is too large or
    has no length is left unread (the connection then closes).
    """
    try:
      length = self._content_length() or 0
    except rest_routes.HttpError:
      return
    while length > 0:
      chunk = self.rfile.read(min(length, 1 << 16))
      if not chunk:
        return
      length -= len(chunk)
    self._body_consumed = True

  def _read_body(self) -> bytes:
    length = self._content_length()
    body = self.rfile.read(length) if length else b""
    if len(body) != (length or 0):
      raise rest_routes.HttpError(400, f"Request body ended after {len(body)} of the "
                                       f"{length} bytes its Content-Length declares.")
    self._body_consumed = True
    return body

  def _dispatch(self, route: rest_routes.Route, body: bytes) -> Dict[str, Any]:
    backend = self.server.backend
    spec = model_pb2.ModelSpec(name=route.model_name)
    if route.version is not None:
      spec.version.value = route.version
    if route.action == "status":
      return rest_json.status_to_json(backend.get_model_status(
          get_model_status_pb2.GetModelStatusRequest(model_spec=spec)))
    if route.action == "metadata":
      return rest_json.metadata_to_json(backend.get_model_metadata(
          get_model_metadata_pb2.GetModelMetadataRequest(
              model_spec=spec, metadata_field=[rest_json.SIGNATURE_DEF_FIELD])))
    if route.action != "predict":
      raise RequestError(grpc.StatusCode.UNIMPLEMENTED,
                         f"{route.action} is not served here; use :predict.")
    request, row_format = rest_json.request_from_json(
        route.model_name, route.version, rest_json.parse_body(body),
        backend.input_specs)
    return rest_json.response_to_json(backend.predict(request), row_format)

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


class _Server(http.server.ThreadingHTTPServer):
  """A thread per connection; threads die with the process."""

  daemon_threads = True
  # socketserver's default backlog of 5 resets connections in a burst before
  # they can even be answered (shed); the kernel caps it at somaxconn anyway.
  request_queue_size = 128

  def __init__(self, address: Tuple[str, int], backend: Backend,
               max_body_bytes: int, max_concurrent_requests: int):
    self.address_family = (socket.AF_INET6 if ":" in address[0] else
                           socket.AF_INET)
    self.backend = backend
    self.max_body_bytes = max_body_bytes
    self.max_concurrent_requests = max_concurrent_requests
    self.slots = threading.BoundedSemaphore(max_concurrent_requests)
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
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS):
    """Configures the gateway; nothing is bound until `start`.

    Args:
      backend: Answers the requests.
      host: Interface to bind; loopback by default so nothing is exposed by
        accident.
      port: Port to bind; 0 picks a free one.
      max_body_bytes: Largest request body accepted; larger ones get 413
        without being read.
      max_concurrent_requests: Requests handled at once; more are answered
        with RESOURCE_EXHAUSTED's HTTP status at once.

    Raises:
      ValueError: if `max_body_bytes` or `max_concurrent_requests` is not positive.
    """
    if max_body_bytes <= 0:
      raise ValueError(f"max_body_bytes must be positive. Received: "
                       f"{max_body_bytes}")
    if max_concurrent_requests <= 0:
      raise ValueError("max_concurrent_requests must be positive. Received: "
                       f"{max_concurrent_requests}")
    self._max_concurrent_requests = max_concurrent_requests
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
                         self._max_body_bytes, self._max_concurrent_requests)
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
