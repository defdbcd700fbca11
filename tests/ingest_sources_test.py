"""Ingestion of rating logs without user/item tables, `::` files, and sparsify."""

import glob
import gzip
import json
import os

import pytest
import tensorflow as tf

from duia.ingest import ingest_outputs
from duia.ingest import example_encoding
from duia.ingest import mapping as mapping_lib
from duia.ingest import point_in_time
from duia.ingest import profiles
from duia.models import config as model_config
from duia.models import features
from duia.pipeline import configs
from duia.pipeline import runtime_config
from tests import ingested_examples

Y2000, Y2001, Y2002 = 946684800, 978307200, 1009843200  # Jan 1st, 00:00 UTC


def _key(row):
  return row[features.USER_ID][0], row[features.TIMESTAMP][0], row[features.ITEM_ID][0]


def _by_key(examples):
  return {_key(r): r for rows in examples.values() for r in rows}


def _packaged(name):
  return mapping_lib.load_mapping(configs.packaged_mapping(name))


def _write_ratings(path, ratings):
  """MovieLens 1M's ratings.dat: UserID::MovieID::Rating::Timestamp, no header."""
  with open(path, "w") as f:
    for row in ratings:
      f.write(row if isinstance(row, str) else "::".join(str(v) for v in row))
      f.write("\n")


# --- MovieLens 1M ---------------------------------------------------------------

ML1M_RATINGS = [
    (1, 10, 5, Y2000 + 100), (1, 20, 3, Y2000 + 200), (1, 30, 4, Y2001 + 100),
    (1, 40, 2, Y2001 + 200), (1, 50, 5, Y2002 + 100),
    (2, 20, 4, Y2000 + 50), (2, 30, 1, Y2001 + 50), (2, 10, 5, Y2001 + 300),
    (2, 50, 4, Y2002 + 50), (2, 40, 5, Y2002 + 200),
    "3::10::x::978300000",  # not a rating
    "3::10::5",  # a column short
]


@pytest.fixture(scope="module")
def movielens_1m(tmp_path_factory):
  data = tmp_path_factory.mktemp("ml-1m")
  _write_ratings(str(data / "ratings.dat"), ML1M_RATINGS)
  out = str(tmp_path_factory.mktemp("out"))
  summary = ingest_outputs.run_ingestion(_packaged("movielens-1m"), str(data), out)
  return summary, ingested_examples.read_examples(out)


def test_movielens_1m_counts_and_quarantine(movielens_1m):
  summary, examples = movielens_1m
  # No users or items table: no id is unknown; only the two bad lines go.
  assert summary["quarantined"] == {"exposures/invalid_value:rating": 1,
                                    "exposures/unparseable_row": 1}
  assert summary["examples"] == {"train": 8, "eval": 2}
  # Per user, the last 20% of five ratings (one) is eval.
  assert sorted(_key(r) for r in examples["eval"]) == [
      ("1", Y2002 + 100, "50"), ("2", Y2002 + 200, "40")]


def test_movielens_1m_labels_and_derived_profiles(movielens_1m):
  _, examples = movielens_1m
  rows = _by_key(examples)
  for user, item, rating, ts in ML1M_RATINGS[:10]:
    row = rows[(str(user), ts, str(item))]
    assert row[features.LABEL_VALID] == [int(rating >= 4)]
    assert row[features.LABEL_LIKE] == [int(rating == 5)]
    assert row[features.LABEL_WATCH] == [0.0]
    # Defaults where nothing is derived; the profile fields are all present.
    assert row[features.CAT1] == [""] and row[features.TAGS] == []
    assert row[features.AGE_BUCKET] == [""] and row[features.PREF_CAT1] == []
  # cat2 = the year of the item's first rating, whoever gave it.
  first_year = {"10": "2000", "20": "2000", "30": "2001", "40": "2001", "50": "2002"}
  for (_, _, item), row in rows.items():
    assert row[features.CAT2] == [first_year[item]], item
  last = rows[("1", Y2002 + 100, "50")]
  assert last[features.HIST_ITEM_IDS] == ["30", "10"]
  assert last[features.HIST_CAT2] == ["2001", "2000"]
  assert last[features.NEG_ITEM_IDS] == ["40", "20"]
  assert last[features.ITEM_PRIOR_EXPOSURES] == [1]  # user 2 at Y2002 + 50


