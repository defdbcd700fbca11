"""Screens DUIA's small-data knobs (N1, K, rates, dims, sampling) against PLE.

One switch at a time from the defaults, every setting trained for the same
seeds on the same Transform output, scored with scikit-learn exactly as
`benchmarks.variant_quality_bench` does (no TFMA: a screen, not the report;
the chosen setting then goes through `duia bench quality`). Prints
valid-consumption AUC (mean +- std over seeds) on low- and high-active users
and the seed-paired low-active uplift over PLE; saves
benchmarks/results/duia_tuning_<dataset>.json.

    python -m benchmarks.duia_tuning_bench --dataset movielens [--seeds 3]
    python -m benchmarks.duia_tuning_bench --dataset gen-100k --settings default,rate_0.01
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


def _summary(runs, key):
  values = [r[key] for r in runs]
  return {"mean": round(statistics.fmean(values), 4),
          "std": round(statistics.stdev(values), 4) if len(values) > 1 else None}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset", default="movielens", help="movielens or gen-<N>k")
  parser.add_argument("--variant", default="duia")
  parser.add_argument("--settings", default=",".join(SETTINGS))
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--work", default=os.path.join(screen.REPO, "runs", "tuning"))
  args = parser.parse_args()
  autograph_rules.skip_tf_keras_conversion()
  base, tf_transform_output, examples = screen.prepare(args.dataset, args.work)
  train_rows = sum(1 for _ in tf.data.TFRecordDataset(
      tf.io.gfile.glob(os.path.join(examples, "Split-train", "*.gz")), compression_type="GZIP"))
  steps = max(100, int(train_rows / base.training.batch_size))  # one epoch

  def runs_of(variant, duia_overrides):
    runs = []
    for seed in range(args.seeds):
      config = base.training.override(
          {"seed": seed, "duia": dict(duia_overrides, variant=variant)})
      auc, train_s, _ = screen.train_and_score(config, tf_transform_output, examples, steps)
      runs.append(dict(auc, seed=seed, train_s=train_s))
      print(f"{variant} {duia_overrides or 'default'} seed {seed}: {auc}", flush=True)
    return runs

  ple = runs_of("ple", {})
  rows = {"ple": {"overrides": {}, "runs": ple}}
  for name in args.settings.split(","):
    rows[name] = {"overrides": SETTINGS[name], "runs": runs_of(args.variant, SETTINGS[name])}
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
  out = os.path.join(screen.REPO, "benchmarks", "results", f"duia_tuning_{args.dataset}.json")
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w") as f:
    json.dump({"dataset": args.dataset, "variant": args.variant, "seeds": args.seeds,
               "train_rows": train_rows, "steps": steps, "settings": rows}, f, indent=1)
  print(f"saved {out}")


if __name__ == "__main__":
  main()
