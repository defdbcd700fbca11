"""User-activity deciles: the bins from history lengths, and TFMA's SQL putting rows in them."""

import numpy as np
import pyarrow as pa
from tfx_bsl.arrow import sql_util

from duia.models import features
from duia.quality import activity_deciles


def test_bins_are_inclusive_ranges_of_the_deciles_with_equal_ones_merged():
  lengths = [0] * 30 + list(range(1, 41)) + [100] * 30  # 30% empty, 30% at the cap
  ranges = activity_deciles.bins(lengths)
  assert ranges[0] == (0, 0) and ranges[-1][1] == 100
  assert all(lo <= hi for lo, hi in ranges)
  assert all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:]))  # no gap, no overlap
  # The three empty deciles are one bin, and the three capped ones join the 8th.
  assert ranges == [(0, 0), (1, 10), (11, 20), (21, 30), (31, 58), (59, 100)]
  assert activity_deciles.bins([5, 5, 5]) == [(0, 5)]


def _run_sql(sql, lists):
  batch = pa.RecordBatch.from_arrays(
      [pa.array(lists, type=pa.list_(pa.binary()))], [features.HIST_ITEM_IDS])
  # What TFMA's SQL slice extractor wraps around `slice_keys_sql`.
  query = sql_util.RecordBatchSQLSliceQuery(
      f"SELECT ARRAY({sql}) as slice_key FROM Examples as example;", batch.schema)
  return [row[0][0][1] for row in query.Execute(batch)]


def test_slice_sql_puts_each_history_length_in_its_bin():
  ranges = [(0, 0), (1, 2), (3, 9), (10, 10)]
  sql = activity_deciles.slice_sql(ranges)
  lists = [[], None, [b"a"], [b"a"] * 2, [b"a"] * 3, [b"a"] * 9, [b"a"] * 10]
  assert _run_sql(sql, lists) == ["d0 0-0", "d0 0-0", "d1 1-2", "d1 1-2", "d2 3-9",
                                  "d2 3-9", "d3 10-10"]
  assert activity_deciles.slice_names(ranges)[1] == "activity_decile=d1 1-2"


def test_bins_of_real_like_lengths_hold_about_a_tenth_each():
  rng = np.random.default_rng(0)
  lengths = np.minimum(rng.geometric(0.03, 5000), 100)
  ranges = activity_deciles.bins(lengths)
  shares = [np.mean((lengths >= lo) & (lengths <= hi)) for lo, hi in ranges]
  assert abs(sum(shares) - 1.0) < 1e-9
  assert max(shares[:-1]) < 0.2  # the capped top bin may be larger
