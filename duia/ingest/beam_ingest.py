"""The ingestion pipeline on Beam: read, parse, join, derive, split, write.

    exposures --parse--> by user --CoGroupByKey(users)--> known users' exposures
              --by item--CoGroupByKey(items)--> drop duplicate exposures, annotate popularity
              --by user--CoGroupByKey(the users' profiles)--> point-in-time sweep
              (columnar, encoded per user) --> split --> train shuffled in chunks
    every failure on the way --> quarantine (JSON lines with source and reason)

Each user's profile row meets its exposures again only in the last group-by,
once per user, rather than riding on every exposure through the item join.

A users or items table without a source (`mapping.sources`) is not joined: the
item group-by is then a plain GroupByKey and the item's profile is built from
its exposures there; a user's, in the last group-by (`duia.ingest.profiles`).
No id is quarantined as unknown for such a table.

With `mapping.sparsify`, the item pass splits in two around one more group-by
by user:

    ... by item --> drop duplicate exposures
        --by user--> sparsify: split on the whole sequence, drop the chosen
                     users' later train rows (counted in the summary)
        --by item--> annotate popularity --by user--> sweep, as above

so the dropped rows count toward no item's popularity and reach no history or
example, while each user's split is the one a run without sparsify makes.

The joins are keyed group-bys, so the same code shards by item and by user on a
distributed runner (docs/design.md §8).
"""

import os
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.io import filesystems

from duia.ingest import columnar_sweep
from duia.ingest import mapping as mapping_lib
from duia.ingest import point_in_time
from duia.ingest import profiles
from duia.ingest import train_shuffle
from duia.models import features

QUARANTINE = "quarantine"
LOW_ACTIVITY_THRESHOLD = "low_activity_threshold"
SPARSIFIED = "sparsified"
# Eval rows a validation holdout left out (`split.holdout`).
HELD_OUT = "held_out_eval_rows"
SPLITS = (point_in_time.TRAIN, point_in_time.EVAL)


def resolve_pattern(data_root: str, pattern: str) -> str:
  """A source pattern relative to `data_root` unless it is absolute or a URI."""
  if "://" in pattern or os.path.isabs(pattern):
    return pattern
  return os.path.join(data_root, pattern)


def read_header(file_pattern: str, source: mapping_lib.SourceConfig) -> Optional[List[str]]:
  """The CSV header of the first matching file, or None (JSON Lines, no header).

  Raises:
    FileNotFoundError: when nothing matches `file_pattern`.
  """
  matches = filesystems.FileSystems.match([file_pattern])[0].metadata_list
  if not matches:
    raise FileNotFoundError(f"No file matches {file_pattern!r}")
  if source.format != "csv" or source.header is False:
    return None
  path = sorted(m.path for m in matches)[0]
  with filesystems.FileSystems.open(path) as f:
    header = mapping_lib.parse_header(f.readline(), source)
  if source.header == "auto" and header != list(source.columns):
    return None
  return header


def _quarantine_record(source: str, reason: str, detail: str, raw: Any) -> Dict[str, Any]:
  if isinstance(raw, bytes):
    raw = raw.decode("utf-8", errors="replace")
  return {"source": source, "reason": reason, "detail": detail, "row": raw}


class _ParseRows(beam.DoFn):
  """Raw lines -> canonical rows; bad lines -> the quarantine output."""

  def __init__(self, table: str, mapping: mapping_lib.MappingConfig,
               header: Optional[List[str]]):
    self._table = table
    self._mapping = mapping
    self._header = header

  def process(self, line: bytes) -> Iterator[Any]:
    source = self._mapping.sources[self._table]
    try:
      if not line.strip():
        raise mapping_lib.RowError("empty_line", "the line is blank")
      row = mapping_lib.split_line(line, source, self._header)
      mapped = mapping_lib.map_row(self._table, row, self._mapping)
      if self._table == "exposures":
        mapped.update(mapping_lib.labels_for(mapped, self._mapping))
        carried = mapping_lib.carried_values(row, self._mapping)
        if carried:  # only for tables without a source; examples never copy it
          mapped[mapping_lib.CARRIED_KEY] = carried
      yield mapped
    except mapping_lib.RowError as e:
      yield beam.pvalue.TaggedOutput(
          QUARANTINE, _quarantine_record(self._table, e.reason, e.detail, line))


