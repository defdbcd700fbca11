"""Which rows of a ranking graph are users' and which candidates'.

The `rank` signature keeps the user's features at one row ([1, ...]) and the
candidates' at N; its batched twin, `rank_users`, takes several users' rows
([U, ...], U static) and each candidate's user (an index [N]), so that the
server can merge concurrent requests of different users into one call
(`serving/batching.py`). The layers meet the user side with the candidates in
a few places (the first layer, target attention, UHSE, HIM's hybrid); they
ask this module what a user-level tensor looks like and how to bring its rows
to the candidates':

- outside `several_users` (training, `serving_default`, `rank`): user-level
  tensors are the ones with one static row, brought to the candidates by
  broadcasting, as before;
- inside it (while `rank_users` is traced): the ones with U static rows,
  brought to the candidates by gathering each candidate's user.

The state is read while a graph is traced, never while it runs.
"""

import contextlib
import threading
from typing import Iterator, Optional

import tensorflow as tf


class _State(threading.local):

  def __init__(self):
    super().__init__()
    self.num_users = 1
    self.candidate_user: Optional[tf.Tensor] = None


_STATE = _State()


@contextlib.contextmanager
def several_users(candidate_user: tf.Tensor, num_users: int) -> Iterator[None]:
  """Traces a graph over `num_users` users' rows and their candidates.

  Args:
    candidate_user: [N] int, the user row (in [0, num_users)) of each candidate.
    num_users: the static row count of every user-level tensor; at least 2, so
      that it cannot be mistaken for `rank`'s single row.
  """
  if num_users < 2:
    raise ValueError(f"several_users needs num_users >= 2. Received: {num_users}")
  previous = (_STATE.num_users, _STATE.candidate_user)
  _STATE.num_users, _STATE.candidate_user = num_users, tf.convert_to_tensor(candidate_user)
  try:
    yield
  finally:
    _STATE.num_users, _STATE.candidate_user = previous


def is_user_level(x: tf.Tensor, like: Optional[tf.Tensor] = None) -> bool:
  """Whether `x` has the user rows (statically), and `like`, if given, does not."""
  rows = _STATE.num_users
  return x.shape[0] == rows and (like is None or like.shape[0] != rows)


def several() -> bool:
  """Whether a graph over several users is being traced (`several_users`)."""
  return _STATE.candidate_user is not None


def to_candidates(x: tf.Tensor) -> tf.Tensor:
  """User rows [U, ...] -> each candidate's user row [N, ...] (`several_users` only)."""
  return tf.gather(x, _STATE.candidate_user)


def align(x: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
  """`x` ready to meet `like` row by row.

  Several users' rows are gathered per candidate; one user's row is left as
  it is (TensorFlow broadcasts it, at no copy); anything else is returned as is.
  """
  if several() and is_user_level(x, like):
    return to_candidates(x)
  return x


def broadcast(x: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
  """`x` with as many rows as `like`: user rows brought to the candidates'
  (gathered, or one row broadcast); anything else is returned as is."""
  if not is_user_level(x, like):
    return x
  if several():
    return to_candidates(x)
  return tf.broadcast_to(x, tf.concat([tf.shape(like)[:1], tf.shape(x)[1:]], axis=0))
