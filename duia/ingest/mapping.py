"""Mapping config: how a log's columns map onto the data contract.

A mapping config is a JSON file (see `duia/configs/*.json`) that names, for each
of the three inputs (exposures, users, items), where the files are, their format,
and how each canonical field is computed from the raw columns; plus the label
rules, the point-in-time derivation parameters and the split. Other logs ingest
by writing a new mapping config; no code changes (docs/design.md §3).

Sources (`sources.<table>`): `exposures` is required; `users` and `items` are
optional. A table without a source is not joined (so none of its ids is
quarantined as unknown): each id's profile is built from that id's own
exposures (`duia.ingest.profiles`), which is how rating logs such as MovieLens
1M's `ratings.dat` or Amazon reviews ingest. Options: "pattern", "format"
(jsonl|csv), "delimiter" (one character: csv quoting rules; longer, e.g. "::":
a plain split, no quoting), "header" (true|false|"auto"), "columns",
"encoding", "max_line_bytes".

Field specs (`fields.<table>.<canonical name>`), one of:
  {"column": "c"}                   the column's value; options below.
  {"const": v}                       a constant.
  {"flag_columns": ["a", "b"]}       multi-hot flags -> list of the names set to 1.
  {"first_of": "field"}              first element of another (list) field.
Options on "column": "type" (str|int|float|list|weighted_list), "required"
(default true for ids and ts, else false), "default", "min", "max", "allowed",
"regex" (keep group 1), "prefix" (keep the first n characters), "bucketize"
(ascending boundaries -> "lt<b>" / "ge<last>" buckets), "separator" (for lists in
CSV cells).

A users or items table without a source takes "const", "first_of" and two kinds
computed from the id's exposures instead of "column" and "flag_columns" (its id
comes from the exposures and has no spec); canonical fields it leaves out get
their `PROFILE_FIELDS` default:
  {"from_exposures": "c"}            exposure column c, from the id's earliest
                                     exposure where it is non-empty; the
                                     "column" options but "required" apply
                                     (a list value of a non-list type gives its
                                     first element: Amazon's category path ->
                                     its top level, also from a list of paths).
  {"first_seen": "year" | "month"}   UTC "2014" / "2014-03" of the id's first
                                     exposure.
A present `from_exposures` value that fails its options quarantines its
exposure (`invalid_value:<field>`), as an exposure column would. Why neither
kind tells an example the future: `duia.ingest.profiles`. Counts are not fields: the point-in-time counts `item_prior_exposures` and
`user_valid_count` are derived for every exposure (strictly before its ts) and
are features already; a count over the whole log would leak the future into
train rows.

Label rules (`labels.<label key>`): {"field": f, "op": ">=", "value": v} gives
0/1; {"field": f} gives the field's value as float; {"const": v}.

Sparsify (`sparsify`, optional): {"share": 0.3, "keep": 3, "seed": 0} cuts a
seeded share of users down to their first `keep` train interactions, the way
cold-start studies make MovieLens long-tailed (see `SparsifyConfig`).
"""

import dataclasses
import hashlib
import json
import math
import operator
import re
from typing import Any, Dict, List, Optional, Tuple

from duia.models import features

TABLES = ("exposures", "users", "items")
HOLDOUTS = ("eval", "validation")
# The tables a mapping may leave without a source, and the id each is keyed by.
PROFILE_IDS = {"users": features.USER_ID, "items": features.ITEM_ID}
FORMATS = ("jsonl", "csv")
_OPS = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
    "==": operator.eq, "!=": operator.ne,
}
_TYPES = ("str", "int", "float", "list", "weighted_list")
_COLUMN_OPTIONS = {
    "column", "type", "required", "default", "min", "max", "allowed", "regex",
    "prefix", "bucketize", "separator",
}
# "required" has no row to quarantine when a profile is built from many rows.
_FROM_EXPOSURES_OPTIONS = _COLUMN_OPTIONS - {"column", "required"} | {"from_exposures"}
_SOURCE_KINDS = ("column", "const", "flag_columns", "first_of")
_SOURCELESS_KINDS = ("const", "first_of", "from_exposures", "first_seen")
_ALL_KINDS = _SOURCE_KINDS + ("from_exposures", "first_seen")
FIRST_SEEN_FORMATS = {"year": "%Y", "month": "%Y-%m"}
# Parsed exposures carry the `from_exposures` values here ({table: {field:
# value}}) until the profiles are built; examples never copy this key.
CARRIED_KEY = "_from_exposures"
# Cold-start studies call users with at most 10 interactions cold or sparse.
SPARSIFY_MAX_KEEP = 10

