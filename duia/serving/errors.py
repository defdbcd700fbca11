"""The one error type of the serving request path.

Every layer (request checking, the model store, batching, the gRPC servicers
and the REST gateway) raises `RequestError` with the gRPC status code the
request is answered with, so the code is decided once, where the problem is
found, and each protocol only translates it (gRPC: `context.abort`; REST: an
HTTP status and `{"error": message}`).
"""

import grpc


class RequestError(Exception):
  """A request failure with the gRPC status code it is answered with.

  Attributes:
    code: The `grpc.StatusCode`, e.g. INVALID_ARGUMENT or NOT_FOUND.
    message: Names what was wrong with the request.
  """

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message

  def __str__(self) -> str:
    return f"{self.code.name}: {self.message}"