def _read_table(pipeline, table: str, mapping: mapping_lib.MappingConfig,
                data_root: str):
  source = mapping.sources[table]
  pattern = resolve_pattern(data_root, source.pattern)
  header = read_header(pattern, source)
  skip = 1 if header is not None else 0
  lines = pipeline | f"Read{table}" >> beam.io.ReadFromText(
      pattern, coder=beam.coders.BytesCoder(), skip_header_lines=skip)
  return lines | f"Parse{table}" >> beam.ParDo(
      _ParseRows(table, mapping, list(source.columns) if source.columns else header)).with_outputs(QUARANTINE, main="rows")


def _join_one(key_name: str, table: str):
  """Returns a DoFn body joining one profile row onto its exposures.

  Zero profile rows -> every exposure is quarantined as unknown; more than one ->
  the first is used and the others are quarantined as duplicates.
  """

  def join(element: Tuple[str, Dict[str, List[Any]]]) -> Iterator[Any]:
    key, grouped = element
    profiles = grouped["profile"]
    exposures = grouped["exposures"]
    if not profiles:
      for row in exposures:
        yield beam.pvalue.TaggedOutput(QUARANTINE, _quarantine_record(
            "exposures", f"unknown_{key_name}", f"{key_name}={key!r} not in {table}", row))
      return
    for extra in profiles[1:]:
      yield beam.pvalue.TaggedOutput(QUARANTINE, _quarantine_record(
          table, f"duplicate_{key_name}", f"{key_name}={key!r} appears more than once", extra))
    if exposures:
      yield key, profiles[0], exposures

  return join


def _join_profiles(label: str, profiles, exposures, key: str, table: str, quarantined: list):
  """Joins each key's profile row onto its exposures (a keyed CoGroupByKey).

  Returns (key, profile, exposures) per key with both; unknown keys and
  duplicate profiles go to `quarantined` (see `_join_one`).
  """
  joined = (
      {"profile": profiles | f"Key{label}" >> beam.Map(lambda r: (r[key], r)),
       "exposures": exposures | f"ExposuresBy{label}" >> beam.Map(lambda r: (r[key], r))}
      | f"Join{label}" >> beam.CoGroupByKey()
      | f"Check{label}" >> beam.FlatMap(_join_one(key, table))
      .with_outputs(QUARANTINE, main="rows"))
  quarantined.append(joined[QUARANTINE])
  return joined.rows


def _group_without_profile(label: str, exposures, key: str):
  """(key, None, exposures) per key: `_join_profiles`' shape for a table without a source."""
  return (exposures
          | f"ExposuresBy{label}" >> beam.Map(lambda r: (r[key], r))
          | f"Group{label}" >> beam.GroupByKey()
          | f"NoProfile{label}" >> beam.MapTuple(lambda k, rows: (k, None, rows)))


class _AnnotateItems(beam.DoFn):
  """Per item: drops duplicate exposures, adds the item's fields and prior counts.

  With sparsify on it runs twice, around `_CutUsers`: `dedupe` before (the
  users' sequences are then the ones the split sees without sparsify; a source
  profile's fields ride on the rows) and `count` after (the dropped rows count
  toward nothing).
  """

  def __init__(self, mapping, dedupe: bool = True, count: bool = True):
    self._mapping = mapping
    self._dedupe = dedupe
    self._count = count

  def process(self, joined):
    item_id, item, exposures = joined
    exposures = list(exposures)
    if self._dedupe:
      exposures, duplicates = point_in_time.split_duplicate_exposures(exposures)
      for row in duplicates:
        yield beam.pvalue.TaggedOutput(QUARANTINE, _quarantine_record(
            "exposures", "duplicate_exposure",
            f"the exposure of item_id={item_id!r} to user_id={row[features.USER_ID]!r} at "
            f"ts={row[features.TIMESTAMP]} appears more than once, every field equal", row))
    if not self._count:
      if item is not None:
        exposures = [dict(row, **{k: item[k] for k in point_in_time.ITEM_FIELDS})
                     for row in exposures]
      yield from exposures
      return
    if item is None:
      if "items" in self._mapping.sources:  # the fields the `dedupe` pass attached
        item = exposures[0]
      else:
        item = profiles.build_profile("items", item_id, exposures, self._mapping)
    yield from point_in_time.annotate_item_exposures(item, exposures, self._mapping.derive)


