"""hist_ts/neg_ts through Transform's helper and the `rank` signature's parsing.

The whole path (Transform, both signatures) only runs in the pipeline tests;
these check the pieces in plain TensorFlow, in a second.
"""

import numpy as np
import tensorflow as tf

from duia.models import features
from duia.models import preprocessing
from duia.models import signatures

DAY = 86400
NOW = 1_700_000_000


def test_ages_are_days_aligned_with_the_ids_cut_and_padded_alike():
  ts = tf.sparse.from_dense(tf.constant(
      [[NOW - DAY // 2, NOW - 3 * DAY, NOW - 9 * DAY], [0, 0, 0], [NOW + 60, 0, 0]],
      tf.int64))
  ages = preprocessing._ages_in_days(ts, tf.constant([NOW] * 3, tf.int64), 2)
  assert ages.dtype == tf.float32
  # Cut to the first 2 entries, as _pad_ids cuts the ids; a ts after the
  # exposure counts as age 0.
  np.testing.assert_allclose(ages.numpy(), [[0.5, 3.0], [0.0, 0.0], [0.0, 0.0]])
  longer = preprocessing._ages_in_days(ts, tf.constant([NOW + DAY] * 3, tf.int64), 4)
  np.testing.assert_allclose(longer.numpy(), [[1.5, 4.0, 10.0, 0.0], [0.0] * 4,
                                              [1.0 - 60 / DAY, 0.0, 0.0, 0.0]], rtol=1e-6)


def test_rank_signature_takes_int_sequences_once_per_request():
  specs = signatures.raw_input_specs()
  for key in features.INT_SEQUENCES:
    assert specs[key].dtype == tf.int64 and specs[key].shape.as_list() == [1, None]
    assert key in signatures.USER_LEVEL
  tensors = {features.ITEM_ID: tf.constant([b"a", b"b", b"c"]),
             features.HIST_TS: tf.constant([[NOW - DAY, NOW - 2 * DAY, 0]], tf.int64)}
  spec = {features.ITEM_ID: tf.io.FixedLenFeature([1], tf.string),
          features.HIST_TS: tf.io.VarLenFeature(tf.int64)}
  parsed = signatures.to_parsed_form(tensors, spec)
  hist_ts = parsed[features.HIST_TS]
  # The user's one row (the ranker broadcasts it, after Transform); the 0
  # padding is gone, as b"" is for strings.
  assert isinstance(hist_ts, tf.SparseTensor)
  assert tf.sparse.to_dense(hist_ts).numpy().tolist() == [[NOW - DAY, NOW - 2 * DAY, 0]]
  assert hist_ts.indices.numpy()[:, 1].tolist() == [0, 1]
  assert parsed[features.ITEM_ID].shape == (3, 1)
