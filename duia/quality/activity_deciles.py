"""AUC by user-activity decile: TFMA slices by the history length at each exposure.

Two slices (low-/high-active) hide where along the activity axis a model wins.
The harness also slices by decile of the user's activity at the exposure,
measured as the number of valid consumptions in `hist_item_ids` (what the
ingestion saw strictly before the exposure, capped at `derive.history_length`),
so the bins need no new feature: TFMA's `slice_keys_sql` buckets the array
length of the raw examples, and its paired intervals come as for every slice.

Edges are deciles of the eval rows' history lengths; equal edges (a cap, many
empty histories) merge, so there may be fewer than ten bins. Each bin is named
"d<k> <lo>-<hi>" (history lengths lo..hi inclusive), which sorts in order.
"""

import glob
from typing import List, Sequence, Tuple

import numpy as np

from duia.models import features

SLICE_COLUMN = "activity_decile"
DECILES = 10


def history_lengths(raw_eval_pattern: str) -> np.ndarray:
  """The `hist_item_ids` length of every raw eval example (gzipped tf.Examples)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = sorted(glob.glob(raw_eval_pattern))
  if not files:
    raise FileNotFoundError(f"No eval examples match {raw_eval_pattern}")
  spec = {features.HIST_ITEM_IDS: tf.io.VarLenFeature(tf.string)}
  lengths = []
  data = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096)
  for batch in data.map(lambda x: tf.io.parse_example(x, spec)):
    ids = batch[features.HIST_ITEM_IDS]
    lengths.append(tf.math.bincount(tf.cast(ids.indices[:, 0], tf.int32),
                                    minlength=tf.cast(ids.dense_shape[0], tf.int32)).numpy())
  return np.concatenate(lengths)


def bins(lengths: Sequence[int]) -> List[Tuple[int, int]]:
  """Inclusive (lo, hi) history-length ranges, one per distinct decile.

  The k-th decile's upper edge e_k is inclusive: bins [0, e_1], [e_1 + 1, e_2],
  ..., [e_9 + 1, max]; a bin left empty by equal edges is dropped.
  """
  lengths = np.asarray(lengths)
  edges = [int(np.floor(q)) for q in np.quantile(lengths, np.linspace(0, 1, DECILES + 1)[1:-1])]
  edges.append(int(lengths.max()))
  out, lo = [], 0
  for edge in edges:
    if edge >= lo:
      out.append((lo, edge))
      lo = edge + 1
  return out


def label(index: int, lo: int, hi: int) -> str:
  return f"d{index} {lo}-{hi}"


def slice_sql(ranges: Sequence[Tuple[int, int]]) -> str:
  """TFMA `slice_keys_sql` putting each example in its history-length bin.

  An empty history may arrive as a missing value: COALESCE counts it as 0.
  """
  length = f"COALESCE(ARRAY_LENGTH(example.{features.HIST_ITEM_IDS}), 0)"
  cases = " ".join(f"WHEN {length} <= {hi} THEN '{label(i, lo, hi)}'"
                   for i, (lo, hi) in enumerate(ranges[:-1]))
  last = label(len(ranges) - 1, *ranges[-1])
  return f"SELECT STRUCT(CASE {cases} ELSE '{last}' END AS {SLICE_COLUMN})"


def slice_names(ranges: Sequence[Tuple[int, int]]) -> List[str]:
  """The slice names TFMA's results carry for `slice_sql(ranges)`, in order."""
  return [f"{SLICE_COLUMN}={label(i, lo, hi)}" for i, (lo, hi) in enumerate(ranges)]
