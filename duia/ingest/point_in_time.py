"""Point-in-time features: only data strictly before an exposure's `ts` is used.

Two sweeps, each over one key's exposures sorted by time, so both shard by key on
Beam (docs/design.md §8): per item (cumulative exposures -> `item_popularity`) and
per user (history, negatives with the ts of each entry, trailing activity ->
`user_activity`, split). With `sparsify` or a validation holdout on, a third
per-user pass before the item sweep cuts rows (`cut_user_exposures`).
"""

import bisect
import collections
import json
import math
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

from duia.ingest import mapping as mapping_lib
from duia.models import features

TRAIN, EVAL = "train", "eval"
_DAY_S = 86400.0
# The item fields every exposure gets from its item's profile.
ITEM_FIELDS = (features.CAT1, features.CAT2, features.AUTHOR_ID, features.TAGS,
               features.DURATION_S)
# A sparsified user's rows carry the split decided on the user's whole sequence.
SPLIT_KEY = "_split"


def sweep_order(row: Dict[str, Any]) -> Tuple[Any, Any]:
  """The order a user's sweep visits its exposures: by ts, ties by item id."""
  return row[features.TIMESTAMP], row[features.ITEM_ID]


def split_names(rows: List[Dict[str, Any]], split: mapping_lib.SplitConfig,
                eval_start_ts: float = math.inf) -> List[str]:
  """Train or eval for each of one user's rows, given in sweep order.

  Args:
    rows: the user's exposures sorted by (ts, item_id).
    split: `per_user` makes the last `eval_fraction` of the rows eval;
      `global`, the rows at or after `eval_start_ts`.
    eval_start_ts: first eval ts of the global split.
  """
  if split.mode == "per_user":
    first_eval = len(rows) - int(round(split.eval_fraction * len(rows)))
    return [EVAL if k >= first_eval else TRAIN for k in range(len(rows))]
  return [EVAL if row[features.TIMESTAMP] >= eval_start_ts else TRAIN for row in rows]


def holdout_names(rows: List[Dict[str, Any]], split: mapping_lib.SplitConfig,
                  eval_start_ts: float = math.inf) -> List[Optional[str]]:
  """`split_names` under `split.holdout`: None for the rows a validation holdout leaves out.

  With `holdout: "validation"` the eval rows are None (left out) and the
  remaining rows are split again by the same rule, their eval part being the
  validation rows (global: the `eval_days` before `eval_start_ts`).
  """
  names = split_names(rows, split, eval_start_ts)
  if split.holdout == "eval":
    return names
  train_rows = [row for row, name in zip(rows, names) if name == TRAIN]
  inner = iter(split_names(train_rows, split, eval_start_ts - split.eval_days * _DAY_S))
  return [next(inner) if name == TRAIN else None for name in names]


def cut_user_exposures(
    exposures: Iterable[Dict[str, Any]], mapping: mapping_lib.MappingConfig,
    eval_start_ts: float = math.inf,
    sparsify: bool = False) -> Tuple[List[Dict[str, Any]], int, int]:
  """One user's rows after the validation holdout and, if `sparsify`, the sparsify cut.

  The split is decided here, on the whole sequence, and stored on each kept row
  (`SPLIT_KEY`), so the user's eval rows are the ones a run without sparsify
  has; the sweep cannot decide it later from the kept rows alone. A sparsified
  user keeps the first `sparsify.keep` train rows and every eval row.

  Args:
    exposures: all exposures of one user.
    mapping: the mapping config (split, sparsify).
    eval_start_ts: first eval ts of the global split.
    sparsify: whether `mapping.sparsify` chose this user.

  Returns:
    (kept rows, each with `SPLIT_KEY`; train rows dropped by sparsify; eval
    rows left out by the validation holdout).
  """
  rows = sorted(exposures, key=sweep_order)
  kept, train_kept, held_out = [], 0, 0
  for row, name in zip(rows, holdout_names(rows, mapping.split, eval_start_ts)):
    if name is None:
      held_out += 1
      continue
    if name == TRAIN and sparsify:
      if train_kept == mapping.sparsify.keep:
        continue
      train_kept += 1
    kept.append(dict(row, **{SPLIT_KEY: name}))
  return kept, len(rows) - len(kept) - held_out, held_out


def split_duplicate_exposures(
    exposures: Iterable[Dict[str, Any]]) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
  """(kept, duplicates) of one item's exposures: identical rows kept once.

  A duplicate is a row whose every mapped field equals another's: the same
  impression logged twice, which would count twice in the item's popularity
  and give the user two examples and two history entries. Rows that share
  user, item and ts but differ in any field (two requests in one second, say)
  are distinct impressions and are all kept.
  """
  kept: Dict[str, Dict[str, Any]] = {}
  duplicates = []
  for row in exposures:
    key = json.dumps(row, sort_keys=True, default=str)
    if key in kept:
      duplicates.append(row)
    else:
      kept[key] = row
  return list(kept.values()), duplicates


