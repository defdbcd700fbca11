"""One user's point-in-time examples as Arrow columns, encoded in one call.

`point_in_time.derive_user_examples` is the specification: a loop over the
user's exposures in time order that keeps the history, the negatives and the
activity window as deques, and builds each example's lists in Python. That loop
was most of the ingestion's own time at 1M rows (four list copies of up to
`history_length` values per example, then a Python list per value for Arrow).
This module computes the same examples column by column:

- an example's history is the last `history_length` valid consumptions with a
  ts strictly before its own: with the valid rows' ts sorted, their count is
  `searchsorted(valid_ts, ts, "left")`, so each example's history is a slice
  of the valid rows, read backwards (most recent first);
- its negatives likewise, over the rows without a valid consumption;
- `user_valid_count` is the number of valid ts in `(ts - window, ts)`: two
  searchsorted calls.

The slices are gathered with one `take` per list feature into Arrow list
columns and tfx_bsl's C++ encoder writes the tf.Examples, so no per-value
Python runs. `tests/columnar_sweep_test.py` checks the protos equal
`example_encoding.to_tf_example` of the specification's dicts, example for
example.
"""

import math
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
from tfx_bsl.coders import example_coder

from duia.ingest import example_encoding
from duia.ingest import mapping as mapping_lib
from duia.ingest import point_in_time
from duia.models import features

_DAY_S = 86400.0
# Per-exposure fields an example copies from its (annotated) row.
_ROW_FIELDS = ([features.TIMESTAMP, features.USER_ID, features.ITEM_ID,
                features.ITEM_PRIOR_EXPOSURES, features.ITEM_POPULARITY, features.TAGS,
                features.DURATION_S] + features.ITEM_CATEGORICAL + features.LABEL_KEYS)
# Per-user fields, the same on each of the user's examples.
_USER_FIELDS = features.USER_CATEGORICAL + features.USER_PREFERENCE_LISTS


def _values(values: Sequence[Any], kind: str) -> pa.Array:
  """A flat Arrow array of one kind, converted as `example_encoding` converts."""
  value_type = example_encoding.ARROW_TYPES[kind].value_type
  try:
    if kind == "bytes":
      return pa.array(values, type=pa.string()).cast(value_type)
    return pa.array(values, type=value_type)
  except (pa.ArrowInvalid, pa.ArrowTypeError):
    convert = example_encoding.CONVERT[kind]
    return pa.array([convert(v) for v in values], type=value_type)


def _one_per_row(values: Sequence[Any], kind: str) -> pa.Array:
  """[n] scalars or lists -> a list column with one entry per row."""
  if any(isinstance(v, list) for v in values):
    return example_encoding.column(values, kind)
  offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32))
  return pa.ListArray.from_arrays(offsets, _values(values, kind))


def _repeated(value: Any, kind: str, n: int) -> pa.Array:
  """The user's one value (a scalar or a list) as a list column of n rows."""
  one = example_encoding.column([value], kind)
  return one.take(pa.array(np.zeros(n, dtype=np.int64)))


def _recent_first(values: pa.Array, ends: np.ndarray, length: int) -> pa.Array:
  """Row k gets values[max(0, ends[k] - length):ends[k]] reversed, as a list column."""
  starts = np.maximum(ends - length, 0)
  sizes = ends - starts
  offsets = np.zeros(len(ends) + 1, dtype=np.int64)
  np.cumsum(sizes, out=offsets[1:])
  # Position p of row k's list is value ends[k] - 1 - (p - offsets[k]).
  within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], sizes)
  indices = np.repeat(ends - 1, sizes) - within
  return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)),
                                  values.take(pa.array(indices)))


