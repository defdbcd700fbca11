"""Bad log input, each kind injected into generated logs at a known count: the
ingestion completes, quarantines exactly the injected rows under their reason,
and keeps every clean row."""

import collections
import glob
import gzip
import json
import os

import pytest
import tensorflow as tf

from duia.data import generator
from duia.ingest import ingest_outputs
from duia.ingest import mapping as mapping_lib
from duia.models import features
from duia.pipeline import configs

TS = 1_700_050_000  # inside the generated logs' days


def _read_rows(path):
  with gzip.open(path, "rt") as f:
    return [json.loads(line) for line in f if line.strip()]


def _exposure(user_id, item_id, ts=TS, watch=12.0, like=0):
  return {"ts": ts, "user_id": user_id, "item_id": item_id, "watch_time_s": watch,
          "like": like, "share": 0}


def _line(row) -> bytes:
  return json.dumps(row).encode("utf-8")


def _bad_lines(users, items, clean):
  """Reason -> the raw lines injected for it (each line quarantined once)."""
  u, i = users[0], items[0]
  no_user = _exposure(u, i)
  del no_user["user_id"]
  no_item = _exposure(u, i)
  del no_item["item_id"]
  oversized = _exposure(u, i)
  oversized["note"] = "x" * (1 << 20)  # over the default max_line_bytes (1 MiB)
  duplicates = [clean[0], clean[1], clean[2], clean[3], clean[3]]  # 5 repeated rows
  return {
      "unparseable_row": [b"{not json", b"{\"ts\": 1700050000,", b"[1, 2, 3]", b"null",
                          # non-UTF-8 bytes
                          b"{\"ts\": 1700050000, \"user_id\": \"\xff\xfe\"}",
                          b"\xc3\x28\xa0\xa1", b"\x80abc"],
      "empty_line": [b"   ", b"\t"],
      "missing_field:user_id": [_line(no_user)] * 3,
      "missing_field:item_id": [_line(no_item)] * 2,
      # wrong types, and timestamps out of the mapping's range
      "invalid_value:ts": [_line(_exposure(u, i, ts="yesterday")),
                           _line(_exposure(u, i, ts=[1])),
                           _line(_exposure(u, i, ts=5)),
                           _line(_exposure(u, i, ts=4_000_000_000)),
                           _line(_exposure(u, i, ts=1e400))],
      # negative, NaN, infinite and non-numeric watch time
      "invalid_value:watch_time_s": [_line(_exposure(u, i, watch=-3.0)),
                                     _line(_exposure(u, i, watch=-0.5)),
                                     b'{"ts": 1700050000, "user_id": "%s", "item_id": "%s", '
                                     b'"watch_time_s": NaN, "like": 0}' % (u.encode(), i.encode()),
                                     b'{"ts": 1700050000, "user_id": "%s", "item_id": "%s", '
                                     b'"watch_time_s": Infinity, "like": 0}' % (
                                         u.encode(), i.encode()),
                                     _line(_exposure(u, i, watch="long"))],
      "invalid_value:like": [_line(_exposure(u, i, like=7))] * 2,
      "unknown_user_id": [_line(_exposure("ghost-user", i))] * 3,
      "unknown_item_id": [_line(_exposure(u, "ghost-item")), _line(_exposure(u, "ghost-2"))],
      "duplicate_exposure": [_line(row) for row in duplicates],
      "oversized_row": [_line(oversized)] * 2,
  }


@pytest.fixture(scope="module")
def injected(tmp_path_factory):
  data = str(tmp_path_factory.mktemp("logs"))
  generator.generate(data, generator.GeneratorConfig(
      num_users=120, num_items=200, num_exposures=1500, seed=5))
  users = [r["user_id"] for r in _read_rows(os.path.join(data, "users.jsonl.gz"))]
  items = [r["item_id"] for r in _read_rows(os.path.join(data, "items.jsonl.gz"))]
  clean = [r for path in sorted(glob.glob(os.path.join(data, "exposures", "*.jsonl.gz")))
           for r in _read_rows(path)]
  bad = _bad_lines(users, items, clean)
  with gzip.open(os.path.join(data, "exposures", "part-bad.jsonl.gz"), "wb") as f:
    for lines in bad.values():
      for line in lines:
        f.write(line + b"\n")
  # Empty files, gzipped and plain: nothing to ingest, nothing to fail on.
  with gzip.open(os.path.join(data, "exposures", "part-empty.jsonl.gz"), "wb"):
    pass
  open(os.path.join(data, "exposures", "part-empty-plain.jsonl"), "wb").close()
  out = str(tmp_path_factory.mktemp("out"))
  mapping = mapping_lib.load_mapping(configs.packaged_mapping("generated"))
  summary = ingest_outputs.run_ingestion(mapping, data, out)
  return summary, bad, clean, out


def _example_keys(out):
  keys = []
  for path in glob.glob(os.path.join(out, "examples", "Split-*", "*.gz")):
    for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
      feature = tf.train.Example.FromString(record.numpy()).features.feature
      keys.append((feature[features.USER_ID].bytes_list.value[0].decode(),
                   feature[features.ITEM_ID].bytes_list.value[0].decode(),
                   feature[features.TIMESTAMP].int64_list.value[0]))
  return keys


def test_quarantine_counts_equal_the_injected_counts_per_reason(injected):
  summary, bad, clean, _ = injected
  # The generator never writes one impression twice (it does write the same
  # user, item and ts twice with other watch times: distinct impressions, kept).
  assert len({json.dumps(r, sort_keys=True) for r in clean}) == len(clean)
  expected = {f"exposures/{reason}": len(lines) for reason, lines in bad.items()}
  assert summary["quarantined"] == expected
  assert summary["quarantined_total"] == sum(len(lines) for lines in bad.values())


def test_every_clean_row_is_kept_once(injected):
  summary, _, clean, out = injected
  keys = _example_keys(out)
  assert len(keys) == len(clean) == sum(summary["examples"].values())
  assert collections.Counter(keys) == collections.Counter(
      (r["user_id"], r["item_id"], r["ts"]) for r in clean)


def test_quarantined_records_name_their_reason_and_keep_the_row(injected):
  _, bad, _, out = injected
  records = [json.loads(line) for path in glob.glob(os.path.join(out, "quarantine", "*.jsonl"))
             for line in open(path)]
  assert collections.Counter(r["reason"] for r in records) == {
      reason: len(lines) for reason, lines in bad.items()}
  by_reason = collections.defaultdict(list)
  for record in records:
    by_reason[record["reason"]].append(record)
  assert "max_line_bytes" in by_reason["oversized_row"][0]["detail"]
  assert any("not finite" in r["detail"] for r in by_reason["invalid_value:watch_time_s"])
  assert any("> max 2000000000" in r["detail"] for r in by_reason["invalid_value:ts"])
  duplicate = by_reason["duplicate_exposure"][0]
  assert "appears more than once" in duplicate["detail"] and duplicate["row"]["user_id"]
  assert any("utf-8" in r["detail"] for r in by_reason["unparseable_row"])
