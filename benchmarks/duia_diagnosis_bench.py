"""Why does DUIA's user side (not) lift low-active users? Measurements per setting.

For one dataset, PLE and DUIA settings are trained for the same seeds on the
same Transform output with the Trainer's code (as `variant_quality_bench`),
and each DUIA model is measured four ways:

1. Memory usage over training (`cluster_report.UsageTrace`): per memory and
   level, the share of centres that sampled training queries reached in each
   window of steps, and how far the centres moved over it. Memories that are
   still moving at the end of training were not given time to settle.
2. What the enhancement does to the logits: each enhancement block's output
   is replaced by its mean over the scored rows (the model keeps everything
   else), and the change of the valid-consumption logit (mean |delta|) and of
   the AUC is reported for low- and high-active rows. A block the ranker
   ignores moves nothing; one that helps low-active users loses AUC there
   when it is taken away.
3. AUC by user-activity decile (the user's number of training exposures),
   DUIA against the PLE of the same seed, and by the `user_activity` slice.
4. Training length and settings: `--settings` names rows of SETTINGS.

Scores come from scikit-learn on the scored split (a screen, not the TFMA
report). `--holdout validation` scores a validation split cut from the
training data (`benchmarks.tuning_data`), so that a setting is chosen without
looking at the eval split. Saves benchmarks/results/duia_diagnosis_<dataset>.json.

    python -m benchmarks.duia_diagnosis_bench --dataset movielens --seeds 2
    python -m benchmarks.duia_diagnosis_bench --dataset movielens-sparse3 \
        --settings default,no_target_attention,epochs_3
"""

import argparse
import collections
import json
import os
import statistics
import time
from typing import Any, Dict, List

from duia import keras_env  # noqa: F401  pylint: disable=unused-import
import numpy as np
from sklearn import metrics
import tensorflow as tf

from benchmarks import tuning_data
from benchmarks import variant_quality_bench as screen
from duia.models import autograph_rules
from duia.models import cluster_report
from duia.models import features
from duia.models import trainer
from duia.quality import training as quality_training

XF = features.transformed_name
# name -> (training overrides, epochs). One change from the defaults at a time.
SETTINGS = {
    "default": ({}, 1.0),
    "epochs_3": ({}, 3.0),
    "no_target_attention": ({"duia": {"user_tower_target_attention": False}}, 1.0),
    "no_target_attention_epochs_3": ({"duia": {"user_tower_target_attention": False}}, 3.0),
    "no_reseed": ({"duia": {"reseed_dead_every": 0}}, 1.0),
    "rate_0.2": ({"duia": {"rate": 0.2}}, 1.0),
    "sample_all": ({"duia": {"sample_rate": 1.0}}, 1.0),
    "epochs_5": ({}, 5.0),
    "epochs_3_upbe_unit": ({"duia": {"upbe_readout": "unit"}}, 3.0),
    "epochs_3_sample_all": ({"duia": {"sample_rate": 1.0}}, 3.0),
    "epochs_3_rate_0.2": ({"duia": {"rate": 0.2}}, 3.0),
    "no_personal_vector": ({"duia": {"personal_dim": 0}}, 1.0),
    "upbe_unit": ({"duia": {"upbe_readout": "unit"}}, 1.0),
    "upbe_unit_no_personal_vector": ({"duia": {"upbe_readout": "unit", "personal_dim": 0}}, 1.0),
}
DECILES = 10


def _train(config, tf_transform_output, examples_uri, steps, trace_every=None):
  tf.keras.backend.clear_session()
  tf.keras.utils.set_random_seed(config.seed)
  model = trainer.build_model(config, tf_transform_output)
  train = trainer.input_fn([os.path.join(examples_uri, "Split-train", "*")],
                           quality_training.data_accessor(), tf_transform_output,
                           config.batch_size, config.seed, config.shuffle_buffer)
  callbacks = []
  if trace_every and hasattr(model, "memories"):
    # Build the model (and its memories) before the callback reads them.
    model(next(iter(train))[0], training=False)
    callbacks.append(cluster_report.UsageTrace(model.memories(), every=trace_every))
  started = time.time()
  model.fit(train, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=callbacks)
  return model, round(time.time() - started, 1), callbacks[0].records if callbacks else []


