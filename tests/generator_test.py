"""Tests of the synthetic exposure-log generator (docs/design.md §3 contract)."""

import collections
import dataclasses
import gzip
import json
import math
import os
import re

import numpy as np
import pytest

from duia.data import generator

USER_KEYS = {"user_id": str, "age_bucket": str, "gender": str, "city": str,
             "device": str, "pref_cat1": list, "pref_cat2": list,
             "pref_tag": list}
ITEM_KEYS = {"item_id": str, "cat1": str, "cat2": str, "tags": list,
             "duration_s": float, "author_id": str}
EXPOSURE_KEYS = {"ts": int, "user_id": str, "item_id": str,
                 "watch_time_s": float, "like": int, "share": int,
                 "request_id": str, "position": int}
SMALL = dict(num_users=200, num_items=300, num_exposures=3000)


def _read(path):
  with gzip.open(path, "rt", encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def _exposures(out_dir, summary):
  rows = []
  for name in summary["files"]:
    if name.startswith("exposures/"):
      rows.extend(_read(os.path.join(out_dir, name)))
  return rows


@pytest.fixture(scope="module")
def default_data(tmp_path_factory):
  """Default config, generated once: (config, summary, users, items, rows)."""
  out_dir = str(tmp_path_factory.mktemp("default"))
  config = generator.GeneratorConfig()
  summary = generator.generate(out_dir, config)
  users = _read(os.path.join(out_dir, "users.jsonl.gz"))
  items = _read(os.path.join(out_dir, "items.jsonl.gz"))
  return config, summary, users, items, _exposures(out_dir, summary)


def _file_bytes(out_dir):
  found = {}
  for root, _, names in os.walk(out_dir):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        found[os.path.relpath(path, out_dir)] = f.read()
  return found


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path):
  config = generator.GeneratorConfig(**SMALL, seed=7)
  for name in ("a", "b"):
    generator.generate(str(tmp_path / name), config)
  generator.generate(str(tmp_path / "c"),
                     generator.GeneratorConfig(**SMALL, seed=8))
  first, second = _file_bytes(tmp_path / "a"), _file_bytes(tmp_path / "b")
  other = _file_bytes(tmp_path / "c")
  assert sorted(first) == ["exposures/part-00000.jsonl.gz", "items.jsonl.gz",
                           "summary.json", "users.jsonl.gz"]
  assert first == second
  for name in ("exposures/part-00000.jsonl.gz", "items.jsonl.gz",
               "users.jsonl.gz"):
    assert first[name] != other[name], name
    # Two runs in the same second match anyway; a zero gzip mtime is what
    # keeps runs on different days identical.
    assert first[name][4:8] == b"\0\0\0\0", name


def test_rows_follow_the_contract(default_data):
  config, _, users, items, rows = default_data
  for table, keys in ((users, USER_KEYS), (items, ITEM_KEYS),
                      (rows, EXPOSURE_KEYS)):
    for row in table:
      assert set(row) == set(keys), row
      for key, kind in keys.items():
        # Exact types: a bool is not an int and an int is not a float here.
        assert type(row[key]) is kind, (key, row)
  assert len(users) == config.num_users and len(items) == config.num_items
  assert len(rows) == config.num_exposures
  for user in users:
    for key in ("pref_cat1", "pref_cat2", "pref_tag"):
      for entry in user[key]:
        name, weight = entry.rsplit(":", 1)
        assert name and 0.0 <= float(weight) <= 1.0, entry
  for item in items:
    assert item["cat2"].startswith(item["cat1"] + "_s")
    assert item["duration_s"] > 0 and item["tags"]
    assert all(isinstance(tag, str) for tag in item["tags"])
  user_ids = {u["user_id"] for u in users}
  item_ids = {i["item_id"] for i in items}
  assert len(user_ids) == len(users) and len(item_ids) == len(items)
  end = config.start_ts + config.days * 86400
  for row in rows:
    assert row["user_id"] in user_ids and row["item_id"] in item_ids
    assert config.start_ts <= row["ts"] < end
    assert row["watch_time_s"] >= 0.0
    assert row["like"] in (0, 1) and row["share"] in (0, 1)
    assert row["position"] >= 0


def test_requests_are_pages_of_one_user_in_time_order(default_data):
  rows = default_data[4]
  requests = collections.defaultdict(list)
  for row in rows:
    requests[row["request_id"]].append(row)
  assert 1 < len(requests) < len(rows)
  for page in requests.values():
    assert len({row["user_id"] for row in page}) == 1
    page.sort(key=lambda row: row["position"])
    assert [row["position"] for row in page] == list(range(len(page)))
    assert [row["ts"] for row in page] == sorted(row["ts"] for row in page)


