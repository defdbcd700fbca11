"""Server-side batching of concurrent requests, after TF Serving's batching.

Concurrent requests for the same signature of the same version are merged
into one model call, then the outputs are split back. How a batch is merged
is the request's `Merge`:

- `ConcatRows` (TF Serving's rule): every input is concatenated along
  dimension 0. A request is batchable only if all its inputs share the same
  0-th dimension (its row count), and requests whose inputs differ in the
  other dimensions (e.g. padded to other lengths) are never merged.
- `SeveralUsers`, for `rank`, whose user inputs have one row and the
  candidates' N: up to U requests of different users go into one call of the
  model's `rank_users` signature (`merged_users.py`), so concurrent requests
  share the graph's per-call cost instead of queueing for the cores one by
  one. A lone request runs on `rank`.

Knobs and defaults follow TF Serving's batching guide for CPU-only serving
(tensorflow_serving/batching/README.md, "CPU-only: One Approach"):
`num_batch_threads` = number of cores, `batch_timeout_micros` = 0 (merge what
is already queued, never wait; tune in the 1-10 ms range), a large
`max_batch_size`. `max_enqueued_batches` bounds the queue: past
`max_enqueued_batches * max_batch_size` queued rows a request is refused with
RESOURCE_EXHAUSTED at once, so an overload sheds load instead of queueing
without limit.

A failing batch fails every request in it (as in TF Serving): a model error
caused by one request's values reaches the others merged with it.

Example:
  batcher = Batcher(BatchingConfig(max_batch_size=256))
  batcher.start()
  outputs = batcher.submit(("duia", 3, "serving_default"), run_fn, {"examples": array})
  batcher.stop()
"""

import collections
import dataclasses
import os
import threading
import time
from typing import Any, Callable, Deque, Dict, Hashable, List, Mapping, Optional, Sequence, Union

import grpc
import numpy as np

from duia.serving import errors