def user_example_columns(
    user: Mapping[str, Any], exposures: Sequence[Mapping[str, Any]],
    mapping: mapping_lib.MappingConfig, eval_start_ts: float = math.inf,
    low_activity_threshold: Optional[int] = None) -> Tuple[List[str], Dict[str, pa.Array]]:
  """The split and the columns of each of one user's examples, in sweep order.

  Args and semantics: as `point_in_time.derive_user_examples`.

  Returns:
    (split name per example, {feature key: list column}) with every key of
    `example_encoding.FEATURE_TYPES`.
  """
  derive = mapping.derive
  if low_activity_threshold is None:
    low_activity_threshold = derive.low_activity_threshold
  rows = sorted(exposures, key=point_in_time.sweep_order)
  names = point_in_time.split_names(rows, mapping.split, eval_start_ts)
  splits = [row.get(point_in_time.SPLIT_KEY, name) for row, name in zip(rows, names)]
  n = len(rows)

  ts = [row[features.TIMESTAMP] for row in rows]
  ts_array = np.asarray(ts, dtype=np.float64)
  valid = np.fromiter((bool(row[features.LABEL_VALID]) for row in rows), bool, n)
  valid_rows = np.flatnonzero(valid)
  negative_rows = np.flatnonzero(~valid)
  # Entries made strictly before each row's ts (a tie group sees none of itself).
  history_ends = np.searchsorted(ts_array[valid_rows], ts_array, side="left")
  negative_ends = np.searchsorted(ts_array[negative_rows], ts_array, side="left")
  window_starts = np.searchsorted(ts_array[valid_rows],
                                  ts_array - derive.activity_window_days * _DAY_S,
                                  side="right")
  valid_counts = history_ends - window_starts

  def gathered(row_indices: np.ndarray, key: Optional[str], kind: str) -> pa.Array:
    picked = [ts[k] if key is None else rows[k][key] for k in row_indices]
    return _values(picked, kind)

  history_length, negatives_length = derive.history_length, derive.negatives_length
  columns = {
      features.HIST_ITEM_IDS: _recent_first(
          gathered(valid_rows, features.ITEM_ID, "bytes"), history_ends, history_length),
      features.HIST_CAT1: _recent_first(
          gathered(valid_rows, features.CAT1, "bytes"), history_ends, history_length),
      features.HIST_CAT2: _recent_first(
          gathered(valid_rows, features.CAT2, "bytes"), history_ends, history_length),
      features.HIST_TS: _recent_first(
          gathered(valid_rows, None, "int"), history_ends, history_length),
      features.NEG_ITEM_IDS: _recent_first(
          gathered(negative_rows, features.ITEM_ID, "bytes"), negative_ends, negatives_length),
      features.NEG_TS: _recent_first(
          gathered(negative_rows, None, "int"), negative_ends, negatives_length),
      features.USER_VALID_COUNT: _one_per_row(valid_counts.tolist(), "int"),
      features.USER_ACTIVITY: _one_per_row(
          [features.LOW_ACTIVE if c < low_activity_threshold else features.HIGH_ACTIVE
           for c in valid_counts.tolist()], "bytes"),
  }
  for key in _USER_FIELDS:
    columns[key] = _repeated(user[key], example_encoding.FEATURE_TYPES[key], n)
  for key in _ROW_FIELDS:
    columns[key] = _one_per_row([row[key] for row in rows], example_encoding.FEATURE_TYPES[key])
  return splits, columns


def encode_user_examples(
    user: Mapping[str, Any], exposures: Sequence[Mapping[str, Any]],
    mapping: mapping_lib.MappingConfig, eval_start_ts: float = math.inf,
    low_activity_threshold: Optional[int] = None) -> Iterator[Tuple[str, bytes]]:
  """(split, serialized tf.Example) of each of one user's exposures, in sweep order.

  The same examples as `point_in_time.derive_user_examples` encoded by
  `example_encoding.to_tf_example`; see the module docstring for how.
  """
  if not exposures:
    return
  splits, columns = user_example_columns(user, exposures, mapping, eval_start_ts,
                                         low_activity_threshold)
  names = list(example_encoding.FEATURE_TYPES)
  batch = pa.RecordBatch.from_arrays([columns[key] for key in names], names)
  yield from zip(splits, example_coder.RecordBatchToExamples(batch))
