"""Screens DUIA's (or HIM's) small-data knobs against PLE.

One switch at a time from the defaults, every setting trained for the same
seeds on the same Transform output, scored with scikit-learn exactly as
`benchmarks.variant_quality_bench` does (no TFMA: a screen, not the report;
the chosen setting then goes through `duia bench quality`). Prints
valid-consumption AUC (mean +- std over seeds) on low- and high-active users
and the seed-paired low-active uplift over PLE; saves
benchmarks/results/duia_tuning_<dataset>.json.

    python -m benchmarks.duia_tuning_bench --dataset movielens [--seeds 3]
    python -m benchmarks.duia_tuning_bench --dataset gen-100k --settings default,rate_0.01
    python -m benchmarks.duia_tuning_bench --dataset movielens --variant him   # HIM_SETTINGS
"""

import argparse
import json
import os
import statistics

from duia import keras_env  # noqa: F401  pylint: disable=unused-import
import tensorflow as tf

from benchmarks import variant_quality_bench as screen
from duia.models import autograph_rules

# name -> `duia` overrides; one knob moved from the default at a time.
SETTINGS = {
    "default": {},
    "n1_half": {"user_level1": 16, "item_level1": 32},
    "n1_double": {"user_level1": 64, "item_level1": 128},
    "k_8": {"user_children": 8, "item_children": 8},
    "k_2": {"user_children": 2, "item_children": 2},
    "rate_0.01": {"rate": 0.01},
    "rate_0.2": {"rate": 0.2},
    "memory_dim_16": {"memory_dim": 16},
    "enhancement_dim_32": {"enhancement_dim": 32},
    "sample_rate_1.0": {"sample_rate": 1.0},
}

# name -> `him` overrides, for --variant him. Session boundaries: the defaults
# (1, 7, 30 days); hours (MovieLens rates in bursts: half of its history is
# under 0.02 days old, benchmarks/him_session_stats.py); the generated logs'
# 10/30/50% age quantiles (0.4, 2.3, 4.4 days), HIM's own rule (Figure 4);
# one session (no split at all).
HIM_SETTINGS = {
    "default": {},
    "alpha_0.1": {"group_loss_weight": 0.1},
    "alpha_0": {"group_loss_weight": 0.0},
    "sessions_hours": {"session_days": [0.02, 0.1, 1.0]},
    "sessions_quantiles_gen": {"session_days": [0.4, 2.3, 4.4]},
    "one_session": {"session_days": []},
    "top_n_16": {"top_n": 16},
}


def _summary(runs, key):
  values = [r[key] for r in runs]
  return {"mean": round(statistics.fmean(values), 4),
          "std": round(statistics.stdev(values), 4) if len(values) > 1 else None}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset", default="movielens", help="movielens or gen-<N>k")
  parser.add_argument("--variant", default="duia")
  parser.add_argument("--settings", default=None,
                      help="comma-separated names (default: all of the variant's table)")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--work", default=os.path.join(screen.REPO, "runs", "tuning"))
  args = parser.parse_args()
  table = HIM_SETTINGS if args.variant == "him" else SETTINGS
  names = args.settings.split(",") if args.settings else list(table)
  unknown = [n for n in names if n not in table]
  if unknown:
    parser.error(f"unknown settings {unknown} for variant {args.variant}; known: {list(table)}")
  autograph_rules.skip_tf_keras_conversion()
  base, tf_transform_output, examples = screen.prepare(args.dataset, args.work)
  train_rows = sum(1 for _ in tf.data.TFRecordDataset(
      tf.io.gfile.glob(os.path.join(examples, "Split-train", "*.gz")), compression_type="GZIP"))
  steps = max(100, int(train_rows / base.training.batch_size))  # one epoch

  def runs_of(variant, overrides):
    runs = []
    for seed in range(args.seeds):
      if variant == "him":
        override = {"duia": {"variant": variant}, "him": overrides}
      else:
        override = {"duia": dict(overrides, variant=variant)}
      config = base.training.override(dict(override, seed=seed))
      auc, train_s, _ = screen.train_and_score(config, tf_transform_output, examples, steps)
      runs.append(dict(auc, seed=seed, train_s=train_s))
      print(f"{variant} {overrides or 'default'} seed {seed}: {auc}", flush=True)
    return runs

  ple = runs_of("ple", {})
  rows = {"ple": {"overrides": {}, "runs": ple}}
  for name in names:
    rows[name] = {"overrides": table[name], "runs": runs_of(args.variant, table[name])}
  for row in rows.values():
    for key in ("low", "high", "overall"):
      row[key] = _summary(row["runs"], key)
    row["low_uplift"] = _summary(
        [{"d": r["low"] - p["low"]} for r, p in zip(row["runs"], ple)], "d")

  print(f"\n{args.dataset}: {train_rows} train rows, {steps} steps, {args.seeds} seeds; "
        f"variant {args.variant}; valid_consumption AUC mean +- std")
  print(f"{'setting':<20} {'low-active':>16} {'high-active':>16} {'overall':>16} "
        f"{'low - ple (paired)':>20}")
  for name, row in rows.items():
    cells = [f"{row[k]['mean']:.4f}+-{row[k]['std'] or 0:.4f}" for k in ("low", "high", "overall")]
    up = row["low_uplift"]
    print(f"{name:<20} {cells[0]:>16} {cells[1]:>16} {cells[2]:>16} "
          f"{up['mean']:>+11.4f}+-{up['std'] or 0:.4f}")
  suffix = "" if args.variant == "duia" else f"_{args.variant}"
  out = os.path.join(screen.REPO, "benchmarks", "results",
                     f"duia_tuning_{args.dataset}{suffix}.json")
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w") as f:
    json.dump({"dataset": args.dataset, "variant": args.variant, "seeds": args.seeds,
               "train_rows": train_rows, "steps": steps, "settings": rows}, f, indent=1)
  print(f"saved {out}")


if __name__ == "__main__":
  main()