Arrays = Mapping[str, np.ndarray]
Runner = Callable[[Arrays], Dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class BatchingConfig:
  """TF Serving's `BatchingParameters`, with its CPU guide's defaults.

  Attributes:
    max_batch_size: Most rows in one merged call. A single request larger
      than this runs on its own.
    batch_timeout_micros: How long the first request of a batch waits for
      others; 0 merges only what is already queued.
    num_batch_threads: Batches run in parallel (threads calling the model).
    max_enqueued_batches: Queue bound, in batches of `max_batch_size` rows.
  """

  max_batch_size: int = 1024
  batch_timeout_micros: int = 0
  num_batch_threads: int = os.cpu_count() or 1
  max_enqueued_batches: int = 8

  def __post_init__(self):
    for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
      if getattr(self, name) < 1:
        raise ValueError(f"BatchingConfig.{name} must be >= 1. Received: {getattr(self, name)}")
    if self.batch_timeout_micros < 0:
      raise ValueError("BatchingConfig.batch_timeout_micros must be >= 0. "
                       f"Received: {self.batch_timeout_micros}")


def batchable(arrays: Arrays) -> bool:
  """True if every input has rank >= 1 and all share the 0-th dimension."""
  rows = {a.shape[0] if a.ndim else None for a in arrays.values()}
  return len(rows) == 1 and None not in rows


def _shape_key(arrays: Arrays):
  return tuple(sorted((name, a.shape[1:]) for name, a in arrays.items()))


class ConcatRows:
  """Merges requests by concatenating every input along dimension 0 (TF Serving's rule).

  Requests share a call only if their inputs agree in every other dimension.
  """

  max_requests: Optional[int] = None

  def key(self, arrays: Arrays) -> Hashable:
    return _shape_key(arrays)

  def rows(self, arrays: Arrays) -> int:
    return next(iter(arrays.values())).shape[0]

  def run(self, runner: Runner, requests: Sequence[Arrays]) -> List[Dict[str, np.ndarray]]:
    """Every request's outputs from one `runner` call on the merged inputs."""
    if len(requests) == 1:
      return [runner(requests[0])]
    merged = {name: np.concatenate([r[name] for r in requests]) for name in requests[0]}
    rows = [self.rows(r) for r in requests]
    return _split_rows(runner(merged), rows)


def _split_rows(outputs: Dict[str, np.ndarray], rows: Sequence[int]) -> List[Dict[str, np.ndarray]]:
  total = sum(rows)
  bad = sorted(n for n, a in outputs.items() if a.ndim == 0 or a.shape[0] != total)
  if bad:
    raise errors.RequestError(
        grpc.StatusCode.INTERNAL,
        f"Outputs {bad} do not have one row per input row, so a merged batch "
        f"cannot be split; serve this model with batching off.")
  offsets = np.cumsum(rows)[:-1]
  split = {name: np.split(array, offsets) for name, array in outputs.items()}
  return [{name: parts[i] for name, parts in split.items()} for i in range(len(rows))]


class SeveralUsers:
  """Merges `rank` requests of different users into one call over several users.

  The requests are opaque here; the two callables know them
  (`merged_users.py`: the serialized TensorProtos, merged inside the graph).

  Args:
    run_alone: Runs one request on its own (`rank`: the one-user graph is the
      cheaper one for a lone request).
    candidates: A request's candidate count, its size against `max_batch_size`.
    users_per_call: Most requests in one call (the graph's static user rows).

  The batcher's runner for these requests takes the list of requests and
  returns each one's outputs. If a merged call fails, every request of it
  runs alone, so one bad request gets its own error and fails no other.
  """

  def __init__(self, run_alone: Callable[[Any], Dict[str, np.ndarray]],
               candidates: Callable[[Any], int], users_per_call: int):
    self.run_alone = run_alone
    self.candidates = candidates
    self.max_requests = users_per_call

  def key(self, request) -> Hashable:
    del request  # any two `rank` requests merge: sequences are padded
    return "several_users"

  def rows(self, request) -> int:
    return self.candidates(request)

  def run(self, runner: Callable[[Sequence[Any]], List[Dict[str, np.ndarray]]],
          requests: Sequence[Any]) -> List[Dict[str, np.ndarray]]:
    if len(requests) > 1:
      try:
        return runner(requests)
      except Exception:  # pylint: disable=broad-except
        pass  # each request alone below: its own result or its own error
    return [_outcome(self.run_alone, r) for r in requests]


class _Failed:
  """A request's own error, when requests of one batch end differently."""

  def __init__(self, error: BaseException):
    self.error = error


def _outcome(run, request):
  try:
    return run(request)
  except Exception as e:  # pylint: disable=broad-except
    return _Failed(e)


Merge = Union[ConcatRows, SeveralUsers]


class _Task:
  """One request waiting in the queue."""

  def __init__(self, key: Hashable, runner: Runner, arrays: Arrays, merge: Merge):
    self.key = (key, merge.key(arrays))
    self.runner = runner
    self.arrays = arrays
    self.merge = merge
    self.rows = merge.rows(arrays)
    self.enqueued = time.monotonic()
    self.done = threading.Event()
    self.outputs: Optional[Dict[str, np.ndarray]] = None
    self.error: Optional[BaseException] = None


class Batcher:
  """Merges concurrent batchable requests into shared model calls.

  Args:
    config: The batching knobs.
  """

  def __init__(self, config: BatchingConfig = BatchingConfig()):
    self.config = config
    self._queue: Deque[_Task] = collections.deque()
    self._queued_rows = 0
    self._cond = threading.Condition()
    self._stopping = False
    self._threads: List[threading.Thread] = []
    self._running = 0  # batches being run, by batch threads or callers
    self.batches_run = 0  # merged calls made, for tests and stats
    self.requests_run = 0

  @property
  def max_queued_rows(self) -> int:
    return self.config.max_enqueued_batches * self.config.max_batch_size

  def start(self) -> None:
    for i in range(self.config.num_batch_threads):
      thread = threading.Thread(target=self._work, name=f"duia-batch-{i}", daemon=True)
      thread.start()
      self._threads.append(thread)

  def stop(self) -> None:
    """Runs what is queued, then stops the threads."""
    with self._cond:
      self._stopping = True
      self._cond.notify_all()
    for thread in self._threads:
      thread.join()
    self._threads = []

  def submit(self, key: Hashable, runner: Runner, arrays: Arrays,
             merge: Optional[Merge] = None) -> Dict[str, np.ndarray]:
    """Queues one batchable request and waits for its outputs.

    Args:
      key: Requests with equal keys may share a call (model, version, signature).
      runner: `ConcatRows`: calls the model on merged arrays and returns
        every output; `SeveralUsers`: runs a list of requests in one call and
        returns each one's outputs.
      arrays: The request: its inputs, all with the same 0-th dimension, for
        `ConcatRows`; what `SeveralUsers`' callables take for it.
      merge: How requests are merged; `ConcatRows` if None.

    Returns:
      This request's outputs.

    Raises:
      errors.RequestError: RESOURCE_EXHAUSTED if the queue is full,
        UNAVAILABLE if the batcher is stopping; or what `runner` raised.
    """
    task = _Task(key, runner, arrays, merge or ConcatRows())
    with self._cond:
      if self._stopping:
        raise errors.RequestError(grpc.StatusCode.UNAVAILABLE, "The server is shutting down.")
      # Nothing to merge with and a free slot: a batch thread would take this
      # request alone at once, so it runs in this thread instead, without a
      # hand-off. Requests that arrive meanwhile queue and merge.
      run_here = (self.config.batch_timeout_micros == 0 and not self._queue
                  and self._running < self.config.num_batch_threads)
      if run_here:
        self._running += 1
      else:
        if self._queued_rows + task.rows > self.max_queued_rows and self._queue:
          raise errors.RequestError(
              grpc.StatusCode.RESOURCE_EXHAUSTED,
              f"The batch queue is full ({self._queued_rows} rows queued, limit "
              f"{self.max_queued_rows} = max_enqueued_batches "
              f"{self.config.max_enqueued_batches} x max_batch_size "
              f"{self.config.max_batch_size}); retry later.")
        self._queue.append(task)
        self._queued_rows += task.rows
        self._cond.notify()
    if run_here:
      self._run([task])
    else:
      task.done.wait()
    if task.error is not None:
      raise task.error
    return task.outputs

  def _take_matching(self, batch: List[_Task], rows: int) -> int:
    most = batch[0].merge.max_requests
    for task in list(self._queue):
      if most is not None and len(batch) >= most:
        break
      if task.key == batch[0].key and rows + task.rows <= self.config.max_batch_size:
        self._queue.remove(task)
        self._queued_rows -= task.rows
        batch.append(task)
        rows += task.rows
    return rows

  def _next_batch(self) -> Optional[List[_Task]]:
    with self._cond:
      # A batch waits for a free slot: callers may be running requests of
      # their own (`submit`), and the cores are only num_batch_threads.
      while ((not self._queue or self._running >= self.config.num_batch_threads)
             and not (self._stopping and not self._queue)):
        self._cond.wait()
      if not self._queue:
        return None
      self._running += 1
      first = self._queue.popleft()
      self._queued_rows -= first.rows
      batch = [first]
      rows = self._take_matching(batch, first.rows)
      deadline = first.enqueued + self.config.batch_timeout_micros / 1e6
      most = first.merge.max_requests
      while (rows < self.config.max_batch_size and not self._stopping
             and (most is None or len(batch) < most)):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
          break
        self._cond.wait(remaining)
        rows = self._take_matching(batch, rows)
      return batch

  def _work(self) -> None:
    while True:
      batch = self._next_batch()
      if batch is None:
        return
      self._run(batch)

  def _run(self, batch: List[_Task]) -> None:
    """Runs `batch`, whose slot is already counted in `_running`."""
    try:
      outputs = batch[0].merge.run(batch[0].runner, [t.arrays for t in batch])
      for task, task_outputs in zip(batch, outputs):
        if isinstance(task_outputs, _Failed):
          task.error = task_outputs.error
        else:
          task.outputs = task_outputs
    except BaseException as e:  # pylint: disable=broad-except
      for task in batch:
        task.error = e
    finally:
      with self._cond:
        self._running -= 1
        self.batches_run += 1
        self.requests_run += len(batch)
        if self._queue:  # a batch thread may be waiting for the slot
          self._cond.notify_all()
      for task in batch:
        task.done.set()