def test_low_active_users_are_a_third_and_see_fewer_exposures(default_data):
  config, summary, users, _, rows = default_data
  world = generator.build_world(config)
  assert 0.25 <= summary["low_active_user_share"] <= 0.35
  assert summary["num_low_active_users"] == int(world.low_active.sum())
  low_ids = set(world.user_ids[world.low_active])
  counts = collections.Counter(row["user_id"] for row in rows)
  low = [counts[u["user_id"]] for u in users if u["user_id"] in low_ids]
  high = [counts[u["user_id"]] for u in users if u["user_id"] not in low_ids]
  assert np.mean(low) < np.mean(high) / 4
  # Long tail: the busiest 10% of users see far more than the median user.
  per_user = np.array(sorted(counts.values()))
  assert per_user[-len(per_user) // 10:].sum() > 0.3 * len(rows)
  # Low-active profiles are sparse.
  def empty_share(group):
    return np.mean([not u["pref_cat1"] for u in users if group(u["user_id"])])
  assert empty_share(lambda u: u in low_ids) > 0.4
  assert empty_share(lambda u: u not in low_ids) == 0.0


def test_top_tenth_of_items_takes_about_ninety_percent(default_data):
  config, summary, _, _, rows = default_data
  counts = collections.Counter(row["item_id"] for row in rows)
  top = math.ceil(0.1 * config.num_items)
  share = sum(sorted(counts.values(), reverse=True)[:top]) / len(rows)
  assert 0.85 <= share <= 0.95
  assert share == pytest.approx(summary["top10pct_item_exposure_share"])


def test_watch_time_follows_declared_interests(default_data):
  config, summary, users, items, rows = default_data
  world = generator.build_world(config)
  high_ids = set(world.user_ids[~world.low_active])
  prefs = {u["user_id"]: {entry.split(":")[0] for entry in u["pref_cat1"]}
           for u in users if u["user_id"] in high_ids and u["pref_cat1"]}
  cat1 = {i["item_id"]: i["cat1"] for i in items}
  matched, unmatched = [], []
  for row in rows:
    if row["user_id"] in prefs:
      valid = row["watch_time_s"] >= config.valid_watch_s
      (matched if cat1[row["item_id"]] in prefs[row["user_id"]]
       else unmatched).append(valid)
  assert len(matched) > 1000 and len(unmatched) > 1000
  assert np.mean(matched) > np.mean(unmatched) + 0.25
  valid_rate = np.mean([row["watch_time_s"] >= 10 for row in rows])
  assert 0.35 <= valid_rate <= 0.55
  assert valid_rate == pytest.approx(summary["valid_rate"])
  like_rate = np.mean([row["like"] for row in rows])
  share_rate = np.mean([row["share"] for row in rows])
  assert 0.0 < share_rate < like_rate < 0.2


def test_shards_only_cut_the_stream(tmp_path):
  # Chunks of 1500 straddle the shard boundaries.
  base = dict(SMALL, num_exposures=4500, chunk_size=1500)
  summary = generator.generate(
      str(tmp_path / "sharded"),
      generator.GeneratorConfig(**base, shard_size=1000))
  shards = sorted(os.listdir(tmp_path / "sharded" / "exposures"))
  assert shards == [f"part-{k:05d}.jsonl.gz" for k in range(5)]
  assert [f"exposures/{name}" for name in shards] == summary["files"][2:]
  sizes = [len(_read(tmp_path / "sharded" / "exposures" / name))
           for name in shards]
  assert sizes == [1000, 1000, 1000, 1000, 500]
  whole = generator.generate(
      str(tmp_path / "whole"), generator.GeneratorConfig(**base))
  assert len(whole["files"]) == 3
  assert (_exposures(str(tmp_path / "sharded"), summary)
          == _exposures(str(tmp_path / "whole"), whole))


def test_regenerating_removes_stale_shards(tmp_path):
  generator.generate(str(tmp_path),
                     generator.GeneratorConfig(**SMALL, shard_size=500))
  generator.generate(str(tmp_path), generator.GeneratorConfig(**SMALL))
  assert os.listdir(tmp_path / "exposures") == ["part-00000.jsonl.gz"]


@pytest.mark.parametrize("field,value", [
    ("num_users", -1),
    ("num_users", 2.5),
    ("num_exposures", 0),
    ("num_items", 100),  # fewer than num_groups * num_subgroups = 128
    ("shard_size", 0),
    ("days", 0),
    ("seed", -3),
    ("seed", True),
    ("low_active_fraction", -0.1),
    ("low_active_fraction", 1.5),
    ("interest_feed_fraction", 2.0),
    ("popularity_exponent", -1.0),
    ("popularity_exponent", float("nan")),
    ("low_active_exposure_ratio", 0.0),
    ("mean_session_length", 0.5),
    ("activity_exponent", -0.5),
])
def test_config_rejects_bad_values(field, value):
  with pytest.raises(ValueError, match=re.escape(f"{field}={value!r}")):
    generator.GeneratorConfig(**{field: value})


def test_config_accepts_edge_values():
  config = generator.GeneratorConfig(low_active_fraction=0.0,
                                     interest_feed_fraction=1.0,
                                     num_items=128)
  assert config.num_items == 128


def test_a_zipf_activity_tail_leaves_most_users_with_few_exposures():
  """`activity_exponent` > 0: a long tail of users seen a few times, and the rest
  of the world (items, interests, who is low-active) as without it."""
  base = generator.GeneratorConfig(num_users=500, num_exposures=20000, seed=3)
  zipf = dataclasses.replace(base, activity_exponent=1.0)
  plain_world, zipf_world = generator.build_world(base), generator.build_world(zipf)
  np.testing.assert_array_equal(plain_world.low_active, zipf_world.low_active)
  np.testing.assert_array_equal(plain_world.interest_sub, zipf_world.interest_sub)
  def sessions(world):
    return np.diff(np.concatenate([[0.0], world.user_cdf]))
  plain, tail = np.sort(sessions(plain_world)), np.sort(sessions(zipf_world))
  # The busiest 1% of users open the app far more often under Zipf, the median less.
  top = len(tail) // 100
  assert tail[-top:].sum() > 3 * plain[-top:].sum()
  assert np.median(tail) < np.median(plain) / 2
