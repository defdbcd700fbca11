"""Mapping config: how a log's columns map onto the data contract.

A mapping config is a JSON file (see `duia/configs/*.json`) that names, for each
of the three inputs (exposures, users, items), where the files are, their format,
and how each canonical field is computed from the raw columns; plus the label
rules, the point-in-time derivation parameters and the split. Other logs ingest
by writing a new mapping config; no code changes (DESIGN section 3).

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

Label rules (`labels.<label key>`): {"field": f, "op": ">=", "value": v} gives
0/1; {"field": f} gives the field's value as float; {"const": v}.
"""

import dataclasses
import json
import math
import operator
import re
from typing import Any, Dict, List, Optional, Tuple

from duia.models import features

TABLES = ("exposures", "users", "items")
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

# Canonical fields every mapping must provide, per table.
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
    if self.header not in (True, False, "auto"):
      raise ValueError(f"header must be true, false or \"auto\". Received: {self.header!r}")
    if self.format == "csv" and self.header is not True and not self.columns:
      raise ValueError("A csv source without a sure header needs 'columns'.")


@dataclasses.dataclass(frozen=True)
class DeriveConfig:
  """Point-in-time derivation parameters (DESIGN section 3)."""
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
  """Train/eval split by time: `global` (last days) or `per_user` (last fraction)."""
  mode: str = "global"
  eval_days: float = 2.0
  eval_fraction: float = 0.2

  def __post_init__(self):
    if self.mode not in ("global", "per_user"):
      raise ValueError(f"split.mode must be 'global' or 'per_user'. Received: {self.mode!r}")
    if self.eval_days <= 0:
      raise ValueError(f"split.eval_days must be > 0. Received: {self.eval_days}")
    if not 0.0 < self.eval_fraction < 1.0:
      raise ValueError(f"split.eval_fraction must be in (0, 1). Received: {self.eval_fraction}")


@dataclasses.dataclass(frozen=True)
class MappingConfig:
  """A whole mapping: sources, field specs, label rules, derivation, split."""
  name: str
  sources: Dict[str, SourceConfig]
  fields: Dict[str, Dict[str, Dict[str, Any]]]
  labels: Dict[str, Dict[str, Any]]
  derive: DeriveConfig = DeriveConfig()
  split: SplitConfig = SplitConfig()

  def __post_init__(self):
    for table in TABLES:
      if table not in self.sources:
        raise ValueError(f"Mapping {self.name!r} has no source for {table!r}.")
      table_fields = self.fields.get(table, {})
      for key in REQUIRED_FIELDS[table]:
        if key not in table_fields:
          raise ValueError(f"Mapping {self.name!r}: fields.{table} lacks {key!r}.")
      for key, spec in table_fields.items():
        _validate_spec(f"fields.{table}.{key}", spec)
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
    known = {"name", "sources", "fields", "labels", "derive", "split"}
    unknown = set(raw) - known
    if unknown:
      raise ValueError(f"Unknown mapping keys {sorted(unknown)}; known: {sorted(known)}")
    sources = {}
    for table, src in raw.get("sources", {}).items():
      src = dict(src)
      if src.get("columns") is not None:
        src["columns"] = tuple(src["columns"])
      sources[table] = SourceConfig(**src)
    return cls(
        name=raw.get("name", "unnamed"),
        sources=sources,
        fields=raw.get("fields", {}),
        labels=raw.get("labels", {}),
        derive=DeriveConfig(**raw.get("derive", {})),
        split=SplitConfig(**raw.get("split", {})),
    )

  @classmethod
  def from_json(cls, text: str) -> "MappingConfig":
    return cls.from_dict(json.loads(text))

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)


def load_mapping(path: str) -> MappingConfig:
  """Reads a mapping config file (local path or any tf.io.gfile URI)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(path) as f:
    return MappingConfig.from_json(f.read())


def _validate_spec(where: str, spec: Dict[str, Any]) -> None:
  kinds = [k for k in ("column", "const", "flag_columns", "first_of") if k in spec]
  if len(kinds) != 1:
    raise ValueError(f"{where} needs exactly one of column/const/flag_columns/first_of. "
                     f"Received: {spec}")
  if "column" in spec:
    unknown = set(spec) - _COLUMN_OPTIONS
    if unknown:
      raise ValueError(f"{where} has unknown options {sorted(unknown)}")
    if spec.get("type", "str") not in _TYPES:
      raise ValueError(f"{where}.type must be one of {_TYPES}. Received: {spec['type']!r}")


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
  cells = next(csv.reader([text], delimiter=source.delimiter))
  names = list(source.columns or header or [])
  if len(cells) != len(names):
    raise RowError("unparseable_row",
                   f"expected {len(names)} columns, got {len(cells)}")
  return dict(zip(names, cells))


def parse_header(line: bytes, source: SourceConfig) -> List[str]:
  """Column names from a CSV header line (whitespace around names stripped)."""
  import csv  # pylint: disable=g-import-not-at-top
  text = line.decode(source.encoding).rstrip("\r\n")
  return [name.strip() for name in next(csv.reader([text], delimiter=source.delimiter))]


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
  for key, spec in deferred:  # first_of reads fields computed above.
    values = out.get(spec["first_of"]) or [spec.get("default", "")]
    out[key] = values[0]
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