# Canonical fields every mapping must provide, per table (with a source).
REQUIRED_FIELDS = {
    "exposures": (features.TIMESTAMP, features.USER_ID, features.ITEM_ID),
    "users": (features.USER_ID,),
    "items": (features.ITEM_ID,),
}
# Canonical profile fields, filled with defaults when a mapping leaves them out.
PROFILE_FIELDS = {
    "users": {
        **{key: "" for key in features.USER_CATEGORICAL},
        **{key: [] for key in features.USER_PREFERENCE_LISTS},
    },
    "items": {
        features.CAT1: "", features.CAT2: "", features.AUTHOR_ID: "",
        features.TAGS: [], features.DURATION_S: 0.0,
    },
}
_KEY_FIELDS = {features.TIMESTAMP, features.USER_ID, features.ITEM_ID}


class RowError(Exception):
  """A raw row that cannot be ingested; `reason` is a short, countable code."""

  def __init__(self, reason: str, detail: str):
    super().__init__(f"{reason}: {detail}")
    self.reason = reason
    self.detail = detail


@dataclasses.dataclass(frozen=True)
class SourceConfig:
  """Where one input lives and how its lines are encoded."""
  pattern: str
  format: str = "jsonl"
  # One character: split by Python's csv rules (quoting); longer (MovieLens
  # 1M's "::"): a plain split, since the csv module takes one character only.
  delimiter: str = ","
  # True: the first line of every file is a header; False: none; "auto": skip
  # the first line only when it equals `columns` (for data found both ways).
  header: Any = True
  columns: Optional[Tuple[str, ...]] = None
  encoding: str = "utf-8"
  # Longer lines are quarantined as `oversized_row` before they are decoded: a
  # runaway field (a log bug, a pasted blob) would otherwise be parsed, joined
  # and shuffled with every exposure.
  max_line_bytes: int = 1 << 20

  def __post_init__(self):
    if self.max_line_bytes <= 0:
      raise ValueError(f"max_line_bytes must be > 0. Received: {self.max_line_bytes}")
    if self.format not in FORMATS:
      raise ValueError(f"format must be one of {FORMATS}. Received: {self.format!r}")
    if not isinstance(self.delimiter, str) or not self.delimiter:
      raise ValueError(f"delimiter must be a non-empty string. Received: {self.delimiter!r}")
    if self.header not in (True, False, "auto"):
      raise ValueError(f"header must be true, false or \"auto\". Received: {self.header!r}")
    if self.format == "csv" and self.header is not True and not self.columns:
      raise ValueError("A csv source without a sure header needs 'columns'.")

  def split_cells(self, text: str) -> List[str]:
    """One CSV line's cells, by `delimiter` (see there)."""
    if len(self.delimiter) > 1:
      return text.split(self.delimiter)
    import csv  # pylint: disable=g-import-not-at-top
    return next(csv.reader([text], delimiter=self.delimiter))


