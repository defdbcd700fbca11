"""Valid-consumption AUC per `user_activity` slice for every model variant.

For each dataset the real pipeline runs up to Transform (RawLogExampleGen,
TFDV, TFT); then every variant is trained in this process on the transformed
train split with the Trainer's own code, for each seed, and scored on the
transformed eval split. AUC per slice is computed with scikit-learn here (not
TFMA, to keep 2 datasets x 5 variants x 3 seeds within minutes on 2 cores).
Prints mean +- std over seeds and DUIA - PLE differences; saves
benchmarks/results/variant_quality.json.

    python -m benchmarks.variant_quality_bench [--datasets gen-100k,movielens] [--seeds 3]
    python -m benchmarks.variant_quality_bench --variants duia --set duia.reseed_dead_every=20 \
        --out variant_quality_reseed.json          # one switch against the default
"""

import argparse
import glob
import json
import os
import statistics
import time

from duia import keras_env  # noqa: F401  pylint: disable=unused-import
import numpy as np
from sklearn import metrics
import tensorflow as tf
import tensorflow_transform as tft

from duia.data import generator
from duia.models import autograph_rules
from duia.models import cluster_report
from duia.models import config as model_config
from duia.models import features
from duia.models import trainer
from duia.pipeline import configs, local_runner, report
from duia.quality import training as quality_training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOVIELENS = os.environ.get("DUIA_MOVIELENS_DIR", os.path.join(
    os.path.dirname(REPO), "shared", "data", "movielens-100k"))
XF = features.transformed_name


def prepare(dataset: str, work: str):
  """Runs the pipeline up to Transform; returns (config, tft output, uris)."""
  root = os.path.join(work, dataset)
  if dataset == "movielens":
    data_root, mapping, preset = MOVIELENS, "movielens-100k", "movielens"
  else:
    rows = int(dataset.split("-")[1].rstrip("k")) * 1000
    data_root, mapping, preset = os.path.join(root, "data"), "generated", "small"
    if not os.path.exists(os.path.join(data_root, "summary.json")):
      generator.generate(data_root, generator.GeneratorConfig(num_exposures=rows, seed=0))
  config = configs.PipelineConfig(
      root=os.path.join(root, "run"), data_root=data_root,
      mapping_path=configs.packaged_mapping(mapping),
      training=model_config.preset(preset), enable_cache=True)
  local_runner.run(config, to_node="Transform")
  graph = report.latest_output_uri(config.metadata_path, "Transform", "transform_graph")
  examples = report.latest_output_uri(config.metadata_path, "Transform", "transformed_examples")
  return config, tft.TFTransformOutput(graph), examples


def dataset_of(split_dir, tf_transform_output, batch_size):
  """One unshuffled pass over a transformed split, as (features, labels)."""
  files = sorted(glob.glob(os.path.join(split_dir, "*.gz")))
  spec = tf_transform_output.transformed_feature_spec()
  data = tf.data.TFRecordDataset(files, compression_type="GZIP")
  data = data.batch(batch_size).map(lambda x: tf.io.parse_example(x, spec))
  return data.map(trainer.split_labels).prefetch(tf.data.AUTOTUNE)