# --- Amazon reviews ---------------------------------------------------------------


def _review(user, item, overall, ts, **extra):
  return dict({"reviewerID": user, "asin": item, "overall": overall, "unixReviewTime": ts,
               "reviewText": "..."}, **extra)


AMAZON_GZ = [
    _review("U1", "A", 5.0, 1000),
    _review("U2", "A", 3.0, 2000, category="Books"),
    _review("U1", "C", 4.0, 1500, category=["Electronics", "Computers"]),
    _review("U2", "D", 5.0, 2400, category=[["Toys", "Dolls"]]),  # 2014's list of paths
    _review("U3", "D", 4.0, 2500, category="Games"),
    {"reviewerID": "U3", "overall": 4.0, "unixReviewTime": 10},
    _review("U3", "A", "five", 20),
]
AMAZON_PLAIN = [
    _review("U3", "B", 2.0, 500),
    _review("U1", "B", 4.0, 4000),
    _review("U3", "A", 1.0, 3500, category=""),
]


@pytest.fixture(scope="module")
def amazon(tmp_path_factory):
  data = tmp_path_factory.mktemp("amazon")
  with gzip.open(str(data / "reviews_Books_5.json.gz"), "wt") as f:
    f.writelines(json.dumps(r) + "\n" for r in AMAZON_GZ)
  with open(str(data / "more_reviews.json"), "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in AMAZON_PLAIN)
  out = str(tmp_path_factory.mktemp("out"))
  summary = ingest_outputs.run_ingestion(_packaged("amazon-reviews"), str(data), out)
  return summary, ingested_examples.read_examples(out), out


def test_amazon_reads_gzipped_and_plain_files_and_splits_per_user(amazon):
  summary, examples, _ = amazon
  assert summary["examples"] == {"train": 6, "eval": 2}
  # U1 and U3 have three reviews (one eval); U2's two round to none.
  assert sorted(_key(r) for r in examples["eval"]) == [("U1", 4000, "B"), ("U3", 3500, "A")]


def test_amazon_labels_come_from_overall(amazon):
  _, examples, _ = amazon
  rows = _by_key(examples)
  for review in AMAZON_GZ[:5] + AMAZON_PLAIN:
    row = rows[(review["reviewerID"], review["unixReviewTime"], review["asin"])]
    assert row[features.LABEL_VALID] == [int(review["overall"] >= 4)]
    assert row[features.LABEL_LIKE] == [int(review["overall"] == 5)]


def test_amazon_cat1_is_the_earliest_category_of_the_item(amazon):
  _, examples, _ = amazon
  cat1 = {r[features.ITEM_ID][0]: r[features.CAT1] for rows in examples.values() for r in rows}
  # A: its earliest review has none and a later one is empty, so "Books";
  # B: never one, the default; C and D: the top of their earliest category path.
  assert cat1 == {"A": ["Books"], "B": ["unknown"], "C": ["Electronics"], "D": ["Toys"]}


def test_private_row_keys_never_reach_an_example():
  mapping = _packaged("amazon-reviews").with_sparsify(1, share=1.0)
  rows = []
  for ts, category in ((3, "Toys"), (1, None), (2, "Books")):
    row = {"ts": ts, "user_id": "u", "item_id": "i", "rating": 5.0, "label_valid": 1,
           "label_like": 1, "label_watch": 0.0}
    if category:
      row[mapping_lib.CARRIED_KEY] = {"items": {"cat1": category}}
    rows.append(row)
  item = profiles.build_profile("items", "i", rows, mapping)
  assert item == dict(mapping_lib.PROFILE_FIELDS["items"], item_id="i", cat1="Books")
  annotated = point_in_time.annotate_item_exposures(item, rows, mapping.derive)
  kept, dropped, _ = point_in_time.cut_user_exposures(annotated, mapping, sparsify=True)
  assert dropped == 1 and all(point_in_time.SPLIT_KEY in r for r in kept)
  user = profiles.build_profile("users", "u", kept, mapping)
  examples = list(point_in_time.derive_user_examples(user, kept, mapping))
  assert [(split, e["ts"], e["cat1"]) for split, e in examples] == [
      ("train", 1, "Books"), ("eval", 3, "Books")]
  for _, example in examples:
    assert set(example) == set(example_encoding.FEATURE_TYPES)


def test_amazon_bad_reviews_are_quarantined_with_their_reason(amazon):
  summary, _, out = amazon
  assert summary["quarantined"] == {"exposures/missing_field:item_id": 1,
                                    "exposures/invalid_value:rating": 1}
  assert summary["quarantined_total"] == 2
  records = [json.loads(line) for path in glob.glob(os.path.join(out, "quarantine", "*.jsonl"))
             for line in open(path)]
  by_reason = {r["reason"]: r for r in records}
  assert "'five'" in by_reason["invalid_value:rating"]["detail"]
  assert "'asin'" in by_reason["missing_field:item_id"]["detail"]
  assert json.loads(by_reason["missing_field:item_id"]["row"])["unixReviewTime"] == 10


# --- sparsify ------------------------------------------------------------------------

NUM_USERS, PER_USER, NUM_ITEMS = 12, 10, 8


def _sparse_ratings():
  """Ten ratings per user at distinct times, items and ratings varied."""
  ratings = []
  for u in range(NUM_USERS):
    for k in range(PER_USER):
      item = (u * 3 + k * 5) % NUM_ITEMS
      ratings.append((f"{u}", f"{item}", 1 + (u + k) % 5, 1000 + 100 * k + u))
  return ratings


def _ingest_ratings(tmp_path_factory, mapping):
  data = tmp_path_factory.mktemp("ratings")
  _write_ratings(str(data / "ratings.dat"), _sparse_ratings())
  out = str(tmp_path_factory.mktemp("out"))
  summary = ingest_outputs.run_ingestion(mapping, str(data), out)
  return summary, ingested_examples.read_examples(out)


@pytest.fixture(scope="module")
def sparse_runs(tmp_path_factory):
  mapping = _packaged("movielens-1m")
  return (_ingest_ratings(tmp_path_factory, mapping),
          _ingest_ratings(tmp_path_factory, mapping.with_sparsify(2, share=1.0)))


def _eval_rows(examples):
  return sorted((_key(r), r[features.LABEL_VALID], r[features.LABEL_LIKE])
                for r in examples["eval"])


def test_sparsify_keeps_each_users_first_train_rows(sparse_runs):
  (full_summary, full), (summary, sparse) = sparse_runs
  assert full_summary["examples"] == {"train": 96, "eval": 24}
  assert summary["examples"] == {"train": 24, "eval": 24}
  # Counted, not quarantined: eight train rows per user, two kept.
  assert summary["sparsified"] == {"users": 12, "dropped_rows": 72}
  assert summary["quarantined_total"] == 0 and "sparsified" not in full_summary
  first_two = {}
  for user, item, _, ts in sorted(_sparse_ratings(), key=lambda r: (r[3], r[1])):
    first_two.setdefault(user, [])
    if len(first_two[user]) < 2:
      first_two[user].append((user, ts, item))
  train = sorted(_key(r) for r in sparse["train"])
  assert train == sorted(k for keys in first_two.values() for k in keys)


def test_sparsify_leaves_the_eval_rows_as_they_were(sparse_runs):
  (_, full), (_, sparse) = sparse_runs
  assert _eval_rows(sparse) == _eval_rows(full)
  # An eval row's history holds the kept rows before it, most recent first:
  # the user's two train rows and an earlier eval row, when valid.
  kept = sorted(sparse["train"] + sparse["eval"], key=lambda r: _key(r)[1])
  for row in sparse["eval"]:
    user, ts, _ = _key(row)
    expected = [r[features.ITEM_ID][0] for r in reversed(kept)
                if _key(r)[0] == user and _key(r)[1] < ts and r[features.LABEL_VALID] == [1]]
    assert row[features.HIST_ITEM_IDS] == expected, _key(row)
  assert sum(len(r[features.HIST_ITEM_IDS]) for r in sparse["eval"]) == 22  # not vacuous


def test_sparsify_dropped_rows_count_toward_no_item(sparse_runs):
  (_, full), (_, sparse) = sparse_runs
  kept = [_key(r) for rows in sparse.values() for r in rows]
  for rows, keys in ((sparse, kept), (full, [_key(r) for s in full.values() for r in s])):
    for row in rows["train"] + rows["eval"]:
      _, ts, item = _key(row)
      prior = sum(1 for _, t, i in keys if i == item and t < ts)
      assert row[features.ITEM_PRIOR_EXPOSURES] == [prior], _key(row)
  # The same eval row sees fewer prior exposures once the dropped rows are gone.
  full_prior = {_key(r): r[features.ITEM_PRIOR_EXPOSURES][0] for r in full["eval"]}
  assert sum(r[features.ITEM_PRIOR_EXPOSURES][0] for r in sparse["eval"]) < sum(
      full_prior.values())


def test_sparsify_chooses_the_same_users_on_every_run(tmp_path_factory):
  mapping = _packaged("movielens-1m").with_sparsify(3, share=0.3, seed=7)
  chosen = {str(u) for u in range(NUM_USERS) if mapping.sparsify.chooses(str(u))}
  assert chosen == {"3", "4", "7", "8"}  # the hash is stable, not Python's salted hash()
  runs = [_ingest_ratings(tmp_path_factory, mapping) for _ in range(2)]
  for summary, examples in runs:
    assert summary["sparsified"] == {"users": 4, "dropped_rows": 4 * 5}
    train = {}
    for row in examples["train"]:
      train[_key(row)[0]] = train.get(_key(row)[0], 0) + 1
    assert {user for user, n in train.items() if n == 3} == chosen
    assert {n for user, n in train.items() if user not in chosen} == {8}
  assert sorted(map(_key, runs[0][1]["train"])) == sorted(map(_key, runs[1][1]["train"]))


def test_sparsify_global_split_keeps_every_eval_row():
  raw = json.load(open(configs.packaged_mapping("movielens-1m")))
  raw["split"] = {"mode": "global", "eval_days": 1}
  raw["sparsify"] = {"share": 1.0, "keep": 1}
  mapping = mapping_lib.MappingConfig.from_dict(raw)
  day = 86400
  rows = [{"ts": ts, "item_id": f"i{ts}"} for ts in (5 * day, day, 3 * day, 2 * day, 4 * day)]
  kept, dropped, _ = point_in_time.cut_user_exposures(rows, mapping, eval_start_ts=4 * day,
                                                     sparsify=True)
  assert [(r["ts"] // day, r[point_in_time.SPLIT_KEY]) for r in kept] == [
      (1, "train"), (4, "eval"), (5, "eval")]
  assert dropped == 2


# --- validation holdout ------------------------------------------------------------


def test_validation_holdout_scores_the_end_of_train_and_never_sees_eval(tmp_path_factory):
  """A tuning run's `eval` split is the last 20% of each user's train rows; the
  real eval rows reach no example, history or count."""
  mapping = _packaged("movielens-1m")
  _, full = _ingest_ratings(tmp_path_factory, mapping)
  summary, held = _ingest_ratings(tmp_path_factory, mapping.with_validation_holdout())
  # 10 rows per user: 2 eval (left out); of the 8 train rows, the last 2 (round(1.6)).
  assert summary["examples"] == {"train": 72, "eval": 24}
  assert summary["held_out_eval_rows"] == 24
  eval_keys = {_key(r) for r in full["eval"]}
  train_by_user = {}
  for row in sorted(full["train"], key=lambda r: (_key(r)[1], _key(r)[2])):
    train_by_user.setdefault(_key(row)[0], []).append(_key(row))
  assert sorted(_key(r) for r in held["eval"]) == sorted(
      k for keys in train_by_user.values() for k in keys[-2:])
  seen = [_key(r) for rows in held.values() for r in rows]
  assert not eval_keys & set(seen)
  # Every feature of the kept rows is what the full run computed: the left-out
  # rows are the users' last ones, so nothing before them changes.
  full_rows = _by_key(full)
  for row in held["train"] + held["eval"]:
    assert row[features.HIST_ITEM_IDS] == full_rows[_key(row)][features.HIST_ITEM_IDS]
  assert mapping.with_validation_holdout().name == "movielens-1m-validation"


def test_validation_holdout_in_the_global_split_takes_the_days_before_eval():
  raw = json.load(open(configs.packaged_mapping("movielens-1m")))
  raw["split"] = {"mode": "global", "eval_days": 1, "holdout": "validation"}
  mapping = mapping_lib.MappingConfig.from_dict(raw)
  day = 86400
  rows = [{"ts": ts, "item_id": f"i{ts}"} for ts in (5 * day, day, 3 * day, 2 * day, 4 * day)]
  kept, dropped, held_out = point_in_time.cut_user_exposures(rows, mapping,
                                                             eval_start_ts=4 * day)
  assert [(r["ts"] // day, r[point_in_time.SPLIT_KEY]) for r in kept] == [
      (1, "train"), (2, "train"), (3, "eval")]
  assert (dropped, held_out) == (0, 2)
  with pytest.raises(ValueError, match=r"split\.holdout must be one of .* Received: 'test'"):
    mapping_lib.SplitConfig(holdout="test")
  # A mapping without a holdout serialises as before (TFX's cache key).
  assert "holdout" not in _packaged("movielens-1m").to_json()
  assert mapping_lib.MappingConfig.from_json(mapping.to_json()) == mapping


@pytest.mark.parametrize("sparsify, message", [
    ({"keep": 0}, r"sparsify\.keep must be an integer in \[1, 10\]\. Received: 0"),
    ({"keep": 11}, r"sparsify\.keep .* Received: 11"),
    ({"keep": 2.5}, r"sparsify\.keep .* Received: 2\.5"),
    ({"keep": True}, r"sparsify\.keep .* Received: True"),
    ({"share": 0}, r"sparsify\.share must be a number in \(0, 1\]\. Received: 0"),
    ({"share": 1.5}, r"sparsify\.share .* Received: 1\.5"),
    ({"seed": "a"}, r"sparsify\.seed must be an integer\. Received: 'a'"),
    ({"users": 3}, r"Unknown sparsify keys \['users'\]"),
    ([3], r"sparsify must be an object"),
])
def test_invalid_sparsify_values_are_errors_naming_the_key(sparsify, message):
  raw = json.load(open(configs.packaged_mapping("movielens-1m")))
  with pytest.raises(ValueError, match=message):
    mapping_lib.MappingConfig.from_dict(dict(raw, sparsify=sparsify))


def test_with_sparsify_derives_a_name_and_round_trips():
  base = _packaged("movielens-100k")
  variant = base.with_sparsify(3)
  assert variant.name == "movielens-100k-sparse3"
  assert variant.sparsify == mapping_lib.SparsifyConfig(share=0.3, keep=3, seed=0)
  assert base.sparsify is None and variant.sources == base.sources
  assert base.with_sparsify(2, share=0.5, seed=1).name == "movielens-100k-sparse2-share0.5-seed1"
  assert mapping_lib.MappingConfig.from_json(variant.to_json()) == variant
  assert "sparsify" not in json.loads(base.to_json())  # its JSON (and cache key) as before
  with pytest.raises(ValueError, match=r"sparsify\.keep"):
    base.with_sparsify(0)


# --- config errors and parsing --------------------------------------------------------


def _ml1m_raw():
  return json.load(open(configs.packaged_mapping("movielens-1m")))


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["fields"].update(users={"gender": {"column": "gender"}}),
     r"fields\.users\.gender uses 'column', but the mapping has no sources\.users"),
    (lambda r: r["fields"]["items"].update(tags={"flag_columns": ["a"]}),
     r"fields\.items\.tags uses 'flag_columns', but the mapping has no sources\.items"),
    (lambda r: r["fields"]["items"].update(item_id={"const": "x"}),
     r"fields\.items\.item_id: a items table without a source is keyed by the exposures'"),
    (lambda r: r["fields"]["items"].update(cat2={"first_seen": "week"}),
     r"fields\.items\.cat2\.first_seen must be one of \['month', 'year'\]\. Received: 'week'"),
    (lambda r: r["fields"]["items"].update(cat1={"from_exposures": "c", "required": True}),
     r"fields\.items\.cat1 has unknown options \['required'\]"),
    (lambda r: r["fields"]["exposures"].update(x={"first_seen": "year"}),
     r"fields\.exposures\.x uses 'first_seen', which only a users or items table without"),
    (lambda r: r["sources"].update(user={"pattern": "u"}),
     r"unknown tables in sources: \['user'\]"),
    (lambda r: r.update(sources={}), r"has no source for 'exposures'"),
    (lambda r: r["sources"]["exposures"].update(delimiter=""),
     r"sources\.exposures: delimiter must be a non-empty string"),
    (lambda r: r["sources"]["exposures"].update(sep="::"),
     r"Unknown keys in sources\.exposures: \['sep'\]"),
])
def test_mapping_errors_name_the_key(edit, message):
  raw = _ml1m_raw()
  edit(raw)
  with pytest.raises(ValueError, match=message):
    mapping_lib.MappingConfig.from_dict(raw)