@dataclasses.dataclass(frozen=True)
class DeriveConfig:
  """Point-in-time derivation parameters (docs/design.md §3)."""
  history_length: int = 100
  negatives_length: int = 20
  activity_window_days: float = 30.0
  # A user is low-active when valid consumptions in the trailing window < this.
  low_activity_threshold: int = 5
  # If set, the threshold is instead chosen from the data so that about this
  # share of users (by valid consumptions over the whole log) fall under it.
  low_activity_share: Optional[float] = None
  # An item is tail when its exposures before ts < this.
  tail_item_threshold: int = 100

  def __post_init__(self):
    for name in ("history_length", "negatives_length", "low_activity_threshold",
                 "tail_item_threshold"):
      if getattr(self, name) < 0:
        raise ValueError(f"derive.{name} must be >= 0. Received: {getattr(self, name)}")
    if self.low_activity_share is not None and not 0 < self.low_activity_share < 1:
      raise ValueError("derive.low_activity_share must be in (0, 1). "
                       f"Received: {self.low_activity_share}")
    if self.activity_window_days <= 0:
      raise ValueError("derive.activity_window_days must be > 0. "
                       f"Received: {self.activity_window_days}")


@dataclasses.dataclass(frozen=True)
class SplitConfig:
  """Train/eval split by time: `global` (last days) or `per_user` (last fraction).

  `holdout: "validation"` cuts a validation split out of the training data for
  tuning: the eval rows are left out altogether (never seen, not even in a
  history or a count), and the same rule applied to the remaining training
  rows picks the rows written as the `eval` split (per_user: the last
  `eval_fraction` of them; global: the `eval_days` before the eval start).
  """
  mode: str = "global"
  eval_days: float = 2.0
  eval_fraction: float = 0.2
  holdout: str = "eval"

  def __post_init__(self):
    if self.mode not in ("global", "per_user"):
      raise ValueError(f"split.mode must be 'global' or 'per_user'. Received: {self.mode!r}")
    if self.holdout not in HOLDOUTS:
      raise ValueError(f"split.holdout must be one of {HOLDOUTS}. Received: {self.holdout!r}")
    if self.eval_days <= 0:
      raise ValueError(f"split.eval_days must be > 0. Received: {self.eval_days}")
    if not 0.0 < self.eval_fraction < 1.0:
      raise ValueError(f"split.eval_fraction must be in (0, 1). Received: {self.eval_fraction}")



