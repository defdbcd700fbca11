"""Softmax as exp / sum, for the small tensors of a ranking request.

`tf.nn.softmax` is rewritten to oneDNN's kernel on x86 (TensorFlow's default
since 2.9), which costs 60-200 us a call on the [100, 4..50] tensors of one
`rank` request on these machines, against a few us for the elementwise ops
below: eight softmaxes (the CGC gates, the history's target attention) were
~0.7 ms of CPU a request (TF profiler, benchmarks/rank_split_bench.py's
model). The formula is the usual stable one, so values agree with
`tf.nn.softmax` to float rounding (tests/softmax_test.py).
"""

import tensorflow as tf


def softmax(logits: tf.Tensor, axis: int = -1) -> tf.Tensor:
  """exp(x - max x) / sum exp(x - max x) along `axis`."""
  exp = tf.exp(logits - tf.stop_gradient(tf.reduce_max(logits, axis=axis, keepdims=True)))
  return exp / tf.reduce_sum(exp, axis=axis, keepdims=True)