def train_and_score(config, tf_transform_output, examples_uri, steps):
  tf.keras.utils.set_random_seed(config.seed)
  model = trainer.build_model(config, tf_transform_output)
  # The Trainer's own input (TFXIO, config.shuffle_buffer).
  train = trainer.input_fn([os.path.join(examples_uri, "Split-train", "*")],
                           quality_training.data_accessor(), tf_transform_output,
                           config.batch_size, config.seed, config.shuffle_buffer)
  started = time.time()
  model.fit(train, epochs=1, steps_per_epoch=steps, verbose=0)
  train_s = time.time() - started
  labels, scores, groups = [], [], []
  for batch, batch_labels in dataset_of(os.path.join(examples_uri, "Split-eval"),
                                        tf_transform_output, 1024):
    scores.append(model(batch, training=False)[features.TASK_VALID].numpy().ravel())
    labels.append(batch_labels[features.LABEL_VALID].numpy().ravel())
    groups.append(batch[XF(features.USER_ACTIVITY)].numpy().ravel())
  labels, scores, groups = map(np.concatenate, (labels, scores, groups))
  auc = {"overall": metrics.roc_auc_score(labels, scores)}
  for name, value in (("low", 0), ("high", 1)):
    mask = groups == value
    auc[name] = metrics.roc_auc_score(labels[mask], scores[mask])
  auc = {k: round(float(v), 4) for k, v in auc.items()}
  if hasattr(model, "memories"):  # DUIA Table 9: level-1 centers hit on eval data
    clusters = cluster_report.build_report(model, (b for b, _ in dataset_of(
        os.path.join(examples_uri, "Split-eval"), tf_transform_output, 1024)))
    for name, memory in clusters.items():
      auc[f"{name}_hit"] = round(memory["level1_hit_fraction"], 3)
  return auc, round(train_s, 1), int((groups == 0).sum())


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--datasets", default="gen-100k,movielens")
  parser.add_argument("--variants", default=",".join(model_config.VARIANTS))
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--epochs", type=float, default=1.0)
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="extra training overrides for every variant (as in `duia run`)")
  parser.add_argument("--work", default=os.path.join(REPO, "runs", "quality"))
  parser.add_argument("--out", default="variant_quality.json",
                      help="file name under benchmarks/results/")
  args = parser.parse_args()
  from duia.cli import common  # pylint: disable=g-import-not-at-top
  extra = common.parse_overrides(args.set)
  autograph_rules.skip_tf_keras_conversion()
  results = {}
  for dataset in args.datasets.split(","):
    if dataset == "movielens" and not os.path.exists(os.path.join(MOVIELENS, "u.data")):
      print(f"skipping movielens: no data at {MOVIELENS}")
      continue
    base_config, tf_transform_output, examples_uri = prepare(dataset, args.work)
    train_rows = sum(1 for _ in tf.data.TFRecordDataset(
        glob.glob(os.path.join(examples_uri, "Split-train", "*.gz")), compression_type="GZIP"))
    steps = max(100, int(args.epochs * train_rows / base_config.training.batch_size))
    results[dataset] = {"train_rows": train_rows, "steps": steps, "variants": {}}
    for variant in args.variants.split(","):
      runs = []
      for seed in range(args.seeds):
        overrides = dict(extra, seed=seed)
        overrides.setdefault("duia", {})
        overrides["duia"] = dict(overrides["duia"], variant=variant)
        config = base_config.training.override(overrides)
        auc, train_s, low_rows = train_and_score(config, tf_transform_output, examples_uri, steps)
        runs.append(dict(auc, seed=seed, train_s=train_s))
        print(f"{dataset} {variant} seed {seed}: {auc} ({train_s}s train)", flush=True)
      results[dataset]["low_eval_rows"] = low_rows
      results[dataset]["variants"][variant] = {
          "runs": runs,
          **{f"{k}_mean": round(statistics.mean(r[k] for r in runs), 4)
             for k in ("overall", "low", "high")},
          **{f"{k}_std": round(statistics.pstdev(r[k] for r in runs), 4)
             for k in ("overall", "low", "high")}}
  print_table(results)
  os.makedirs(os.path.join(REPO, "benchmarks", "results"), exist_ok=True)
  path = os.path.join(REPO, "benchmarks", "results", args.out)
  with open(path, "w") as f:
    json.dump({"seeds": args.seeds, "epochs": args.epochs, "overrides": extra,
               "results": results}, f, indent=1)
  print(f"saved {path}")


def print_table(results) -> None:
  for dataset, r in results.items():
    print(f"\n{dataset}: {r['train_rows']} train rows, {r['steps']} steps, "
          f"{r['low_eval_rows']} low-active eval rows; valid_consumption AUC, mean +- std")
    print(f"{'variant':<11} {'overall':>16} {'low-active':>16} {'high-active':>16} {'low - ple':>10}")
    base = r["variants"].get("ple")
    for variant, v in r["variants"].items():
      delta = v["low_mean"] - base["low_mean"] if base else float("nan")
      print(f"{variant:<11} " + " ".join(
          f"{v[k + '_mean']:>9.4f}+-{v[k + '_std']:.4f}" for k in ("overall", "low", "high"))
          + f" {delta:>+10.4f}")


if __name__ == "__main__":
  main()