def _eval_rows(examples_uri, tf_transform_output):
  return list(screen.dataset_of(os.path.join(examples_uri, "Split-eval"),
                                tf_transform_output, 1024))


def _logit(p):
  p = np.clip(p, 1e-7, 1 - 1e-7)
  return np.log(p / (1 - p))


def _score(model, batches) -> Dict[str, np.ndarray]:
  """Valid-consumption probabilities, and with each enhancement block at its mean."""
  task = features.TASK_VALID
  out = collections.defaultdict(list)
  blocks = None
  if hasattr(model, "encode_parts"):
    # The blocks' means over every scored row, the "taken away" value.
    sums, rows = {}, 0
    for batch, _ in batches:
      _, enhanced, _ = model.encode_parts(batch, training=False)
      for name, value in enhanced.items():
        sums[name] = sums.get(name, 0.0) + value.numpy().sum(axis=0)
      rows += int(next(iter(enhanced.values())).shape[0])
    blocks = {name: s / rows for name, s in sums.items()}
  for batch, labels in batches:
    out["label"].append(labels[features.LABEL_VALID].numpy().ravel())
    out["group"].append(batch[XF(features.USER_ACTIVITY)].numpy().ravel())
    out["user"].append(batch[XF(features.USER_ID)].numpy().ravel())
    if blocks is None:
      out["p"].append(model(batch, training=False)[task].numpy().ravel())
      continue
    base, enhanced, _ = model.encode_parts(batch, training=False)
    full = tf.concat(base + list(enhanced.values()), axis=-1)
    out["p"].append(model.head(full)[task].numpy().ravel())
    for name in enhanced:
      ablated = dict(enhanced)
      ablated[name] = tf.broadcast_to(tf.constant(blocks[name], tf.float32),
                                      enhanced[name].shape)
      x = tf.concat(base + list(ablated.values()), axis=-1)
      out[f"p_without_{name}"].append(model.head(x)[task].numpy().ravel())
  return {k: np.concatenate(v) for k, v in out.items()}


def _auc(labels, scores, mask):
  if mask.sum() == 0 or len(np.unique(labels[mask])) < 2:
    return None
  return round(float(metrics.roc_auc_score(labels[mask], scores[mask])), 4)


def _decile_of(scored, train_counts) -> np.ndarray:
  """Each row's user-activity decile (0 lowest) by the user's training exposures."""
  counts = np.array([train_counts.get(int(u), 0) for u in scored["user"]], np.float64)
  users = np.unique(scored["user"])
  per_user = np.array([train_counts.get(int(u), 0) for u in users], np.float64)
  # Deciles over users (not rows), so each decile holds a tenth of the users.
  edges = np.quantile(per_user, np.linspace(0, 1, DECILES + 1)[1:-1])
  return np.searchsorted(edges, counts, side="right")


def _measure(scored, deciles) -> Dict[str, Any]:
  labels, p = scored["label"], scored["p"]
  low, high = scored["group"] == 0, scored["group"] == 1
  everything = np.ones_like(low)
  out = {"low": _auc(labels, p, low), "high": _auc(labels, p, high),
         "overall": _auc(labels, p, everything),
         "deciles": [_auc(labels, p, deciles == d) for d in range(DECILES)]}
  for key in scored:
    if not key.startswith("p_without_"):
      continue
    name = key[len("p_without_"):]
    moved = np.abs(_logit(p) - _logit(scored[key]))
    out[f"without_{name}"] = {
        "low_auc_change": _change(_auc(labels, scored[key], low), out["low"]),
        "high_auc_change": _change(_auc(labels, scored[key], high), out["high"]),
        "low_mean_abs_logit_change": round(float(moved[low].mean()), 4),
        "high_mean_abs_logit_change": round(float(moved[high].mean()), 4)}
  return out


def _change(after, before):
  return None if after is None or before is None else round(after - before, 4)


