"""TF Serving's REST routes: which model, version and action a path asks for.

`route` follows TF Serving's path regexes (`/v1/models/<name>[/versions/<v>]`
with `:predict`, `:classify`, `:regress`, `/metadata` or nothing for status);
failures that have an HTTP status of their own are `HttpError`s.
"""

import dataclasses
import re
from typing import Dict, Optional
import urllib.parse

from duia.serving import rest_json

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


class HttpError(Exception):
  """A failure with an HTTP status of its own (no gRPC code maps to it)."""

  def __init__(self, status: int, message: str,
               headers: Optional[Dict[str, str]] = None):
    super().__init__(message)
    self.status = status
    self.message = message
    self.headers = headers or {}


@dataclasses.dataclass(frozen=True)
class Route:
  """What a request path asks for."""
  action: str  # "predict", "classify", "regress", "status" or "metadata".
  model_name: str
  version: Optional[int]


def _parse_version(text: Optional[str]) -> Optional[int]:
  if text is None:
    return None
  # The length check first: int() refuses strings over 4300 digits.
  if len(text) > 19 or int(text) > _INT64_MAX:
    raise rest_json.bad_request(f"Failed to convert version: {text} to numeric (it exceeds "
               f"int64).")
  return int(text)


def route(method: str, path: str) -> Route:
  """The route `method path` asks for.

  Raises:
    HttpError: 404 for a path no route has, 405 for the wrong method.
    RequestError: INVALID_ARGUMENT for a version label, a version beyond
      int64 or a status request without a model name.
  """
  post = _POST_ROUTE.fullmatch(path)
  get = None if post else _GET_ROUTE.fullmatch(path)
  if not (post or get):
    raise HttpError(404, f"No route for {method} {path}. Routes: "
                          f"{_ROUTES_HELP}.")
  allowed = "POST" if post else "GET"
  if method != allowed:
    raise HttpError(405, f"{path} takes {allowed}, not {method}.",
                     {"Allow": allowed})
  name, version_text, label, action = (post or get).groups()
  if label is not None:
    raise rest_json.bad_request(f"Version labels are not supported; request by version number "
               f"(/versions/<n>) or none for the latest. Received: label "
               f"{urllib.parse.unquote(label)!r}")
  if get:
    action = "metadata" if action else "status"
    if name is None:
      raise rest_json.bad_request("Missing model name in request: use /v1/models/<name>.")
  return Route(action.lower(), urllib.parse.unquote(name),
                _parse_version(version_text))
