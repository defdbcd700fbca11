"""SavedModel warmup in TF Serving's format.

When TF Serving loads a model version it first replays
`<saved_model>/assets.extra/tf_serving_warmup_requests`, so that the first real
requests do not pay for lazy initialisation (graph optimisation, lookup tables,
memory pools): a TFRecord file of `tensorflow.serving.PredictionLog` protos, at
most 1000 records (https://www.tensorflow.org/tfx/serving/saved_model_warmup).

TF Serving replays Predict, Classify, Regress and MultiInference logs. This
model only serves Predict signatures, so only `predict_log` records are written
and read here; a record of any other kind is rejected with its index rather
than skipped, since a warmup that silently replays less than it claims would
hide the cold start it exists to prevent.

Requests carry a model name and a signature name but no version: the Pusher
numbers versions after the file is written, and the file must warm whichever
number the model gets.

Example:
  requests = requests_from_examples(serialized_eval_examples, "duia")
  write_warmup_requests(serving_model_dir, requests)
  ...
  replay(read_warmup_requests(version_dir), predict_fn)  # at load time
"""

import os
from typing import Callable, List, Sequence

from google.protobuf import message
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from duia import demo_requests
from duia.models import features
from duia.serving import client

WARMUP_FILE = "tf_serving_warmup_requests"
# TF Serving fails the load of a version whose warmup file holds more.
MAX_WARMUP_RECORDS = 1000
ASSETS_EXTRA = "assets.extra"
_PREDICT_LOG = "predict_log"


class WarmupError(RuntimeError):
  """A warmup request failed; the version it warms must not be served.

  The original exception is chained as `__cause__`.

  Attributes:
    index: The request's position (its record index in the warmup file).
    request: The failing request.
  """

  def __init__(self, index: int, request: predict_pb2.PredictRequest,
               cause: BaseException):
    spec = request.model_spec
    super().__init__(
        f"Warmup request {index} (model {spec.name!r}, signature "
        f"{spec.signature_name!r}) failed: {type(cause).__name__}: {cause}")
    self.index = index
    self.request = request


def warmup_path(saved_model_dir: str) -> str:
  """Where TF Serving looks for the warmup file of `saved_model_dir`."""
  return os.path.join(saved_model_dir, ASSETS_EXTRA, WARMUP_FILE)


def _check_request(request: predict_pb2.PredictRequest, where: str) -> None:
  if not isinstance(request, predict_pb2.PredictRequest):
    raise TypeError(f"{where} should be a tensorflow.serving.PredictRequest. "
                    f"Received: {type(request).__name__}")
  spec = request.model_spec
  # The version number is only given at push time; a pinned one would make
  # the warmup of every other version fail with NOT_FOUND.
  if spec.HasField("version"):
    raise ValueError(f"{where} pins model_spec.version={spec.version.value}; "
                     f"warmup requests must not name a version.")
  if spec.version_label:
    raise ValueError(f"{where} pins model_spec.version_label="
                     f"{spec.version_label!r}; warmup requests must not name "
                     f"a version.")


def write_warmup_requests(saved_model_dir: str,
                          requests: Sequence[predict_pb2.PredictRequest]) -> str:
  """Writes `requests` as TF Serving's warmup file of `saved_model_dir`.

  Overwrites an existing warmup file. `assets.extra` is created if needed,
  through tf.io.gfile, so gs:// and other remote file systems work.

  Args:
    saved_model_dir: The SavedModel directory (the one with saved_model.pb).
    requests: Predict requests without a model_spec version.

  Returns:
    The path of the written file.

  Raises:
    ValueError: if there are no requests, more than `MAX_WARMUP_RECORDS`, or a
      request names a version.
    TypeError: if an element is not a PredictRequest.
  """
  requests = list(requests)
  path = warmup_path(saved_model_dir)
  if not requests:
    raise ValueError(f"No warmup requests to write to {path}.")
  if len(requests) > MAX_WARMUP_RECORDS:
    raise ValueError(
        f"TF Serving replays at most {MAX_WARMUP_RECORDS} warmup records and "
        f"refuses to load a version with more. Received: {len(requests)} "
        f"requests for {path}")
  for index, request in enumerate(requests):
    _check_request(request, f"Warmup request {index}")
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.TFRecordWriter(path) as writer:
    for request in requests:
      log = prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request))
      writer.write(log.SerializeToString())
  return path


def _parse_record(record: bytes, path: str,
                  index: int) -> predict_pb2.PredictRequest:
  try:
    log = prediction_log_pb2.PredictionLog.FromString(record)
  except message.DecodeError as e:
    raise ValueError(f"Record {index} of {path} is not a "
                     f"tensorflow.serving.PredictionLog: {e}") from e
  kind = log.WhichOneof("log_type")
  if kind != _PREDICT_LOG:
    raise ValueError(
        f"Record {index} of {path} holds {kind or 'no log'}; only "
        f"{_PREDICT_LOG} records are replayed (this model serves Predict "
        f"signatures only, not Classify, Regress or MultiInference).")
  _check_request(log.predict_log.request, f"Record {index} of {path}")
  return log.predict_log.request


