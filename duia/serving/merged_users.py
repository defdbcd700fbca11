"""Concurrent `rank` requests of different users as one `rank_users` call.

A model exported by `models/signatures.py` has, beside `rank` (one user's row,
N candidates), `rank_users`: U users' rows ([U, ...], U static) and
`candidate_user` [N], each candidate's user row. The graph's cost is mostly
per call at serving sizes, so k requests in one call cost less than k calls
(`docs/serving-latency.md`). The batcher (`batching.SeveralUsers`) hands this
module the requests it merged, each as its inputs' serialized TensorProtos
(checked by `signature_io.checked_protos`, in `rank`'s input order), and one
graph call decodes them (`ParseTensor`), pads sequences to the longest (b"" /
0, which `rank` drops before Transform), stacks the users (padded to U with
copies of the last one, whom no candidate reads), concatenates the
candidates, builds the index, and runs `rank_users`. Nothing is decoded or
copied per element in Python.
"""

import threading
import weakref
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from duia.models import features
from duia.serving import model_loader
from duia.serving import signature_io

_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def available(model: model_loader.LoadedModel, signature: model_loader.Signature) -> bool:
  """Whether `signature` is `rank` and `model` has `rank_users` to merge it into."""
  return (signature.name == features.SERVING_RAW_SIGNATURE
          and features.SERVING_USERS_SIGNATURE in model.signatures)


def for_model(model: model_loader.LoadedModel) -> "MergedUsers":
  """The model version's merger (built once per loaded version)."""
  with _CACHE_LOCK:
    merger = _CACHE.get(model.saved_model)
    if merger is None:
      merger = MergedUsers(model)
      _CACHE[model.saved_model] = merger
    return merger


def _pad_columns(x: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
  """[R, w] -> [R, width], padded after the values with b"" or 0."""
  pad = b"" if x.dtype == tf.string else tf.zeros([], x.dtype)
  return tf.pad(x, [[0, 0], [0, width - tf.shape(x)[1]]], constant_values=pad)


def _concat_rows(parts: List[tf.Tensor]) -> tf.Tensor:
  """Concatenates along dimension 0, sequences ([R, w]) padded to the longest."""
  if parts[0].shape.rank == 2:
    width = tf.reduce_max(tf.stack([tf.shape(p)[1] for p in parts]))
    parts = [_pad_columns(p, width) for p in parts]
  return tf.concat(parts, axis=0)


class MergedUsers:
  """Runs k `rank` requests (2 <= k <= U) as one `rank_users` call.

  Args:
    model: A loaded version with both signatures.
  """

  def __init__(self, model: model_loader.LoadedModel):
    rank = model.signatures[features.SERVING_RAW_SIGNATURE]
    users = model.signatures[features.SERVING_USERS_SIGNATURE]
    self.rank = rank
    self.names = list(rank.headers)  # `checked_protos`' order
    self.rank_specs = dict(rank.inputs)
    self.specs = dict(users.inputs)
    self.user_inputs = {name for name, spec in self.specs.items()
                        if spec.shape.rank and spec.shape[0] is not None}
    self.users_per_call = max(self.specs[name].shape[0] for name in self.user_inputs)
    self.candidate_input = next(name for name in self.names if name not in self.user_inputs)
    self._function = model.saved_model.signatures[features.SERVING_USERS_SIGNATURE]
    self._calls: Dict[int, Callable] = {}
    self._lock = threading.Lock()

  def checked(self, inputs: Mapping[str, tensor_pb2.TensorProto]
              ) -> Tuple[List[bytes], Optional[int]]:
    """A `rank` request's serialized inputs (`signature_io.checked_protos`) and
    its candidate count from its header; None where the header does not say
    it (unknown rank or size), so the request cannot be merged.

    Raises:
      errors.RequestError: INVALID_ARGUMENT naming the input and the problem.
    """
    serialized = signature_io.checked_protos(self.rank, inputs)
    shape = inputs[self.candidate_input].tensor_shape
    if shape.unknown_rank or not shape.dim or shape.dim[0].size < 0:
      return serialized, None
    return serialized, shape.dim[0].size

  def _call_for(self, k: int) -> Callable:
    """The graph for k requests (traced once per k)."""
    with self._lock:
      if k not in self._calls:
        self._calls[k] = self._trace(k)
      return self._calls[k]

  def _trace(self, k: int) -> Callable:
    users = self.users_per_call

    @tf.function(input_signature=[tf.TensorSpec([k, len(self.names)], tf.string)])
    def call(serialized):
      parsed = {name: [tf.ensure_shape(tf.io.parse_tensor(serialized[i, j],
                                                          self.rank_specs[name].dtype),
                                      self.rank_specs[name].shape) for i in range(k)]
                for j, name in enumerate(self.names)}
      tensors = {}
      for name, parts in parsed.items():
        if name in self.user_inputs:
          parts = parts + [parts[-1]] * (users - k)  # padding users no candidate reads
        tensors[name] = tf.ensure_shape(_concat_rows(parts), self.specs[name].shape)
      counts = [tf.shape(p)[0] for p in parsed[self.candidate_input]]
      tensors[features.CANDIDATE_USER_INPUT] = tf.repeat(tf.range(k, dtype=tf.int32),
                                                         tf.stack(counts))
      return self._function(**tensors)

    return call.get_concrete_function()

  def run(self, requests: Sequence[Sequence[bytes]], candidates: Sequence[int],
          aliases: Sequence[str]) -> List[Dict[str, np.ndarray]]:
    """Every request's outputs.

    Args:
      requests: Each request's inputs as serialized TensorProtos, in `rank`'s
        input order (`signature_io.checked_protos`).
      candidates: Each request's candidate count (its outputs' rows).
      aliases: The outputs to return.
    """
    outputs = self._call_for(len(requests))(tf.constant(list(requests)))
    offsets = np.cumsum(candidates)[:-1]
    split = {alias: np.split(outputs[alias].numpy(), offsets) for alias in aliases}
    return [{alias: parts[i] for alias, parts in split.items()} for i in range(len(requests))]


def warm_up(model: model_loader.LoadedModel, requests: Sequence[Mapping[str, object]]) -> None:
  """Traces and runs the merged graph for every k in 2..U on `requests` (rank
  requests' inputs, TensorProtos by name), so no live request pays for it."""
  merger = for_model(model)
  checked = [merger.checked(inputs) for inputs in requests]
  for k in range(2, merger.users_per_call + 1):
    chosen = [checked[i % len(checked)] for i in range(k)]
    merger.run([c[0] for c in chosen], [c[1] for c in chosen], merger.rank.outputs)