def test_derived_kinds_are_errors_on_a_table_with_a_source():
  raw = json.load(open(configs.packaged_mapping("movielens-100k")))
  raw["fields"]["items"]["cat2"] = {"first_seen": "year"}
  with pytest.raises(ValueError, match=r"fields\.items\.cat2 uses 'first_seen', .* and "
                                       r"sources\.items is set"):
    mapping_lib.MappingConfig.from_dict(raw)


def test_multi_character_delimiter_is_a_plain_split():
  source = _packaged("movielens-1m").sources["exposures"]
  row = mapping_lib.split_line(b'1::"2"::5::978300760\r\n', source, None)
  assert row == {"user": "1", "movie": '"2"', "rating": "5", "timestamp": "978300760"}
  with pytest.raises(mapping_lib.RowError, match=r"expected 4 columns, got 5 \(delimiter '::'\)"):
    mapping_lib.split_line(b'1::"a::b"::5::9', source, None)
  # One character keeps the csv module's quoting.
  one = mapping_lib.SourceConfig(pattern="x", format="csv", header=False, columns=("a", "b"))
  assert mapping_lib.split_line(b'"x,y",z', one, None) == {"a": "x,y", "b": "z"}
  header = mapping_lib.SourceConfig(pattern="x", format="csv", delimiter="::")
  assert mapping_lib.parse_header(b"user :: movie\n", header) == ["user", "movie"]