def annotate_item_exposures(
    item: Dict[str, Any], exposures: Iterable[Dict[str, Any]],
    derive: mapping_lib.DeriveConfig) -> Iterator[Dict[str, Any]]:
  """Adds the item's features and its prior exposure count to each exposure.

  Args:
    item: the item's canonical fields.
    exposures: all exposures of this item (any order).
    derive: derivation parameters (tail threshold).

  Yields:
    Exposures with item fields, `item_prior_exposures` (exposures of this item
    with an earlier ts; ties do not count) and `item_popularity`.
  """
  rows = sorted(exposures, key=lambda e: e[features.TIMESTAMP])
  times = [e[features.TIMESTAMP] for e in rows]
  for row in rows:
    prior = bisect.bisect_left(times, row[features.TIMESTAMP])
    out = dict(row)
    for key in ITEM_FIELDS:
      out[key] = item[key]
    out[features.ITEM_PRIOR_EXPOSURES] = prior
    out[features.ITEM_POPULARITY] = (
        features.TAIL_ITEM if prior < derive.tail_item_threshold else features.HEAD_ITEM)
    yield out


def derive_user_examples(
    user: Dict[str, Any], exposures: Iterable[Dict[str, Any]],
    mapping: mapping_lib.MappingConfig,
    eval_start_ts: float = math.inf,
    low_activity_threshold: Optional[int] = None) -> Iterator[Tuple[str, Dict[str, Any]]]:
  """Sweeps one user's exposures in time order and yields (split, example).

  The specification of a user's examples, one row at a time; the ingestion
  runs `columnar_sweep.encode_user_examples`, which is tested against it.

  Exposures that share a timestamp see the same state: none of them is in
  another's history, since none happened strictly before the other.

  A row that carries `SPLIT_KEY` (a sparsified user's) goes to that split;
  the others are split by `split_names`.

  `hist_ts` and `neg_ts` carry the ts of each `hist_item_ids` and
  `neg_item_ids` entry, position for position (most recent first), so the
  lists stay aligned however long they are.

  Args:
    user: the user's canonical fields.
    exposures: the user's exposures, annotated with item fields and labels.
    mapping: the mapping config (derivation and split parameters).
    eval_start_ts: for the global split, exposures at or after it are eval.
    low_activity_threshold: overrides `mapping.derive.low_activity_threshold`
      (when it was chosen from the data).

  Yields:
    (split name, example dict with every raw feature and label key).
  """
  derive, split = mapping.derive, mapping.split
  if low_activity_threshold is None:
    low_activity_threshold = derive.low_activity_threshold
  rows = sorted(exposures, key=sweep_order)
  names = split_names(rows, split, eval_start_ts)
  # (item, cat1, cat2, ts) and (item, ts): one deque per list keeps the id
  # lists and their ts aligned when maxlen drops the oldest entry.
  history: collections.deque = collections.deque(maxlen=derive.history_length)
  negatives: collections.deque = collections.deque(maxlen=derive.negatives_length)
  window: collections.deque = collections.deque()  # ts of valid consumptions
  window_s = derive.activity_window_days * _DAY_S

  i = 0
  while i < len(rows):
    ts = rows[i][features.TIMESTAMP]
    j = i
    while j < len(rows) and rows[j][features.TIMESTAMP] == ts:
      j += 1
    while window and window[0] <= ts - window_s:
      window.popleft()
    # Most recent first, as the contract says.
    hist = list(reversed(history))
    negs = list(reversed(negatives))
    state = {
        features.HIST_ITEM_IDS: [h[0] for h in hist],
        features.HIST_CAT1: [h[1] for h in hist],
        features.HIST_CAT2: [h[2] for h in hist],
        features.HIST_TS: [h[3] for h in hist],
        features.NEG_ITEM_IDS: [n[0] for n in negs],
        features.NEG_TS: [n[1] for n in negs],
        features.USER_VALID_COUNT: len(window),
        features.USER_ACTIVITY: (features.LOW_ACTIVE
                                 if len(window) < low_activity_threshold
                                 else features.HIGH_ACTIVE),
    }
    for k in range(i, j):
      yield rows[k].get(SPLIT_KEY, names[k]), _example(user, rows[k], state)
    for k in range(i, j):  # state moves on only after the whole tie group
      row = rows[k]
      if row[features.LABEL_VALID]:
        history.append((row[features.ITEM_ID], row[features.CAT1], row[features.CAT2], ts))
        window.append(ts)
      else:
        negatives.append((row[features.ITEM_ID], ts))
    i = j


def _example(user: Dict[str, Any], row: Dict[str, Any],
             state: Dict[str, Any]) -> Dict[str, Any]:
  example = {key: user[key] for key in features.USER_CATEGORICAL +
             features.USER_PREFERENCE_LISTS}
  example.update(state)
  for key in ([features.TIMESTAMP, features.USER_ID, features.ITEM_ID,
               features.ITEM_PRIOR_EXPOSURES, features.ITEM_POPULARITY, features.TAGS,
               features.DURATION_S] + features.ITEM_CATEGORICAL + features.LABEL_KEYS):
    example[key] = row[key]
  return example


def threshold_for_share(users_by_count: Mapping[int, int], share: float) -> int:
  """The integer T for which the share of users with count < T is nearest `share`.

  Args:
    users_by_count: valid-consumption count -> number of users with that count.
    share: the wanted share of low-active users (docs/design.md §3: about 0.3).
  """
  total = sum(users_by_count.values())
  if total == 0:
    return 1
  best, best_gap, below = 1, math.inf, 0
  for t in range(0, max(users_by_count) + 2):
    gap = abs(below / total - share)
    if gap < best_gap and t > 0:
      best, best_gap = t, gap
    below += users_by_count.get(t, 0)
  return best


def global_eval_start(max_ts: float, split: mapping_lib.SplitConfig) -> float:
  """First ts of the eval split in global mode: the last `eval_days` days."""
  return max_ts - split.eval_days * _DAY_S
