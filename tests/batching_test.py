"""Tests for duia.serving.batching: merging, splitting, queue bound, failures."""

import threading

import grpc
import numpy as np
import pytest

from duia.serving import batching
from duia.serving import errors


class _Recorder:
  """A runner that doubles `x` and records the row count of each call."""

  def __init__(self, gate: threading.Event = None):
    self.calls = []
    self.gate = gate
    self.started = threading.Event()

  def __call__(self, arrays):
    self.started.set()
    if self.gate is not None:
      self.gate.wait(10)
    self.calls.append(len(arrays["x"]))
    return {"y": arrays["x"] * 2.0, "n": arrays["x"].sum(axis=-1)}


def _submit_all(batcher, runner, inputs, key="m"):
  results = [None] * len(inputs)

  def submit(i):
    try:
      results[i] = batcher.submit(key, runner, {"x": inputs[i]})
    except errors.RequestError as e:
      results[i] = e

  threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(inputs))]
  for t in threads:
    t.start()
  return threads, results


def test_batchable_needs_one_shared_leading_dimension():
  assert batching.batchable({"a": np.zeros([3]), "b": np.zeros([3, 2])})
  assert not batching.batchable({"user": np.zeros([1]), "items": np.zeros([5])})
  assert not batching.batchable({"a": np.zeros([])})


def test_concurrent_requests_are_merged_and_split_back():
  # One thread and a long timeout: requests queued while the first waits merge.
  batcher = batching.Batcher(batching.BatchingConfig(
      max_batch_size=100, batch_timeout_micros=300_000, num_batch_threads=1))
  runner = _Recorder()
  batcher.start()
  inputs = [np.full([i + 1, 2], float(i)) for i in range(5)]  # 15 rows in all
  threads, results = _submit_all(batcher, runner, inputs)
  for t in threads:
    t.join(10)
  batcher.stop()
  for i, out in enumerate(results):
    np.testing.assert_array_equal(out["y"], inputs[i] * 2.0)
    np.testing.assert_array_equal(out["n"], inputs[i].sum(axis=-1))
  assert sum(runner.calls) == 15
  assert len(runner.calls) < 5  # at least two requests shared a call
  assert batcher.requests_run == 5


def test_max_batch_size_and_shapes_bound_a_merge():
  batcher = batching.Batcher(batching.BatchingConfig(
      max_batch_size=4, batch_timeout_micros=200_000, num_batch_threads=1))
  runner = _Recorder()
  batcher.start()
  # Three 3-row requests (never two in one call of 4) and one of another width.
  inputs = [np.ones([3, 2]), np.ones([3, 2]), np.ones([3, 2]), np.ones([1, 5])]
  threads, results = _submit_all(batcher, runner, inputs)
  for t in threads:
    t.join(10)
  batcher.stop()
  assert all(not isinstance(r, Exception) for r in results)
  assert max(runner.calls) <= 4
  assert sorted(runner.calls) == [1, 3, 3, 3]


def test_full_queue_sheds_with_resource_exhausted_and_recovers():
  gate = threading.Event()
  batcher = batching.Batcher(batching.BatchingConfig(
      max_batch_size=2, batch_timeout_micros=0, num_batch_threads=1, max_enqueued_batches=1))
  runner = _Recorder(gate)
  batcher.start()
  # The worker blocks on the first request; then the queue holds 2 rows and
  # the other 5 requests shed at once.
  first_thread, first = _submit_all(batcher, runner, [np.ones([1, 1])])
  assert runner.started.wait(10)
  threads, results = _submit_all(batcher, runner, [np.ones([1, 1])] * 7)
  for _ in range(200):
    if sum(isinstance(r, errors.RequestError) for r in results) >= 5:
      break
    threading.Event().wait(0.05)
  gate.set()
  for t in threads + first_thread:
    t.join(10)
  shed = [r for r in results if isinstance(r, errors.RequestError)]
  served = [r for r in results + first if isinstance(r, dict)]
  assert len(shed) == 5 and len(served) == 3
  assert all(r.code == grpc.StatusCode.RESOURCE_EXHAUSTED for r in shed)
  assert "max_enqueued_batches" in shed[0].message
  # Once drained, it takes requests again.
  np.testing.assert_array_equal(batcher.submit("m", runner, {"x": np.ones([1, 1])})["y"], [[2.0]])
  batcher.stop()


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on():
  batcher = batching.Batcher(batching.BatchingConfig(num_batch_threads=1))
  batcher.start()

  def broken(arrays):
    raise errors.RequestError(grpc.StatusCode.INVALID_ARGUMENT, "bad values")

  with pytest.raises(errors.RequestError, match="bad values"):
    batcher.submit("m", broken, {"x": np.ones([2, 1])})
  assert batcher.submit("m", _Recorder(), {"x": np.ones([2, 1])})["y"].shape == (2, 1)
  batcher.stop()
  with pytest.raises(errors.RequestError) as info:
    batcher.submit("m", _Recorder(), {"x": np.ones([2, 1])})
  assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_config_is_validated():
  with pytest.raises(ValueError, match="max_batch_size"):
    batching.BatchingConfig(max_batch_size=0)
  with pytest.raises(ValueError, match="batch_timeout_micros"):
    batching.BatchingConfig(batch_timeout_micros=-1)