def read_warmup_requests(saved_model_dir: str) -> List[predict_pb2.PredictRequest]:
  """The Predict requests of `saved_model_dir`'s warmup file, in file order.

  Args:
    saved_model_dir: The SavedModel directory.

  Returns:
    The requests; [] if the model has no warmup file.

  Raises:
    ValueError: naming the file and the record index, for a record that is not
      a readable TFRecord, not a PredictionLog, not a predict_log, or names a
      version; or for a file of more than `MAX_WARMUP_RECORDS` records.
  """
  path = warmup_path(saved_model_dir)
  if not tf.io.gfile.exists(path):
    return []
  requests = []
  records = iter(tf.data.TFRecordDataset(path))
  while True:
    index = len(requests)
    try:
      record = next(records)
    except StopIteration:
      return requests
    except tf.errors.DataLossError as e:
      raise ValueError(f"Record {index} of {path} is not a readable TFRecord "
                       f"(truncated or corrupt): {e.message}") from e
    if index >= MAX_WARMUP_RECORDS:
      raise ValueError(f"{path} holds more than {MAX_WARMUP_RECORDS} records; "
                       f"TF Serving refuses to load such a version.")
    requests.append(_parse_record(record.numpy(), path, index))


def _examples_requests(serialized: List[bytes], model_name: str,
                       num_requests: int,
                       examples_per_request: int) -> List[predict_pb2.PredictRequest]:
  batches = [serialized[i:i + examples_per_request]
             for i in range(0, len(serialized), examples_per_request)]
  return [client.build_examples_request(batch, model_name,
                                        features.SERVING_EXAMPLES_SIGNATURE)
          for batch in batches[:num_requests]]


def _rank_requests(serialized: List[bytes], model_name: str, num_requests: int,
                   num_candidates: int) -> List[predict_pb2.PredictRequest]:
  rows = demo_requests.decode_examples(serialized)
  sampled = demo_requests.sample_requests(rows, num_requests, num_candidates)
  return [client.build_rank_request(r.user, r.candidates, r.ts, model_name,
                                    features.SERVING_RAW_SIGNATURE)
          for r in sampled]


def requests_from_examples(serialized_examples: Sequence[bytes],
                           model_name: str,
                           num_rank_requests: int = 8,
                           num_candidates: int = 100,
                           examples_per_request: int = 16,
                           num_example_requests: int = 8
                          ) -> List[predict_pb2.PredictRequest]:
  """Warmup requests for both serving signatures, built from real tf.Examples.

  `serving_default` requests are consecutive batches of the examples as they
  are (the signature parses only the features it needs, so labels may stay).
  `rank` requests score one user against `num_candidates` items, as
  `duia.demo_requests` samples them: users with at least 2 exposures and one
  valid consumption, low- and high-active alternately; the user inputs have
  leading dimension 1, the candidate inputs N.

  Args:
    serialized_examples: Serialized raw tf.Examples (as RawLogExampleGen
      writes them).
    model_name: `model_spec.name` of every request; no version is set.
    num_rank_requests: `rank` requests (users) at most.
    num_candidates: Candidates per `rank` request at most.
    examples_per_request: Examples per `serving_default` request.
    num_example_requests: `serving_default` requests at most.

  Returns:
    The `serving_default` requests, then the `rank` ones; fewer than asked if
    the examples do not hold enough rows or eligible users.

  Raises:
    ValueError: if a count is not positive.
  """
  counts = {"num_rank_requests": num_rank_requests,
            "num_candidates": num_candidates,
            "examples_per_request": examples_per_request,
            "num_example_requests": num_example_requests}
  for name, value in counts.items():
    if value < 1:
      raise ValueError(f"{name} must be at least 1. Received: {value}")
  serialized = list(serialized_examples)
  return (_examples_requests(serialized, model_name, num_example_requests,
                             examples_per_request)
          + _rank_requests(serialized, model_name, num_rank_requests,
                           num_candidates))


def replay(requests: Sequence[predict_pb2.PredictRequest],
           predict_fn: Callable[[predict_pb2.PredictRequest], object]) -> int:
  """Calls `predict_fn` on every request, in order, and counts the calls.

  Stops at the first failure: a version whose warmup fails must not be swapped
  in, so the caller gets the failure rather than a partial count.

  Args:
    requests: Warmup requests, e.g. from `read_warmup_requests`.
    predict_fn: Runs one request against the version being loaded; its result
      is ignored.

  Returns:
    The number of requests replayed.

  Raises:
    WarmupError: naming the failing request's index and signature, with the
      original exception as its cause.
  """
  count = 0
  for index, request in enumerate(requests):
    try:
      predict_fn(request)
    except Exception as e:  # pylint: disable=broad-except
      raise WarmupError(index, request, e) from e
    count += 1
  return count