def _train_counts(examples_uri, tf_transform_output) -> Dict[int, int]:
  counts: Dict[int, int] = collections.Counter()
  for batch, _ in screen.dataset_of(os.path.join(examples_uri, "Split-train"),
                                    tf_transform_output, 4096):
    counts.update(batch[XF(features.USER_ID)].numpy().ravel().tolist())
  return dict(counts)


def _ple_name(epochs: float) -> str:
  return "ple" if epochs == 1.0 else f"ple_epochs_{epochs:g}"


def _mean(values: List[float]):
  values = [v for v in values if v is not None]
  return round(statistics.fmean(values), 4) if values else None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset", default="movielens",
                      help="movielens, movielens-sparse<k> (k train rows kept for 30%% of "
                           "users) or gen-<N>k")
  parser.add_argument("--settings", default="default,epochs_3,no_target_attention",
                      help=f"comma-separated DUIA settings; known: {','.join(SETTINGS)}")
  parser.add_argument("--variant", default="duia", help="the DUIA variant the settings apply to")
  parser.add_argument("--seeds", type=int, default=2, help="seeds 0 .. n-1 of every model")
  parser.add_argument("--holdout", default="validation", choices=("validation", "eval"),
                      help="score a validation split cut from train (default) or the eval split")
  parser.add_argument("--trace-every", type=int, default=25,
                      help="batches between memory-usage records")
  parser.add_argument("--work", default=os.path.join(screen.REPO, "runs", "diagnosis"),
                      help="where the pipeline outputs (up to Transform) go")
  args = parser.parse_args()
  names = args.settings.split(",")
  unknown = [n for n in names if n not in SETTINGS]
  if unknown:
    parser.error(f"unknown settings {unknown}; known: {list(SETTINGS)}")
  autograph_rules.skip_tf_keras_conversion()
  base, tf_transform_output, examples = tuning_data.prepare(
      args.dataset, args.work, holdout=args.holdout)
  train_counts = _train_counts(examples, tf_transform_output)
  train_rows = sum(train_counts.values())
  epoch = max(100, int(train_rows / base.training.batch_size))
  batches = _eval_rows(examples, tf_transform_output)

  results: Dict[str, Any] = {"dataset": args.dataset, "holdout": args.holdout,
                             "train_rows": train_rows, "steps_per_epoch": epoch,
                             "seeds": args.seeds, "settings": {}}
  # A PLE baseline per training length, so each setting is compared with a PLE
  # trained as long.
  lengths = sorted({SETTINGS[name][1] for name in names} | {1.0})
  baselines = {epochs: _ple_name(epochs) for epochs in lengths}
  rows = {baselines[epochs]: [] for epochs in lengths}
  rows.update({name: [] for name in names})
  deciles = None
  for seed in range(args.seeds):
    runs = [(baselines[e], {"duia": {"variant": "ple"}}, e) for e in lengths] + [
        (name, SETTINGS[name][0], SETTINGS[name][1]) for name in names]
    for name, overrides, epochs in runs:
      overrides = json.loads(json.dumps(overrides))
      overrides.setdefault("duia", {})
      overrides["duia"].setdefault("variant", args.variant)
      config = base.training.override(dict(overrides, seed=seed))
      steps = int(epochs * epoch)
      model, train_s, trace = _train(config, tf_transform_output, examples, steps,
                                     args.trace_every)
      scored = _score(model, batches)
      if deciles is None:
        deciles = _decile_of(scored, train_counts)
      measured = _measure(scored, deciles)
      measured.update(seed=seed, steps=steps, train_s=train_s, usage_trace=trace)
      if hasattr(model, "memories"):
        measured["clusters"] = cluster_report.build_report(model, (b for b, _ in batches))
      rows[name].append(measured)
      print(f"{name} seed {seed}: low {measured['low']} high {measured['high']} "
            f"overall {measured['overall']} ({train_s}s, {steps} steps)", flush=True)
  low_rows = int((scored["group"] == 0).sum())
  results["scored_rows"] = {"low": low_rows, "high": int(len(scored["group"]) - low_rows)}
  results["decile_rows"] = [int((deciles == d).sum()) for d in range(DECILES)]
  for name, runs in rows.items():
    summary = {k: _mean([r[k] for r in runs]) for k in ("low", "high", "overall")}
    if name in SETTINGS:
      summary["baseline"] = baseline = baselines[SETTINGS[name][1]]
      ple = rows[baseline]
      summary["low_minus_ple"] = _mean([r["low"] - p["low"] for r, p in zip(runs, ple)])
      summary["high_minus_ple"] = _mean([r["high"] - p["high"] for r, p in zip(runs, ple)])
      summary["low_minus_ple_per_seed"] = [round(r["low"] - p["low"], 4)
                                           for r, p in zip(runs, ple)]
      summary["decile_minus_ple"] = [
          _mean([None if r["deciles"][d] is None or p["deciles"][d] is None
                 else r["deciles"][d] - p["deciles"][d] for r, p in zip(runs, ple)])
          for d in range(DECILES)]
    results["settings"][name] = dict(summary, runs=runs)
  print_report(results)
  out = os.path.join(screen.REPO, "benchmarks", "results",
                     f"duia_diagnosis_{args.dataset}_{args.holdout}.json")
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w") as f:
    json.dump(results, f, indent=1)
  print(f"saved {out}")