class _CutUsers(beam.DoFn):
  """Per user: the rows `point_in_time.cut_user_exposures` keeps.

  Each user sparsify chooses also goes to the `SPARSIFIED` output as (1,
  dropped rows); the eval rows a validation holdout leaves out, to `HELD_OUT`.
  """

  def __init__(self, mapping):
    self._mapping = mapping

  def process(self, grouped, eval_start_ts):
    user_id, exposures = grouped
    chosen = self._mapping.sparsify is not None and self._mapping.sparsify.chooses(user_id)
    if not chosen and self._mapping.split.holdout == "eval":
      yield from exposures
      return
    kept, dropped, held_out = point_in_time.cut_user_exposures(
        exposures, self._mapping, eval_start_ts, sparsify=chosen)
    if chosen:
      yield beam.pvalue.TaggedOutput(SPARSIFIED, (1, dropped))
    if held_out:
      yield beam.pvalue.TaggedOutput(HELD_OUT, held_out)
    yield from kept


def _add_counts(counts: Iterable[Tuple[int, int]]) -> Tuple[int, int]:
  users = dropped = 0
  for u, d in counts:
    users += u
    dropped += d
  return users, dropped


class _DeriveUsers(beam.DoFn):
  """Per user: the serialized tf.Examples of its exposures, tagged by split.

  Train examples come out in chunks of up to `train_shuffle.SHUFFLE_CHUNK`
  consecutive ones (lists), the unit `train_shuffle.ShuffleChunks` shuffles;
  eval examples one by one.
  """

  def __init__(self, mapping):
    self._mapping = mapping

  def process(self, grouped, eval_start_ts, low_activity_threshold):
    user_id, joined = grouped
    exposures = list(joined["exposures"])
    if not exposures:  # every exposure of the user was quarantined at the item join
      return
    if "users" in self._mapping.sources:
      (user,) = joined["profile"]
    else:
      user = profiles.build_profile("users", user_id, exposures, self._mapping)
    train = []
    for split, example in columnar_sweep.encode_user_examples(
        user, exposures, self._mapping, eval_start_ts, low_activity_threshold):
      if split == point_in_time.TRAIN:
        train.append(example)
      else:
        yield beam.pvalue.TaggedOutput(split, example)
    for chunk in train_shuffle.split_into_chunks(train):
      yield beam.pvalue.TaggedOutput(point_in_time.TRAIN, chunk)


