"""The serving-friendly softmax agrees with tf.nn.softmax, values and gradients."""

import numpy as np
import tensorflow as tf

from duia.layers import softmax


def test_values_match_tf_softmax_on_any_axis():
  logits = tf.random.normal([6, 5, 7], stddev=5.0, seed=2)
  for axis in (-1, 1, 0):
    np.testing.assert_allclose(softmax.softmax(logits, axis=axis),
                               tf.nn.softmax(logits, axis=axis), rtol=1e-6, atol=1e-7)


def test_masked_positions_get_zero_and_an_all_masked_row_stays_finite():
  # As target attention masks padding: the dtype's minimum in place of a logit.
  logits = tf.constant([[1.0, 2.0, tf.float32.min], [tf.float32.min] * 3])
  out = softmax.softmax(logits).numpy()
  np.testing.assert_allclose(out[0], tf.nn.softmax(logits[0]).numpy(), rtol=1e-6)
  assert out[0, 2] == 0.0
  np.testing.assert_allclose(out[1], [1 / 3] * 3, rtol=1e-6)  # as tf.nn.softmax gives it


def test_gradients_match_tf_softmax():
  logits = tf.random.normal([4, 6], seed=3)
  weights = tf.random.normal([4, 6], seed=4)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(logits)
    ours = tf.reduce_sum(softmax.softmax(logits) * weights)
    theirs = tf.reduce_sum(tf.nn.softmax(logits) * weights)
  np.testing.assert_allclose(tape.gradient(ours, logits), tape.gradient(theirs, logits),
                             rtol=1e-5, atol=1e-7)
