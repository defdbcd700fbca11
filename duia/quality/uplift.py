"""Seed-paired summaries of per-seed metrics and of TFMA's diffs against PLE.

Pure Python over the harness's plain dicts, so it is tested on hand-made
numbers. Two kinds of spread are kept apart:

- over seeds: mean and sample standard deviation (n - 1) of a metric, and of
  the paired difference variant - PLE of the same seed (same eval rows, same
  seed), i.e. the training noise on one fixed eval set;
- over eval rows: TFMA's 95% interval of each seed's diff (jackknife or
  Poisson bootstrap over the eval examples). Summarised as the mean of the
  per-seed bounds, a conservative pooled interval: every seed is scored on
  the same rows, so their sampling errors are positively correlated and the
  seed-averaged diff's interval is at most this wide. The number of seeds
  whose own interval lies above (below) zero is kept too.
"""

import math
import statistics
from typing import Any, Dict, Mapping, Optional, Sequence


def mean_std(values: Sequence[float]) -> Dict[str, Any]:
  """{"mean", "std" (sample, n - 1; None for one value), "n"}.

  Raises:
    ValueError: no values.
  """
  if not values:
    raise ValueError("mean_std needs at least one value. Received: []")
  std = statistics.stdev(values) if len(values) > 1 else None
  return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def pooled_interval(per_seed: Sequence[Mapping[str, float]]) -> Dict[str, Any]:
  """Mean of per-seed TFMA bounds, and how many seeds' intervals exclude zero.

  Args:
    per_seed: {"value", "lower", "upper"} per seed; entries without bounds are
      left out of the pooled bounds.

  Returns:
    {"lower", "upper" (None when no seed has bounds), "seeds_with_interval",
    "seeds_above_zero", "seeds_below_zero"}.
  """
  bounded = [d for d in per_seed if "lower" in d and "upper" in d]
  return {
      "lower": statistics.fmean(d["lower"] for d in bounded) if bounded else None,
      "upper": statistics.fmean(d["upper"] for d in bounded) if bounded else None,
      "seeds_with_interval": len(bounded),
      "seeds_above_zero": sum(1 for d in bounded if d["lower"] > 0),
      "seeds_below_zero": sum(1 for d in bounded if d["upper"] < 0),
  }


def _metric(run: Mapping[str, Any], group: str, slice_name: str,
            metric: str) -> Optional[Mapping[str, float]]:
  entry = ((run.get(group) or {}).get(slice_name) or {}).get(metric)
  if entry is None or entry.get("value") is None or math.isnan(entry["value"]):
    return None
  return entry


def summarize_variant(runs: Sequence[Mapping[str, Any]], baselines: Mapping[int, Mapping[str, Any]],
                      slices: Sequence[str], metric: str) -> Dict[str, Dict[str, Any]]:
  """Per slice: the metric over seeds and the seed-paired uplift over PLE.

  Args:
    runs: one run per seed of one variant, each {"seed", "metrics",
      "diff_vs_ple"} as the harness stores them ({slice: {metric: {"value",
      "lower", "upper", ...}}}).
    baselines: seed -> the PLE run of that seed (the pairing).
    slices: slice names to summarise.
    metric: "<output>/<name>", e.g. "valid_consumption/auc".

  Returns:
    {slice: {"mean", "std", "n", "per_seed": {"<seed>": value},
     "interval": pooled_interval of the values' own TFMA bounds,
     "uplift": None or {"mean", "std", "n", "per_seed": {"<seed>": value},
                        "interval": pooled_interval(...)}}}.
    The uplift of a seed is TFMA's diff where it is there, else the plain
    difference of the two values (then without bounds).

  Raises:
    ValueError: a run's seed has no PLE run.
  """
  out = {}
  for slice_name in slices:
    values, entries, diffs = {}, {}, {}
    for run in runs:
      seed = run["seed"]
      value = _metric(run, "metrics", slice_name, metric)
      if value is None:
        continue
      values[str(seed)] = value["value"]
      entries[str(seed)] = value
      if run.get("variant") == "ple":
        continue
      if seed not in baselines:
        raise ValueError(f"No PLE run for seed {seed} to pair {run.get('name')} with; "
                         f"PLE seeds: {sorted(baselines)}")
      diff = _metric(run, "diff_vs_ple", slice_name, metric)
      if diff is None:
        base = _metric(baselines[seed], "metrics", slice_name, metric)
        if base is None:
          continue
        diff = {"value": value["value"] - base["value"]}
      diffs[str(seed)] = diff
    if not values:
      continue
    summary = dict(mean_std(list(values.values())), per_seed=values,
                   interval=pooled_interval(list(entries.values())), uplift=None)
    if diffs:
      summary["uplift"] = dict(mean_std([d["value"] for d in diffs.values()]),
                               per_seed={s: d["value"] for s, d in diffs.items()},
                               interval=pooled_interval(list(diffs.values())))
    out[slice_name] = summary
  return out
