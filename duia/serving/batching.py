"""Server-side batching of concurrent requests, after TF Serving's batching.

Concurrent requests for the same signature of the same version are merged
along dimension 0 into one model call, then the outputs are split back. As in
TF Serving, a request is batchable only if all its inputs share the same 0-th
dimension (its row count): the `rank` signature, whose user inputs have
dimension 1 and candidates N, is not, and runs on its own. Requests whose
inputs differ in the other dimensions (e.g. padded to other lengths) are never
merged with each other.

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
from typing import Callable, Deque, Dict, Hashable, List, Mapping, Optional

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


class _Task:
  """One request waiting in the queue."""

  def __init__(self, key: Hashable, runner: Runner, arrays: Arrays):
    self.key = (key, _shape_key(arrays))
    self.runner = runner
    self.arrays = arrays
    self.rows = next(iter(arrays.values())).shape[0]
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

  def submit(self, key: Hashable, runner: Runner, arrays: Arrays) -> Dict[str, np.ndarray]:
    """Queues one batchable request and waits for its outputs.

    Args:
      key: Requests with equal keys may share a call (model, version, signature).
      runner: Calls the model on (merged) arrays and returns every output.
      arrays: The request's inputs, all with the same 0-th dimension.

    Returns:
      Every output of `runner`, this request's rows only.

    Raises:
      errors.RequestError: RESOURCE_EXHAUSTED if the queue is full,
        UNAVAILABLE if the batcher is stopping; or what `runner` raised.
    """
    task = _Task(key, runner, arrays)
    with self._cond:
      if self._stopping:
        raise errors.RequestError(grpc.StatusCode.UNAVAILABLE, "The server is shutting down.")
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
    task.done.wait()
    if task.error is not None:
      raise task.error
    return task.outputs

  def _take_matching(self, batch: List[_Task], rows: int) -> int:
    for task in list(self._queue):
      if task.key == batch[0].key and rows + task.rows <= self.config.max_batch_size:
        self._queue.remove(task)
        self._queued_rows -= task.rows
        batch.append(task)
        rows += task.rows
    return rows

  def _next_batch(self) -> Optional[List[_Task]]:
    with self._cond:
      while not self._queue and not self._stopping:
        self._cond.wait()
      if not self._queue:
        return None
      first = self._queue.popleft()
      self._queued_rows -= first.rows
      batch = [first]
      rows = self._take_matching(batch, first.rows)
      deadline = first.enqueued + self.config.batch_timeout_micros / 1e6
      while rows < self.config.max_batch_size and not self._stopping:
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
    try:
      if len(batch) == 1:
        batch[0].outputs = batch[0].runner(batch[0].arrays)
      else:
        merged = {name: np.concatenate([t.arrays[name] for t in batch])
                  for name in batch[0].arrays}
        outputs = batch[0].runner(merged)
        total = sum(t.rows for t in batch)
        bad = sorted(n for n, a in outputs.items() if a.ndim == 0 or a.shape[0] != total)
        if bad:
          raise errors.RequestError(
              grpc.StatusCode.INTERNAL,
              f"Outputs {bad} do not have one row per input row, so a merged batch "
              f"cannot be split; serve this model with batching off.")
        offsets = np.cumsum([t.rows for t in batch])[:-1]
        split = {name: np.split(array, offsets) for name, array in outputs.items()}
        for i, task in enumerate(batch):
          task.outputs = {name: parts[i] for name, parts in split.items()}
    except BaseException as e:  # pylint: disable=broad-except
      for task in batch:
        task.error = e
    finally:
      self.batches_run += 1
      self.requests_run += len(batch)
      for task in batch:
        task.done.set()