def print_report(results: Dict[str, Any]) -> None:
  """The tables of one diagnosis run."""
  print(f"\n{results['dataset']} ({results['holdout']} split): {results['train_rows']} train "
        f"rows, {results['steps_per_epoch']} steps per epoch, {results['seeds']} seeds; "
        f"scored rows low {results['scored_rows']['low']}, high "
        f"{results['scored_rows']['high']}")
  print(f"{'setting':<30} {'low':>7} {'high':>7} {'overall':>7} {'low-ple':>8} {'high-ple':>8}"
        "  low-ple per seed (against the PLE trained as long)")
  for name, s in results["settings"].items():
    print(f"{name:<30} {s['low']:>7.4f} {s['high']:>7.4f} {s['overall']:>7.4f} "
          f"{s.get('low_minus_ple') or 0:>+8.4f} {s.get('high_minus_ple') or 0:>+8.4f}  "
          + " ".join(f"{v:+.4f}" for v in s.get("low_minus_ple_per_seed", [])))
  print("\nAUC minus PLE by user-activity decile (training exposures per user; rows per decile "
        f"{results['decile_rows']})")
  for name, s in results["settings"].items():
    if "decile_minus_ple" in s:
      print(f"{name:<30} " + " ".join(f"{v:+.4f}" if v is not None else "   n/a "
                                      for v in s["decile_minus_ple"]))
  print("\nEach block at its mean: AUC change and mean |logit change| (low / high), seed means")
  for name, s in results["settings"].items():
    blocks = sorted({k for r in s["runs"] for k in r if k.startswith("without_")})
    for block in blocks:
      cells = {k: _mean([r[block][k] for r in s["runs"]]) for k in (
          "low_auc_change", "high_auc_change", "low_mean_abs_logit_change",
          "high_mean_abs_logit_change")}
      print(f"{name:<30} {block:<16} AUC {cells['low_auc_change']:+.4f} / "
            f"{cells['high_auc_change']:+.4f}   |logit| {cells['low_mean_abs_logit_change']:.4f}"
            f" / {cells['high_mean_abs_logit_change']:.4f}")
  print("\nMemory usage over training (seed 0): level-1 / level-2 hit share per window, "
        "centre movement per window")
  for name, s in results["settings"].items():
    trace = s["runs"][0].get("usage_trace") or []
    if not trace:
      continue
    for memory in [k for k in trace[0] if k != "step"]:
      points = [trace[0], trace[len(trace) // 2], trace[-1]]
      cells = "  ".join(
          f"step {p['step']}: {p[memory]['level1_hit']:.2f}/{p[memory].get('level2_hit', 0):.2f}"
          f" moved {p[memory]['level1_moved']:.3f}" for p in points)
      print(f"{name:<30} {memory:<10} {cells}")


if __name__ == "__main__":
  main()
