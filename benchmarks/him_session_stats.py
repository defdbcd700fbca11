"""What HIM's reorganization (section 3.1) sees in a dataset's examples.

HIM picks its session boundaries near the 10%, 30% and 50% quantiles of the
behaviour's time intervals (its Figure 4) and re-ranks each session by
interaction frequency. This prints, for the history and the negatives of the
examples of an Examples split: the quantiles of the entries' ages at the
exposure (the intervals HIM means), the share of entries per session for the
configured boundaries, and how often an item occurs more than once in one
session (when never, frequency re-ranking leaves the recency order).

    python -m benchmarks.him_session_stats \
        --examples runs/quality-him/movielens-100k/pipeline/pipeline_root/RawLogExampleGen/examples/<id>/Split-train

Saves benchmarks/results/him-session-stats-<name>.json when `--name` is given.
"""

import argparse
import collections
import json
import os
from typing import Any, Dict, List, Sequence

from duia import keras_env  # noqa: F401  pylint: disable=unused-import
import numpy as np

from duia import demo_requests
from duia.models import config as config_lib
from duia.models import features

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")
_DAY_S = 86400.0
QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)


def sequence_stats(rows: Sequence[Dict[str, Any]], ids_key: str, ts_key: str,
                   session_days: Sequence[float], length: int) -> Dict[str, Any]:
  """Age quantiles, session shares and repeat rates of one behaviour sequence.

  Args:
    rows: decoded examples (lists for sequences).
    ids_key, ts_key: the id list and its aligned Unix seconds.
    session_days: HIM's session boundaries in days.
    length: entries Transform keeps (the first `length`, most recent first).
  """
  ages: List[float] = []
  per_session = collections.Counter()
  repeated = collections.Counter()
  for row in rows:
    ids = row.get(ids_key) or []
    stamps = row.get(ts_key) or []
    if len(ids) != len(stamps):
      raise ValueError(f"{ids_key} and {ts_key} differ in length in an example of user "
                       f"{row.get(features.USER_ID)!r}: {len(ids)} != {len(stamps)}")
    counts = collections.Counter()
    for item, stamp in list(zip(ids, stamps))[:length]:
      age = max(row[features.TIMESTAMP] - stamp, 0) / _DAY_S
      ages.append(age)
      session = int(np.searchsorted(session_days, age, side="right"))
      per_session[session] += 1
      counts[(session, item)] += 1
    for (session, _), count in counts.items():
      if count > 1:
        repeated[session] += count
  total = len(ages)
  sessions = len(session_days) + 1
  return {
      "entries": total,
      "examples_with_entries": sum(1 for r in rows if r.get(ids_key)),
      "age_quantiles_days": {f"p{int(q * 100)}": round(float(np.quantile(ages, q)), 2)
                             for q in QUANTILES} if ages else {},
      "share_per_session": [round(per_session[s] / max(total, 1), 3) for s in range(sessions)],
      "share_repeated_in_session": round(sum(repeated.values()) / max(total, 1), 4),
  }


def main(argv=None) -> Dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--examples", required=True, help="an Examples split folder (Split-*)")
  parser.add_argument("--limit", type=int, default=50_000, help="examples to read at most")
  parser.add_argument("--name", default=None, help="save results as him-session-stats-<name>.json")
  args = parser.parse_args(argv)
  defaults = config_lib.TrainingConfig()
  session_days = list(defaults.him.session_days)
  rows = demo_requests.read_examples(args.examples, args.limit)
  results = {
      "examples": len(rows),
      "session_days": session_days,
      "history": sequence_stats(rows, features.HIST_ITEM_IDS, features.HIST_TS, session_days,
                                defaults.features.history_length),
      "negatives": sequence_stats(rows, features.NEG_ITEM_IDS, features.NEG_TS, session_days,
                                  defaults.features.negatives_length),
  }
  print(f"{len(rows)} examples; sessions by age in days: boundaries {session_days}")
  print("| sequence | entries | age p10 | p30 | p50 | p70 | p90 | share per session | "
        "repeated in a session |")
  print("|---|---|---|---|---|---|---|---|---|")
  for name in ("history", "negatives"):
    stats = results[name]
    q = stats["age_quantiles_days"]
    print(f"| {name} | {stats['entries']:,} | "
          + " | ".join(str(q.get(f"p{int(p * 100)}", "-")) for p in QUANTILES)
          + f" | {stats['share_per_session']} | {stats['share_repeated_in_session']:.2%} |")
  if args.name:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"him-session-stats-{args.name}.json")
    with open(path, "w") as f:
      json.dump(results, f, indent=1)
    print(f"saved {path}")
  return results


if __name__ == "__main__":
  main()