@beam.ptransform_fn
def IngestRawLogs(pipeline, mapping: mapping_lib.MappingConfig, data_root: str):  # pylint: disable=invalid-name
  """Reads the inputs and returns {split: examples, 'quarantine': records}.

  Args:
    pipeline: the Beam pipeline (the transform is applied to its root).
    mapping: the mapping config.
    data_root: folder or URI the mapping's source patterns are relative to.

  Returns:
    A dict of PCollections: 'train' and 'eval' serialized tf.Examples, 'quarantine'
    records ({source, reason, detail, row}), the low-activity threshold, and
    with sparsify on, 'sparsified': one (users, dropped rows) pair.
  """
  tables = {t: _read_table(pipeline, t, mapping, data_root)
            for t in mapping_lib.TABLES if t in mapping.sources}
  quarantined = [table[QUARANTINE] for table in tables.values()]
  exposures = tables["exposures"].rows

  if mapping.split.mode == "global":
    eval_start = beam.pvalue.AsSingleton(
        exposures
        | "Timestamps" >> beam.Map(lambda r: r[features.TIMESTAMP])
        | "MaxTs" >> beam.CombineGlobally(max).without_defaults()
        | "EvalStart" >> beam.Map(point_in_time.global_eval_start, mapping.split))
  else:
    eval_start = float("inf")

  known_users = None
  if "users" in tables:
    # Users first, so exposures of unknown users count toward no item's popularity.
    user_joined = _join_profiles("Users", tables["users"].rows, exposures,
                                 features.USER_ID, "users", quarantined)
    known_users = user_joined | "KnownUsers" >> beam.Map(lambda joined: (joined[0], joined[1]))
    exposures = user_joined | "KnownUserExposures" >> beam.FlatMap(lambda joined: joined[2])
  if "items" in tables:
    item_joined = _join_profiles("Items", tables["items"].rows, exposures,
                                 features.ITEM_ID, "items", quarantined)
  else:
    item_joined = _group_without_profile("Items", exposures, features.ITEM_ID)

  result = {}
  if not mapping.cuts_user_rows:
    annotated = item_joined | "AnnotateItems" >> beam.ParDo(
        _AnnotateItems(mapping)).with_outputs(QUARANTINE, main="rows")
    quarantined.append(annotated[QUARANTINE])
    annotated = annotated.rows
  else:
    checked = item_joined | "DedupeItems" >> beam.ParDo(
        _AnnotateItems(mapping, count=False)).with_outputs(QUARANTINE, main="rows")
    quarantined.append(checked[QUARANTINE])
    sparse = (checked.rows
              | "SparsifyByUser" >> beam.Map(lambda r: (r[features.USER_ID], r))
              | "GroupSparsify" >> beam.GroupByKey()
              | "Sparsify" >> beam.ParDo(_CutUsers(mapping), eval_start)
              .with_outputs(SPARSIFIED, HELD_OUT, main="rows"))
    if mapping.sparsify is not None:
      result[SPARSIFIED] = sparse[SPARSIFIED] | "CountSparsified" >> beam.CombineGlobally(
          _add_counts)
    if mapping.split.holdout != "eval":
      result[HELD_OUT] = sparse[HELD_OUT] | "CountHeldOut" >> beam.CombineGlobally(sum)
    annotated = (_group_without_profile("KeptItems", sparse.rows, features.ITEM_ID)
                 | "AnnotateItems" >> beam.ParDo(_AnnotateItems(mapping, dedupe=False)))
  by_user = {"exposures": annotated | "AnnotatedByUser" >> beam.Map(
      lambda r: (r[features.USER_ID], r))}
  if known_users is not None:
    by_user["profile"] = known_users
  per_user = by_user | "GroupByUser" >> beam.CoGroupByKey()

  threshold = _low_activity_threshold(annotated, mapping.derive)
  derived = per_user | "DeriveUsers" >> beam.ParDo(
      _DeriveUsers(mapping), eval_start, beam.pvalue.AsSingleton(threshold)
  ).with_outputs(*SPLITS)

  result[point_in_time.EVAL] = derived[point_in_time.EVAL]
  result[point_in_time.TRAIN] = (
      derived[point_in_time.TRAIN]
      | "ShuffleTrain" >> train_shuffle.ShuffleChunks())  # pylint: disable=no-value-for-parameter
  result[QUARANTINE] = quarantined | "FlattenQuarantine" >> beam.Flatten()
  result[LOW_ACTIVITY_THRESHOLD] = threshold
  return result


def _low_activity_threshold(exposures, derive: mapping_lib.DeriveConfig):
  """A one-element PCollection: the configured threshold, or one chosen so that
  about `derive.low_activity_share` of users fall under it."""
  if derive.low_activity_share is None:
    return exposures.pipeline | "ConfiguredThreshold" >> beam.Create(
        [derive.low_activity_threshold])
  return (exposures
          | "ValidByUser" >> beam.Map(lambda r: (r[features.USER_ID], r[features.LABEL_VALID]))
          | "ValidPerUser" >> beam.CombinePerKey(sum)
          | "CountValues" >> beam.Values()
          | "UsersByCount" >> beam.combiners.Count.PerElement()
          | "Histogram" >> beam.combiners.ToDict()
          | "PickThreshold" >> beam.Map(point_in_time.threshold_for_share,
                                        derive.low_activity_share))