@dataclasses.dataclass(frozen=True)
class SparsifyConfig:
  """Cuts a seeded share of users down to their first `keep` train interactions.

  The way cold-start studies make MovieLens long-tailed. A user is chosen when
  a hash of f"{seed}:{user_id}" falls under `share` (`chooses`), so every runner
  and shard picks the same users. A chosen user's later train rows never
  happened: they are dropped before the item counts, the user's history and the
  examples see them (counted in the summary, not quarantined). The split is
  still decided on the user's whole sequence, so the eval rows are the ones a
  run without sparsify has (their history then holds the kept train rows only).

  Attributes:
    share: share of users chosen, in (0, 1].
    keep: train interactions a chosen user keeps (by time), 1 .. 10.
    seed: seed of the choice.
  """
  share: float = 0.3
  keep: int = 3
  seed: int = 0

  def __post_init__(self):
    if (isinstance(self.keep, bool) or not isinstance(self.keep, int)
        or not 1 <= self.keep <= SPARSIFY_MAX_KEEP):
      raise ValueError(f"sparsify.keep must be an integer in [1, {SPARSIFY_MAX_KEEP}]. "
                       f"Received: {self.keep!r}")
    if (isinstance(self.share, bool) or not isinstance(self.share, (int, float))
        or not 0 < self.share <= 1):
      raise ValueError(f"sparsify.share must be a number in (0, 1]. Received: {self.share!r}")
    if isinstance(self.seed, bool) or not isinstance(self.seed, int):
      raise ValueError(f"sparsify.seed must be an integer. Received: {self.seed!r}")

  @classmethod
  def from_dict(cls, raw: Any) -> "SparsifyConfig":
    if not isinstance(raw, dict):
      raise ValueError(f"sparsify must be an object. Received: {raw!r}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = set(raw) - set(known)
    if unknown:
      raise ValueError(f"Unknown sparsify keys {sorted(unknown)}; known: {known}")
    return cls(**raw)

  def chooses(self, user_id: str) -> bool:
    """Whether `user_id` is sparsified: a stable hash, not Python's salted hash()."""
    digest = hashlib.sha256(f"{self.seed}:{user_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < self.share


@dataclasses.dataclass(frozen=True)
class MappingConfig:
  """A whole mapping: sources, field specs, label rules, derivation, split."""
  name: str
  sources: Dict[str, SourceConfig]
  fields: Dict[str, Dict[str, Dict[str, Any]]]
  labels: Dict[str, Dict[str, Any]]
  derive: DeriveConfig = DeriveConfig()
  split: SplitConfig = SplitConfig()
  sparsify: Optional[SparsifyConfig] = None

  def __post_init__(self):
    for what, keys in (("sources", self.sources), ("fields", self.fields)):
      unknown = set(keys) - set(TABLES)
      if unknown:
        raise ValueError(f"Mapping {self.name!r}: unknown tables in {what}: {sorted(unknown)}; "
                         f"known: {list(TABLES)}")
    if "exposures" not in self.sources:
      raise ValueError(f"Mapping {self.name!r} has no source for 'exposures'.")
    for table in TABLES:
      table_fields = self.fields.get(table, {})
      has_source = table in self.sources
      for key in REQUIRED_FIELDS[table] if has_source else ():
        if key not in table_fields:
          raise ValueError(f"Mapping {self.name!r}: fields.{table} lacks {key!r}.")
      for key, spec in table_fields.items():
        _validate_spec(table, key, spec, has_source)
    for key in self.labels:
      if key not in features.LABEL_KEYS:
        raise ValueError(f"Unknown label {key!r}; known: {features.LABEL_KEYS}")
    for key in features.LABEL_KEYS:
      rule = self.labels.get(key, {"const": 0})
      if "const" not in rule and rule.get("field") not in self.fields["exposures"]:
        raise ValueError(f"labels.{key} reads field {rule.get('field')!r}, "
                         "which fields.exposures does not define.")
      if "op" in rule and rule["op"] not in _OPS:
        raise ValueError(f"labels.{key}.op must be one of {sorted(_OPS)}. "
                         f"Received: {rule['op']!r}")

  @classmethod
  def from_dict(cls, raw: Dict[str, Any]) -> "MappingConfig":
    known = {"name", "sources", "fields", "labels", "derive", "split", "sparsify"}
    unknown = set(raw) - known
    if unknown:
      raise ValueError(f"Unknown mapping keys {sorted(unknown)}; known: {sorted(known)}")
    sources = {}
    source_keys = {f.name for f in dataclasses.fields(SourceConfig)}
    for table, src in raw.get("sources", {}).items():
      src = dict(src)
      unknown = set(src) - source_keys
      if unknown:
        raise ValueError(f"Unknown keys in sources.{table}: {sorted(unknown)}; "
                         f"known: {sorted(source_keys)}")
      if src.get("columns") is not None:
        src["columns"] = tuple(src["columns"])
      try:
        sources[table] = SourceConfig(**src)
      except ValueError as e:
        raise ValueError(f"sources.{table}: {e}") from e
    sparsify = raw.get("sparsify")
    return cls(
        name=raw.get("name", "unnamed"),
        sources=sources,
        fields=raw.get("fields", {}),
        labels=raw.get("labels", {}),
        derive=DeriveConfig(**raw.get("derive", {})),
        split=SplitConfig(**raw.get("split", {})),
        sparsify=None if sparsify is None else SparsifyConfig.from_dict(sparsify),
    )

  @classmethod
  def from_json(cls, text: str) -> "MappingConfig":
    return cls.from_dict(json.loads(text))

  def to_json(self) -> str:
    raw = dataclasses.asdict(self)
    # A mapping without these keeps the JSON it had, and so TFX's cache key.
    if self.sparsify is None:
      del raw["sparsify"]
    if self.split.holdout == "eval":
      del raw["split"]["holdout"]
    return json.dumps(raw, sort_keys=True)

  @property
  def cuts_user_rows(self) -> bool:
    """Whether a per-user pass drops rows before the item sweep (sparsify, validation)."""
    return self.sparsify is not None or self.split.holdout != "eval"

  def with_validation_holdout(self) -> "MappingConfig":
    """A copy whose `eval` split is a validation split cut from train (see `SplitConfig`)."""
    return dataclasses.replace(self, name=f"{self.name}-validation",
                               split=dataclasses.replace(self.split, holdout="validation"))

  def with_sparsify(self, keep: int, share: float = 0.3, seed: int = 0) -> "MappingConfig":
    """A copy that sparsifies users (see `SparsifyConfig`), under a derived name.

    Example:
      mapping = load_mapping(configs.packaged_mapping("movielens-100k"))
      mapping.with_sparsify(3).name  # "movielens-100k-sparse3"

    Raises:
      ValueError: `keep`, `share` or `seed` out of range (naming `sparsify.<key>`).
    """
    sparsify = SparsifyConfig(share=share, keep=keep, seed=seed)
    name = f"{self.name}-sparse{keep}"
    if share != SparsifyConfig.share:
      name += f"-share{share:g}"
    if seed != SparsifyConfig.seed:
      name += f"-seed{seed}"
    return dataclasses.replace(self, name=name, sparsify=sparsify)


def load_mapping(path: str) -> MappingConfig:
  """Reads a mapping config file (local path or any tf.io.gfile URI)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(path) as f:
    return MappingConfig.from_json(f.read())


def _validate_spec(table: str, key: str, spec: Dict[str, Any], has_source: bool) -> None:
  where = f"fields.{table}.{key}"
  if not isinstance(spec, dict):
    raise ValueError(f"{where} must be an object. Received: {spec!r}")
  allowed = _SOURCE_KINDS if has_source else _SOURCELESS_KINDS
  kinds = [k for k in _ALL_KINDS if k in spec]
  if len(kinds) != 1:
    raise ValueError(f"{where} needs exactly one of {'/'.join(allowed)}. Received: {spec}")
  (kind,) = kinds
  if kind not in allowed:
    if has_source:
      raise ValueError(
          f"{where} uses {kind!r}, which only a users or items table without a source "
          f"takes, and sources.{table} is set. Received: {spec}")
    raise ValueError(
        f"{where} uses {kind!r}, but the mapping has no sources.{table}: a table without a "
        f"source takes only {'/'.join(allowed)}. Received: {spec}")
  if not has_source and key == PROFILE_IDS[table]:
    raise ValueError(f"{where}: a {table} table without a source is keyed by the exposures' "
                     f"{key}; drop this spec. Received: {spec}")
  options = {"column": _COLUMN_OPTIONS, "from_exposures": _FROM_EXPOSURES_OPTIONS,
             "first_seen": {"first_seen"}}.get(kind)
  if options is not None:
    unknown = set(spec) - options
    if unknown:
      raise ValueError(f"{where} has unknown options {sorted(unknown)}; known: {sorted(options)}")
  if kind in ("column", "from_exposures") and spec.get("type", "str") not in _TYPES:
    raise ValueError(f"{where}.type must be one of {_TYPES}. Received: {spec['type']!r}")
  if kind == "from_exposures" and (not isinstance(spec[kind], str) or not spec[kind]):
    raise ValueError(f"{where}.from_exposures must name an exposure column. "
                     f"Received: {spec[kind]!r}")
  if kind == "first_seen" and spec[kind] not in FIRST_SEEN_FORMATS:
    raise ValueError(f"{where}.first_seen must be one of {sorted(FIRST_SEEN_FORMATS)}. "
                     f"Received: {spec[kind]!r}")


# --- parsing -------------------------------------------------------------------


def split_line(line: bytes, source: SourceConfig,
               header: Optional[List[str]]) -> Dict[str, Any]:
  """Decodes one raw line into a column -> value dict.

  Raises:
    RowError: `oversized_row` when the line is longer than the source's
      `max_line_bytes`; `unparseable_row` when it cannot be decoded.
  """
  if len(line) > source.max_line_bytes:
    raise RowError("oversized_row",
                   f"{len(line)} bytes > max_line_bytes {source.max_line_bytes}")
  try:
    text = line.decode(source.encoding)
  except UnicodeDecodeError as e:
    raise RowError("unparseable_row", f"not {source.encoding}: {e}") from e
  text = text.rstrip("\r\n")
  if source.format == "jsonl":
    try:
      row = json.loads(text)
    except ValueError as e:
      raise RowError("unparseable_row", f"invalid JSON: {e}") from e
    if not isinstance(row, dict):
      raise RowError("unparseable_row", "a JSON line must be an object")
    return row
  import csv  # pylint: disable=g-import-not-at-top
  try:
    cells = source.split_cells(text)
  except csv.Error as e:  # e.g. a cell over csv's field size limit
    raise RowError("unparseable_row", f"not CSV: {e}") from e
  names = list(source.columns or header or [])
  if len(cells) != len(names):
    raise RowError("unparseable_row",
                   f"expected {len(names)} columns, got {len(cells)} "
                   f"(delimiter {source.delimiter!r})")
  return dict(zip(names, cells))


def parse_header(line: bytes, source: SourceConfig) -> List[str]:
  """Column names from a CSV header line (whitespace around names stripped)."""
  text = line.decode(source.encoding).rstrip("\r\n")
  return [name.strip() for name in source.split_cells(text)]


def _is_missing(value: Any) -> bool:
  return value is None or (isinstance(value, str) and value.strip() == "")


def _coerce(key: str, value: Any, spec: Dict[str, Any]) -> Any:
  kind = spec.get("type", "str")
  try:
    if kind == "int":
      as_float = float(value)
      if not math.isfinite(as_float) or as_float != int(as_float):
        raise ValueError("not an integer")
      return int(as_float)
    if kind == "float":
      out = float(value)
      # JSON lines may carry NaN and Infinity (Python's json reads both); either
      # would reach a label or a scaled feature and poison the loss.
      if not math.isfinite(out):
        raise ValueError("not finite")
      return out
    if kind in ("list", "weighted_list"):
      items = value if isinstance(value, list) else [
          v for v in str(value).split(spec.get("separator", ",")) if v.strip()]
      items = [str(v).strip() for v in items]
      if kind == "list":
        return items
      return _names_by_weight(items)
    return str(value).strip()
  except (TypeError, ValueError) as e:
    raise RowError(f"invalid_value:{key}", f"{value!r} is not {kind}: {e}") from e


def _names_by_weight(items: List[str]) -> List[str]:
  """["a:0.2", "b:0.8"] -> ["b", "a"]: names, highest weight first."""
  weighted = []
  for item in items:
    name, _, weight = item.rpartition(":")
    if not name:
      name, weight = weight, "1"
    weighted.append((-float(weight), name))
  return [name for _, name in sorted(weighted)]


def _apply_column_spec(key: str, row: Dict[str, Any], spec: Dict[str, Any]) -> Any:
  required = spec.get("required", key in _KEY_FIELDS)
  value = row.get(spec["column"])
  if _is_missing(value):
    if required:
      raise RowError(f"missing_field:{key}", f"column {spec['column']!r} is empty or absent")
    if "default" in spec:
      return spec["default"]
    return PROFILE_FIELDS["items"].get(key, PROFILE_FIELDS["users"].get(key, ""))
  if "regex" in spec:
    match = re.search(spec["regex"], str(value))
    if not match:
      raise RowError(f"invalid_value:{key}", f"{value!r} does not match {spec['regex']!r}")
    value = match.group(1)
  if "prefix" in spec:
    value = str(value).strip()[: int(spec["prefix"])]
  if "bucketize" in spec:
    number = _coerce(key, value, {"type": "float"})
    bounds = spec["bucketize"]
    value = next((f"lt{b}" for b in bounds if number < b), f"ge{bounds[-1]}")
    return value
  value = _coerce(key, value, spec)
  if "min" in spec and value < spec["min"]:
    raise RowError(f"invalid_value:{key}", f"{value!r} < min {spec['min']}")
  if "max" in spec and value > spec["max"]:
    raise RowError(f"invalid_value:{key}", f"{value!r} > max {spec['max']}")
  if "allowed" in spec and value not in spec["allowed"]:
    raise RowError(f"invalid_value:{key}", f"{value!r} not in {spec['allowed']}")
  return value


def map_row(table: str, row: Dict[str, Any], mapping: MappingConfig) -> Dict[str, Any]:
  """Maps a raw row of `table` onto its canonical fields.

  Returns:
    A dict with every canonical field of the table (defaults filled in).
  Raises:
    RowError: naming the first field that is missing or invalid.
  """
  specs = mapping.fields[table]
  out: Dict[str, Any] = dict(PROFILE_FIELDS.get(table, {}))
  deferred = []
  for key, spec in specs.items():
    if "column" in spec:
      out[key] = _apply_column_spec(key, row, spec)
    elif "const" in spec:
      out[key] = spec["const"]
    elif "flag_columns" in spec:
      out[key] = [c for c in spec["flag_columns"]
                  if str(row.get(c, "0")).strip() not in ("", "0", "false", "False")]
    else:
      deferred.append((key, spec))
  apply_first_of(out, deferred)
  return out


def apply_first_of(out: Dict[str, Any], specs: List[Tuple[str, Dict[str, Any]]]) -> None:
  """Sets each (key, "first_of" spec) in `out` from the fields already in it."""
  for key, spec in specs:
    values = out.get(spec["first_of"]) or [spec.get("default", "")]
    out[key] = values[0]


def carried_values(row: Dict[str, Any], mapping: MappingConfig) -> Dict[str, Dict[str, Any]]:
  """The `from_exposures` fields of one raw exposure row, {table: {field: value}}.

  Each value is mapped by its spec's "column" options now, so a bad value
  quarantines the exposure that carries it (like any exposure column) rather
  than a whole profile later; empty values are left out (the profile then
  takes the id's next exposure that has one, or the default).

  Raises:
    RowError: `invalid_value:<field>` when a present value fails its spec.
  """
  out: Dict[str, Dict[str, Any]] = {}
  for table in PROFILE_IDS:
    if table in mapping.sources:
      continue
    for key, spec in mapping.fields.get(table, {}).items():
      if "from_exposures" not in spec:
        continue
      column = spec["from_exposures"]
      value = row.get(column)
      # A scalar field of a list value takes its first element, nested lists
      # too: Amazon's category path (2014: a list of paths) -> its top level.
      while isinstance(value, list) and spec.get("type", "str") not in ("list", "weighted_list"):
        value = next((v for v in value if not _is_missing(v) and v != []), None)
      if _is_missing(value) or value == []:
        continue
      column_spec = {k: v for k, v in spec.items() if k != "from_exposures"}
      column_spec.update(column=column, required=False)
      mapped = _apply_column_spec(key, {column: value}, column_spec)
      if mapped not in ("", []):
        out.setdefault(table, {})[key] = mapped
  return out


def labels_for(exposure: Dict[str, Any], mapping: MappingConfig) -> Dict[str, Any]:
  """Applies the label rules to a mapped exposure."""
  out = {}
  for key in features.LABEL_KEYS:
    rule = mapping.labels.get(key, {"const": 0})
    if "const" in rule:
      value = rule["const"]
    elif "op" in rule:
      value = int(_OPS[rule["op"]](exposure[rule["field"]], rule["value"]))
    else:
      value = float(exposure[rule["field"]])
    out[key] = float(value) if key == features.LABEL_WATCH else int(value)
  return out
