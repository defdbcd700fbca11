"""Profiles of users or items that have no source table, built from their exposures.

A rating log (MovieLens 1M's `ratings.dat`, Amazon reviews) has no user or item
table, or none worth joining. Then each id's profile is built from that id's own
exposures, once per id in the keyed group-by that already holds them (by item
for items, by user for users), so it shards like the joins it replaces.

What goes in, and why it leaks nothing a profile table would not:
- `first_seen`: the UTC year or month of the id's first exposure. Every
  exposure of the id is at or after that ts, so each example's value was known
  at its own ts.
- `from_exposures`: a static attribute (an item's category) read off the
  exposure rows, from the earliest one that has it. An example before that
  exposure sees it too, exactly as it would see the column of an item table,
  which holds one value for all time; no behaviour (count, label, time) goes
  in. A column whose value changes over time is not a profile field and should
  not be mapped this way.
- No counts: the point-in-time counts (`item_prior_exposures`,
  `user_valid_count`) are derived per exposure, strictly before its ts; a count
  over the whole log would tell train rows the future.
"""

import datetime
import json
from typing import Any, Dict, Iterable

from duia.ingest import mapping as mapping_lib
from duia.models import features

# Earliest first; the other id breaks ties so every runner picks the same row.
_OTHER_ID = {"users": features.ITEM_ID, "items": features.USER_ID}


def first_seen(ts: float, unit: str) -> str:
  """"2014" (unit "year") or "2014-03" ("month") of unix seconds `ts`, in UTC."""
  when = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
  return when.strftime(mapping_lib.FIRST_SEEN_FORMATS[unit])


def build_profile(table: str, key: str, exposures: Iterable[Dict[str, Any]],
                  mapping: mapping_lib.MappingConfig) -> Dict[str, Any]:
  """The canonical profile of one id of a table without a source.

  Args:
    table: "users" or "items".
    key: the id (user_id or item_id).
    exposures: the id's exposures (at least one), as parsed: with their
      `mapping_lib.CARRIED_KEY` values.
    mapping: the mapping config (`fields.<table>`).

  Returns:
    Every canonical field of the table: the id, the fields the mapping derives,
    and `mapping_lib.PROFILE_FIELDS` defaults for the rest.
  """
  rows = list(exposures)
  if not rows:
    raise ValueError(f"A {table} profile needs exposures. Received none for {key!r}")
  out: Dict[str, Any] = dict(mapping_lib.PROFILE_FIELDS[table])
  out[mapping_lib.PROFILE_IDS[table]] = key
  deferred = []
  for field, spec in mapping.fields.get(table, {}).items():
    if "const" in spec:
      out[field] = spec["const"]
    elif "first_seen" in spec:
      out[field] = first_seen(min(r[features.TIMESTAMP] for r in rows), spec["first_seen"])
    elif "from_exposures" in spec:
      out[field] = _earliest_value(table, field, spec, rows)
    else:
      deferred.append((field, spec))
  mapping_lib.apply_first_of(out, deferred)
  return out


def _earliest_value(table: str, field: str, spec: Dict[str, Any], rows) -> Any:
  best = None
  for row in rows:
    carried = row.get(mapping_lib.CARRIED_KEY, {}).get(table, {})
    if field in carried:
      # The value itself breaks the last ties (two rows, same ts and ids).
      rank = (row[features.TIMESTAMP], str(row[_OTHER_ID[table]]),
              json.dumps(carried[field], sort_keys=True))
      if best is None or rank < best[0]:
        best = (rank, carried[field])
  if best is not None:
    return best[1]
  if "default" in spec:
    return spec["default"]
  return mapping_lib.PROFILE_FIELDS[table].get(field, "")
