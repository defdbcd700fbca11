"""Ingestion on small fixtures: point-in-time features, labels, quarantine, mappings."""

import glob
import gzip
import json
import os

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv

from duia.ingest import ingest_outputs
from duia.ingest import mapping as mapping_lib
from duia.ingest import train_shuffle
from duia.models import features
from duia.pipeline import configs
from duia.validation import policy
from tests import ingested_examples

DAY = 86400


def _write_jsonl(path, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with gzip.open(path, "wt") as f:
    for row in rows:
      f.write(row if isinstance(row, str) else json.dumps(row))
      f.write("\n")


def _user(uid):
  return {"user_id": uid, "age_bucket": "a1", "gender": "f", "city": "c", "device": "d",
          "pref_cat1": ["c1:0.2", "c2:0.8"], "pref_cat2": [], "pref_tag": []}


def _item(iid, cat):
  return {"item_id": iid, "cat1": cat, "cat2": cat + "_s", "tags": ["t"], "duration_s": 60.0,
          "author_id": "a"}


def _exp(ts, uid, iid, watch, like=0):
  return {"ts": ts, "user_id": uid, "item_id": iid, "watch_time_s": watch, "like": like,
          "share": 0}


GOOD_EXPOSURES = [
    _exp(100, "u1", "i1", 20.0, 1),
    _exp(200, "u1", "i2", 5.0),
    _exp(300, "u1", "i3", 30.0),
    _exp(300, "u1", "i2", 50.0),
    _exp(400, "u1", "i1", 0.0),
    _exp(150, "u2", "i1", 12.0),
]
BAD_EXPOSURES = [
    "{not json",
    {"ts": 10, "item_id": "i1", "watch_time_s": 1.0, "like": 0},
    _exp(110, "u1", "i1", -3.0),
    _exp(120, "u9", "i1", 11.0),
    _exp(130, "u1", "i9", 11.0),
]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
  root = tmp_path_factory.mktemp("logs")
  _write_jsonl(str(root / "users.jsonl.gz"),
               [_user("u1"), _user("u2"), _user("u2"), "]]"])
  _write_jsonl(str(root / "items.jsonl.gz"),
               [_item("i1", "c1"), _item("i2", "c2"), _item("i3", "c1")])
  _write_jsonl(str(root / "exposures" / "part-0.jsonl.gz"), GOOD_EXPOSURES[:3] + BAD_EXPOSURES)
  _write_jsonl(str(root / "exposures" / "part-1.jsonl.gz"), GOOD_EXPOSURES[3:])
  raw = json.load(open(configs.packaged_mapping("generated")))
  raw["derive"].update(low_activity_threshold=2, tail_item_threshold=2)
  # Hand-made timestamps (100 .. 400 s) are far below the generated logs' range.
  raw["fields"]["exposures"]["ts"] = {"column": "ts", "type": "int", "min": 0}
  raw["split"] = {"mode": "global", "eval_days": 150 / DAY}  # eval = ts >= 250
  mapping = mapping_lib.MappingConfig.from_dict(raw)
  out = tmp_path_factory.mktemp("out")
  summary = ingest_outputs.run_ingestion(mapping, str(root), str(out))
  return summary, ingested_examples.read_examples(str(out)), str(out)


def _by_key(examples):
  return {(r[features.USER_ID][0], r[features.TIMESTAMP][0], r[features.ITEM_ID][0]): r
          for split in examples.values() for r in split}


def test_history_is_point_in_time(ingested):
  _, examples, _ = ingested
  rows = _by_key(examples)
  assert rows[("u1", 100, "i1")][features.HIST_ITEM_IDS] == []
  assert rows[("u1", 200, "i2")][features.HIST_ITEM_IDS] == ["i1"]
  # Two exposures at ts=300 see neither each other nor the future.
  for item in ("i2", "i3"):
    row = rows[("u1", 300, item)]
    assert row[features.HIST_ITEM_IDS] == ["i1"]
    assert row[features.HIST_CAT1] == ["c1"]
    assert row[features.NEG_ITEM_IDS] == ["i2"]
    # The ts of the earlier exposures, position for position.
    assert row[features.HIST_TS] == [100]
    assert row[features.NEG_TS] == [200]
  last = rows[("u1", 400, "i1")]
  assert sorted(last[features.HIST_ITEM_IDS][:2]) == ["i2", "i3"]  # both at ts=300
  assert last[features.HIST_ITEM_IDS][2] == "i1"  # most recent first
  assert last[features.HIST_CAT2][2] == "c1_s"
  assert last[features.HIST_TS] == [300, 300, 100]
  assert last[features.NEG_ITEM_IDS] == ["i2"] and last[features.NEG_TS] == [200]
  # Present (empty) before any behaviour, like the id lists.
  first = rows[("u1", 100, "i1")]
  assert first[features.HIST_TS] == [] and first[features.NEG_TS] == []
  for row in rows.values():
    assert len(row[features.HIST_TS]) == len(row[features.HIST_ITEM_IDS])
    assert len(row[features.NEG_TS]) == len(row[features.NEG_ITEM_IDS])


def test_labels_activity_and_popularity(ingested):
  _, examples, _ = ingested
  rows = _by_key(examples)
  first = rows[("u1", 100, "i1")]
  assert first[features.LABEL_VALID] == [1] and first[features.LABEL_LIKE] == [1]
  assert first[features.LABEL_WATCH] == [20.0]
  assert rows[("u1", 200, "i2")][features.LABEL_VALID] == [0]
  # Valid consumptions before ts: 0, 1, 1, 3 against a threshold of 2.
  expected_activity = {100: "low", 200: "low", 300: "low", 400: "high"}
  for (user, ts, _), row in rows.items():
    if user == "u1":
      assert row[features.USER_ACTIVITY] == [expected_activity[ts]], ts
  assert rows[("u1", 400, "i1")][features.USER_VALID_COUNT] == [3]
  # i1 was exposed at 100 (u1) and 150 (u2) before 400: two prior, head at threshold 2.
  assert rows[("u2", 150, "i1")][features.ITEM_PRIOR_EXPOSURES] == [1]
  assert rows[("u2", 150, "i1")][features.ITEM_POPULARITY] == ["tail"]
  assert rows[("u1", 400, "i1")][features.ITEM_PRIOR_EXPOSURES] == [2]
  assert rows[("u1", 400, "i1")][features.ITEM_POPULARITY] == ["head"]
  assert rows[("u1", 100, "i1")][features.PREF_CAT1] == ["c2", "c1"]  # by weight


def test_global_time_split(ingested):
  _, examples, _ = ingested
  assert sorted(r[features.TIMESTAMP][0] for r in examples["eval"]) == [300, 300, 400]
  assert all(r[features.TIMESTAMP][0] < 250 for r in examples["train"])


def test_bad_rows_are_quarantined_and_counted(ingested):
  summary, examples, out = ingested
  assert summary["quarantined"] == {
      "exposures/unparseable_row": 1,
      "exposures/missing_field:user_id": 1,
      "exposures/invalid_value:watch_time_s": 1,
      "exposures/unknown_user_id": 1,
      "exposures/unknown_item_id": 1,
      "users/unparseable_row": 1,
      "users/duplicate_user_id": 1,
  }
  assert summary["quarantined_total"] == 7
  # Nothing is lost: every exposure line is an example or a quarantined row.
  num_examples = sum(len(rows) for rows in examples.values())
  assert num_examples == len(GOOD_EXPOSURES)
  assert summary["examples"] == {"train": 3, "eval": 3}
  records = [json.loads(line) for path in glob.glob(os.path.join(out, "quarantine", "*.jsonl"))
             for line in open(path)]
  assert len(records) == 7
  bad_watch = [r for r in records if r["reason"] == "invalid_value:watch_time_s"]
  assert "-3.0" in bad_watch[0]["detail"] and '"u1"' in bad_watch[0]["row"]


def test_per_user_split_keeps_latest_fraction():
  from duia.ingest import point_in_time
  raw = json.load(open(configs.packaged_mapping("generated")))
  raw["split"] = {"mode": "per_user", "eval_fraction": 0.4}
  mapping = mapping_lib.MappingConfig.from_dict(raw)
  user = dict(mapping_lib.PROFILE_FIELDS["users"], user_id="u")
  rows = []
  for ts in (5, 1, 4, 2, 3):
    row = dict(_item(f"i{ts}", "c"), ts=ts, user_id="u", item_id=f"i{ts}",
               item_prior_exposures=0, item_popularity="tail")
    row.update(label_valid=1, label_watch=10.0, label_like=0)
    rows.append(row)
  splits = [(s, e[features.TIMESTAMP]) for s, e in
            point_in_time.derive_user_examples(user, rows, mapping)]
  assert splits == [("train", 1), ("train", 2), ("train", 3), ("eval", 4), ("eval", 5)]


def test_hist_and_neg_ts_stay_aligned_when_the_lists_are_capped():
  from duia.ingest import point_in_time
  raw = json.load(open(configs.packaged_mapping("generated")))
  raw["derive"].update(history_length=2, negatives_length=2)
  mapping = mapping_lib.MappingConfig.from_dict(raw)
  user = dict(mapping_lib.PROFILE_FIELDS["users"], user_id="u")
  rows = []
  for ts in range(1, 8):  # odd ts consumed, even ts skipped
    row = dict(_item(f"i{ts}", "c"), ts=ts * DAY, user_id="u", item_id=f"i{ts}",
               item_prior_exposures=0, item_popularity="tail")
    row.update(label_valid=ts % 2, label_watch=10.0, label_like=0)
    rows.append(row)
  last = list(point_in_time.derive_user_examples(user, rows, mapping))[-1][1]
  # Exposures 1..6 came before ts 7; the caps keep the 2 most recent of each.
  assert last[features.HIST_ITEM_IDS] == ["i5", "i3"]
  assert last[features.HIST_TS] == [5 * DAY, 3 * DAY]
  assert last[features.NEG_ITEM_IDS] == ["i6", "i4"]
  assert last[features.NEG_TS] == [6 * DAY, 4 * DAY]


def test_mapping_rejects_unknown_keys_and_missing_fields():
  raw = json.load(open(configs.packaged_mapping("generated")))
  with pytest.raises(ValueError, match="Unknown mapping keys"):
    mapping_lib.MappingConfig.from_dict(dict(raw, extra=1))
  broken = json.loads(json.dumps(raw))
  del broken["fields"]["exposures"]["user_id"]
  with pytest.raises(ValueError, match="lacks 'user_id'"):
    mapping_lib.MappingConfig.from_dict(broken)
  broken = json.loads(json.dumps(raw))
  broken["labels"]["label_valid"]["field"] = "nope"
  with pytest.raises(ValueError, match="reads field 'nope'"):
    mapping_lib.MappingConfig.from_dict(broken)


GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def _movielens_fixture(root, with_header):
  os.makedirs(root, exist_ok=True)
  flags = ["0"] * len(GENRES)
  comedy = list(flags)
  comedy[GENRES.index("Comedy")] = comedy[GENRES.index("Romance")] = "1"
  items = [
      "1|Amélie (2001)|01-Jan-2001||http://x|" + "|".join(comedy),
      "2|Unknown Film|||http://y|" + "|".join(flags),
  ]
  users = ["1|24|M|technician|85711", "2|53|F|other|94043"]
  ratings = ["1\t1\t5\t1000", "1\t2\t3\t2000", "2\t1\t4\t1500", "2\t2\tx\t1600"]
  headers = {
      "u.item": "movie id | movie title | release date | video release date | IMDb URL | "
                + " | ".join(GENRES),
      "u.user": "user-id|age|gender|occupation|zip code",
      "u.data": "user-id\titem-id\trating\ttimestamp",
  }
  for name, lines in (("u.item", items), ("u.user", users), ("u.data", ratings)):
    body = ([headers[name]] if with_header else []) + lines
    with open(os.path.join(root, name), "wb") as f:
      f.write(("\n".join(body) + "\n").encode("latin-1"))


@pytest.mark.parametrize("with_header", [True, False])
def test_movielens_format_ingests_by_config(tmp_path, with_header):
  data = str(tmp_path / "ml")
  _movielens_fixture(data, with_header)
  mapping = mapping_lib.load_mapping(configs.packaged_mapping("movielens-100k"))
  summary = ingest_outputs.run_ingestion(mapping, data, str(tmp_path / "out"))
  assert summary["quarantined"] == {"exposures/invalid_value:rating": 1}
  rows = _by_key(ingested_examples.read_examples(str(tmp_path / "out")))
  assert len(rows) == 3
  five_star = rows[("1", 1000, "1")]
  assert five_star[features.LABEL_VALID] == [1] and five_star[features.LABEL_LIKE] == [1]
  assert five_star[features.CAT1] == ["Comedy"]
  assert five_star[features.TAGS] == ["Comedy", "Romance"]
  assert five_star[features.CAT2] == ["2001"]
  assert five_star[features.AGE_BUCKET] == ["lt25"]
  assert five_star[features.CITY] == ["857"]
  three_star = rows[("1", 2000, "2")]
  assert three_star[features.LABEL_VALID] == [0]
  assert three_star[features.CAT1] == ["unknown"] and three_star[features.CAT2] == ["unknown"]
  assert three_star[features.HIST_ITEM_IDS] == ["1"]


@pytest.mark.slow  # the whole MovieLens 100K through the ingestion (~40 s)
def test_real_movielens_ingests_without_loss(movielens_dir, tmp_path):
  mapping = mapping_lib.load_mapping(configs.packaged_mapping("movielens-100k"))
  summary = ingest_outputs.run_ingestion(mapping, movielens_dir, str(tmp_path))
  assert summary["quarantined_total"] == 0
  assert summary["examples"]["train"] + summary["examples"]["eval"] == 100_000
  # per-user split: about 20% of each user's ratings are eval.
  assert summary["examples"]["eval"] == pytest.approx(20_000, rel=0.02)
  # Real data passes the curated schema the pipeline validates against.
  schema = tfdv.load_schema_text(policy.CURATED_SCHEMA)
  for split in ("train", "eval"):
    statistics = tfdv.generate_statistics_from_tfrecord(
        str(tmp_path / "examples" / f"Split-{split}" / "*"))
    assert not tfdv.validate_statistics(statistics, schema).anomaly_info, split


def test_train_split_is_shuffled_across_users(tmp_path):
  from duia.data import generator
  data = str(tmp_path / "data")
  generator.generate(data, generator.GeneratorConfig(num_users=50, num_exposures=4000, seed=1))
  mapping = mapping_lib.load_mapping(configs.packaged_mapping("generated"))
  runs = []
  for name in ("a", "b"):
    ingest_outputs.run_ingestion(mapping, data, str(tmp_path / name))
    (path,) = glob.glob(str(tmp_path / name / "examples" / "Split-train" / "*.gz"))
    runs.append([r.numpy() for r in tf.data.TFRecordDataset(path, compression_type="GZIP")])

  def canonical(records):  # the encoder's map order is not fixed
    return sorted(tf.train.Example.FromString(r).SerializeToString(deterministic=True)
                  for r in records)

  assert canonical(runs[0]) == canonical(runs[1])
  users = [tf.train.Example.FromString(r).features.feature[features.USER_ID].bytes_list.value[0]
           for r in runs[0]]
  # The sweep emits each user's examples together (49 changes of user for 50
  # users); shuffled in chunks of at most SHUFFLE_CHUNK, the user changes at
  # almost every chunk, and the first quarter of the file has most users.
  changes = sum(a != b for a, b in zip(users, users[1:]))
  assert changes >= 0.8 * len(users) / train_shuffle.SHUFFLE_CHUNK
  assert len(set(users[:len(users) // 4])) >= 25


def test_a_shuffled_chunk_unpacks_to_its_records():
  records = [b"", b"a", bytes(range(256)) * 40, b"\x00\x00\x00\x00"]
  blob = train_shuffle.pack(records)
  assert list(train_shuffle.unpack(blob)) == records
  # A user's neighbouring examples share most of their bytes: the blob the
  # shuffle holds is much smaller than the records.
  similar = [bytes(range(256)) * 10 + bytes([i]) for i in range(16)]
  assert len(train_shuffle.pack(similar)) < sum(map(len, similar)) / 10
  assert list(train_shuffle.unpack(train_shuffle.pack([]))) == []
