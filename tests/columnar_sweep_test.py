"""The columnar user sweep writes the examples the row-by-row specification describes."""

import json
import random

import pytest
import tensorflow as tf

from duia.ingest import columnar_sweep
from duia.ingest import example_encoding
from duia.ingest import mapping as mapping_lib
from duia.ingest import point_in_time
from duia.models import features
from duia.pipeline import configs

DAY = 86400


def _mapping(**derive):
  raw = json.load(open(configs.packaged_mapping("generated")))
  raw["derive"].update(derive)
  return mapping_lib.MappingConfig.from_dict(raw)


def _user():
  return dict(mapping_lib.PROFILE_FIELDS["users"], user_id="u", age_bucket="a2",
              pref_cat1=["c1:0.5", "c2:0.5"], pref_tag=[])


def _rows(rng: random.Random, n: int, ts_kind=int):
  """n annotated exposures of one user, with ties and repeated items."""
  rows = []
  for _ in range(n):
    ts = ts_kind(rng.randrange(0, 20) * DAY // 2 + rng.choice([0, 0, 7]))
    item = f"i{rng.randrange(12)}"
    rows.append({
        features.TIMESTAMP: ts, features.USER_ID: "u", features.ITEM_ID: item,
        features.CAT1: f"c{item[-1]}", features.CAT2: f"c{item[-1]}_s",
        features.AUTHOR_ID: "a", features.TAGS: [f"t{k}" for k in range(rng.randrange(3))],
        features.DURATION_S: rng.choice([30.0, 61.5]),
        features.ITEM_PRIOR_EXPOSURES: rng.randrange(50),
        features.ITEM_POPULARITY: rng.choice([features.TAIL_ITEM, features.HEAD_ITEM]),
        features.LABEL_VALID: rng.randrange(2), features.LABEL_WATCH: rng.random() * 40,
        features.LABEL_LIKE: rng.randrange(2)})
  rows.sort(key=lambda r: (r[features.TIMESTAMP], r[features.ITEM_ID]))
  return rows


def _specification(user, rows, mapping, **kwargs):
  return [(split, example_encoding.to_tf_example(example))
          for split, example in point_in_time.derive_user_examples(user, rows, mapping, **kwargs)]


def _columnar(user, rows, mapping, **kwargs):
  return [(split, tf.train.Example.FromString(serialized))
          for split, serialized in columnar_sweep.encode_user_examples(user, rows, mapping,
                                                                       **kwargs)]


@pytest.mark.parametrize("n,history_length,negatives_length", [
    (1, 100, 20), (7, 100, 20), (60, 5, 3), (200, 100, 20), (200, 1, 1)])
def test_same_examples_as_the_specification(n, history_length, negatives_length):
  mapping = _mapping(history_length=history_length, negatives_length=negatives_length,
                     activity_window_days=3)
  rows = _rows(random.Random(n), n)
  random.Random(0).shuffle(rows)  # the sweep sorts them itself
  expected = _specification(_user(), rows, mapping, low_activity_threshold=4)
  got = _columnar(_user(), rows, mapping, low_activity_threshold=4)
  assert len(got) == n
  for k, (want, have) in enumerate(zip(expected, got)):
    assert want == have, k


def test_histories_reach_their_cap_and_ties_see_only_earlier_rows():
  mapping = _mapping(history_length=3, negatives_length=2)
  rows = _rows(random.Random(3), 80)
  got = _columnar(_user(), rows, mapping)
  lengths = [len(e.features.feature[features.HIST_ITEM_IDS].bytes_list.value) for _, e in got]
  assert max(lengths) == 3 and min(lengths) == 0
  # Two rows at the first ts: neither is in the other's history.
  first_ts = rows[0][features.TIMESTAMP]
  for _, example in got:
    if example.features.feature[features.TIMESTAMP].int64_list.value[0] == first_ts:
      assert not example.features.feature[features.HIST_ITEM_IDS].bytes_list.value
      assert not example.features.feature[features.NEG_ITEM_IDS].bytes_list.value


def test_global_split_sparsified_rows_and_float_timestamps():
  raw = json.load(open(configs.packaged_mapping("generated")))
  raw["split"] = {"mode": "global", "eval_days": 2}
  mapping = mapping_lib.MappingConfig.from_dict(raw)
  rows = _rows(random.Random(5), 40, ts_kind=float)
  rows[3][point_in_time.SPLIT_KEY] = point_in_time.EVAL  # decided on the whole sequence
  eval_start = 6 * DAY
  expected = _specification(_user(), rows, mapping, eval_start_ts=eval_start)
  got = _columnar(_user(), rows, mapping, eval_start_ts=eval_start)
  assert got == expected
  assert {split for split, _ in got} == {point_in_time.TRAIN, point_in_time.EVAL}


def test_values_arrow_cannot_take_convert_as_the_reference_converts():
  mapping = _mapping(history_length=4, negatives_length=2)
  rows = _rows(random.Random(7), 30)
  for k, row in enumerate(rows):  # int ids in bytes features, bool labels, int durations
    row[features.ITEM_ID] = int(row[features.ITEM_ID][1:])
    row[features.LABEL_VALID] = bool(row[features.LABEL_VALID])
    row[features.DURATION_S] = 30 + k
  user = dict(_user(), user_id=12345)
  expected = _specification(user, rows, mapping)
  got = _columnar(user, rows, mapping)
  assert got == expected
  ids = got[-1][1].features.feature[features.HIST_ITEM_IDS].bytes_list.value
  assert ids and all(i.decode().isdigit() for i in ids)


def test_no_exposures_no_examples():
  assert list(columnar_sweep.encode_user_examples(_user(), [], _mapping())) == []