class _UsersModel:
  """A stand-in for `rank` / `rank_users`: a request is (user, candidates);
  each candidate's score is its user's number plus its own; user 99 is bad."""

  def __init__(self):
    self.calls = []

  @staticmethod
  def _scores(request):
    user, candidates = request
    if user == 99:
      raise errors.RequestError(grpc.StatusCode.INVALID_ARGUMENT, "bad user 99")
    return {"score": user + np.arange(candidates, dtype=np.float64)}

  def alone(self, request):
    self.calls.append(1)
    return self._scores(request)

  def merged(self, requests):
    self.calls.append(len(requests))
    return [self._scores(r) for r in requests]  # raises if any request is bad


def _submit_users(batcher, model, requests, users_per_call):
  merge = batching.SeveralUsers(model.alone, candidates=lambda r: r[1],
                                users_per_call=users_per_call)
  results = [None] * len(requests)

  def submit(i):
    try:
      results[i] = batcher.submit("rank", model.merged, requests[i], merge)
    except errors.RequestError as e:
      results[i] = e

  threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(requests))]
  for t in threads:
    t.start()
  for t in threads:
    t.join(10)
  return results


def test_concurrent_rank_requests_of_different_users_share_calls_of_at_most_u():
  model = _UsersModel()
  batcher = batching.Batcher(batching.BatchingConfig(
      max_batch_size=100, batch_timeout_micros=300_000, num_batch_threads=1))
  batcher.start()
  requests = [(u, 2 + u) for u in range(5)]
  results = _submit_users(batcher, model, requests, users_per_call=2)
  batcher.stop()
  for (user, candidates), result in zip(requests, results):
    np.testing.assert_array_equal(result["score"], user + np.arange(candidates))
  assert max(model.calls) == 2 and sum(model.calls) == 5  # merged, never past U = 2
  assert batcher.requests_run == 5 and batcher.batches_run >= 3


def test_a_bad_request_in_a_merged_call_fails_alone():
  model = _UsersModel()
  batcher = batching.Batcher(batching.BatchingConfig(
      max_batch_size=100, batch_timeout_micros=300_000, num_batch_threads=1))
  batcher.start()
  requests = [(1, 3), (99, 2), (2, 4)]
  results = _submit_users(batcher, model, requests, users_per_call=8)
  batcher.stop()
  assert isinstance(results[1], errors.RequestError) and "bad user 99" in results[1].message
  assert results[1].code == grpc.StatusCode.INVALID_ARGUMENT
  np.testing.assert_array_equal(results[0]["score"], 1 + np.arange(3))
  np.testing.assert_array_equal(results[2]["score"], 2 + np.arange(4))
  assert model.calls[0] == 3 and model.calls[1:] == [1, 1, 1]  # merged, failed, each alone


def test_an_idle_batcher_runs_a_request_in_its_callers_thread_and_bounds_concurrency():
  """batch_timeout_micros=0: nothing to merge with and a free slot -> no hand-off;
  and never more than num_batch_threads calls at once, callers' included."""
  running, most, threads_seen = [0], [0], set()
  lock = threading.Lock()

  def runner(arrays):
    with lock:
      running[0] += 1
      most[0] = max(most[0], running[0])
      threads_seen.add(threading.get_ident())
    threading.Event().wait(0.02)
    with lock:
      running[0] -= 1
    return {"y": arrays["x"] * 2.0}

  batcher = batching.Batcher(batching.BatchingConfig(batch_timeout_micros=0,
                                                     num_batch_threads=2))
  batcher.start()
  assert batcher.submit("m", runner, {"x": np.ones([1, 1])})["y"][0, 0] == 2.0
  assert threads_seen == {threading.get_ident()}
  threads, results = _submit_all(batcher, runner, [np.full([1, 1], float(i)) for i in range(12)])
  for t in threads:
    t.join(10)
  batcher.stop()
  for i, out in enumerate(results):
    np.testing.assert_array_equal(out["y"], [[2.0 * i]])
  assert most[0] <= 2 and batcher.requests_run == 13