def test_user_fields_from_exposures_take_the_column_options():
  raw = _ml1m_raw()
  raw["fields"]["users"] = {
      "city": {"from_exposures": "zip", "prefix": 3},
      "age_bucket": {"from_exposures": "age", "bucketize": [18, 25], "default": "none"},
      "pref_tag": {"from_exposures": "genres", "type": "list", "separator": "|"},
      "device": {"first_seen": "month"},
      "gender": {"const": "x"},
  }
  mapping = mapping_lib.MappingConfig.from_dict(raw)
  raw_rows = [{"ts": Y2001 + 50, "item_id": "b", "zip": "94043", "genres": "Drama|War"},
              {"ts": Y2000 + 99, "item_id": "a", "zip": "", "genres": ""},
              {"ts": Y2002, "item_id": "c", "zip": "10001", "age": "21"}]
  rows = []
  for row in raw_rows:
    carried = mapping_lib.carried_values(row, mapping)
    rows.append(dict(row, **{mapping_lib.CARRIED_KEY: carried}) if carried else row)
  assert rows[0][mapping_lib.CARRIED_KEY] == {
      "users": {"city": "940", "pref_tag": ["Drama", "War"]}}
  assert mapping_lib.CARRIED_KEY not in rows[1]  # empty values are not carried
  user = profiles.build_profile("users", "u", rows, mapping)
  assert user == {"user_id": "u", "city": "940", "age_bucket": "lt25", "gender": "x",
                  "device": "2000-01", "pref_cat1": [], "pref_cat2": [],
                  "pref_tag": ["Drama", "War"]}
  assert profiles.build_profile("users", "v", rows[:2], mapping)["age_bucket"] == "none"
  with pytest.raises(mapping_lib.RowError, match="invalid_value:age_bucket"):
    mapping_lib.carried_values({"age": "old"}, mapping)


def test_first_seen_is_the_utc_year_or_month():
  assert profiles.first_seen(Y2001 - 1, "year") == "2000"
  assert profiles.first_seen(Y2001 + 40 * 86400, "month") == "2001-02"


def test_rating_mappings_are_packaged_and_train_the_rating_preset():
  for name in ("movielens-1m", "amazon-reviews"):
    path = configs.packaged_mapping(name)
    assert _packaged(name).sources.keys() == {"exposures"}
    for mapping in (name, path):
      config = runtime_config.TrainingSettings().build(mapping)
      assert config == model_config.preset("movielens")
      assert features.TASK_WATCH not in config.tasks
  assert runtime_config.TrainingSettings().build("generated") == model_config.preset("small")
