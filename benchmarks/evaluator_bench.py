"""Evaluator benchmark: TFMA's cost per EvalConfig, and what a cheaper one changes.

Runs TFMA (`tfma.run_model_analysis`, the library the Evaluator runs) on the
eval split of a finished pipeline run, once per EvalConfig variant, with the
pipeline's Beam args and the run's trained model, and prints each variant's
wall time and, against the first variant, the largest absolute difference of
every metric over all slices (so "changes the 4th decimal" can be read off).

    python -m benchmarks.evaluator_bench --root runs/scale/local/gen-100k/run

Variants:
    whole          `duia.pipeline.eval_config.make_eval_config` on the whole eval
                   split, unweighted (the Evaluator before EvalSampleGen)
    sampled        the same config weighted by `eval_weight`, on EvalSampleGen's
                   sample of the split (`--sample-examples`; what the pipeline's
                   Evaluator reads); its time includes writing the sample
    tfma_log_loss  TFMA's own BinaryCrossEntropy instead of Keras' (which TFMA
                   feeds through its TF wrapper one example and slice at a time)
    auc_1000       1,000 AUC thresholds (TFMA's default: 10,000)
    no_cross       without the activity x popularity slice

Saves benchmarks/results/evaluator-<case>.json (the run root's parent folder name).
"""

import argparse
import cProfile
import pstats
import json
import os
import shutil
import time
from typing import Callable, Dict, List

from duia import keras_env  # noqa: F401  pylint: disable=unused-import
from apache_beam.options import pipeline_options
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.types import standard_artifacts

from duia.components import eval_sample_gen
from duia.models import features
from duia.pipeline import configs
from duia.pipeline import eval_config as eval_config_lib
from duia.pipeline import report
from duia.quality import tfma_eval

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")
TASKS = (features.TASK_VALID, features.TASK_WATCH, features.TASK_LIKE)


def _pipeline() -> tfma.EvalConfig:
  return eval_config_lib.make_eval_config(TASKS, configs.BlessingConfig())


def _sampled() -> tfma.EvalConfig:
  return eval_config_lib.make_eval_config(TASKS, configs.BlessingConfig(),
                                          example_weight_key=features.EVAL_WEIGHT)


def _tfma_log_loss() -> tfma.EvalConfig:
  config = _pipeline()
  for spec in config.metrics_specs:
    for metric in spec.metrics:
      if metric.class_name == "BinaryCrossentropy":
        metric.class_name = "BinaryCrossEntropy"  # TFMA's; the same metric name
  return config


def _auc_1000() -> tfma.EvalConfig:
  config = _pipeline()
  for spec in config.metrics_specs:
    for metric in spec.metrics:
      if metric.class_name == "AUC":
        metric.config = json.dumps({"num_thresholds": 1000})
  return config


def _no_cross() -> tfma.EvalConfig:
  config = _pipeline()
  kept = [s for s in config.slicing_specs if len(s.feature_keys) < 2]
  del config.slicing_specs[:]
  config.slicing_specs.extend(kept)
  return config


VARIANTS: Dict[str, Callable[[], tfma.EvalConfig]] = {
    "whole": _pipeline, "sampled": _sampled, "tfma_log_loss": _tfma_log_loss, "auc_1000": _auc_1000,
    "no_cross": _no_cross}


def evaluate(config: tfma.EvalConfig, model_dir: str, data_location: str,
             output_path: str) -> Dict[str, float]:
  """Runs TFMA; returns {"<slice> <output>/<metric>": value} (no thresholds checked)."""
  for spec in config.metrics_specs:
    for metric in spec.metrics:
      metric.ClearField("threshold")  # no baseline here: nothing to gate
  shared = tfma.default_eval_shared_model(eval_saved_model_path=model_dir,
                                          eval_config=config)
  shutil.rmtree(output_path, ignore_errors=True)
  tfma.run_model_analysis(
      eval_shared_model=shared, eval_config=config, data_location=data_location,
      output_path=output_path,
      pipeline_options=pipeline_options.PipelineOptions(list(configs.LOCAL_BEAM_ARGS)))
  return {f"{r['slice']} {r['metric']}": r["value"]
          for r in tfma_eval.metric_records(tfma.load_metrics(output_path))}


def write_eval_sample(examples_uri: str, sample_examples: int, output_uri: str) -> str:
  """Runs EvalSampleGen's executor on a run's examples; returns the sample's file pattern."""
  source = standard_artifacts.Examples()
  source.uri = examples_uri
  source.split_names = artifact_utils.encode_split_names(["eval"])
  pattern = os.path.join(examples_uri, "Split-eval", "*")
  count = sum(1 for _ in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern),
                                                 compression_type="GZIP"))
  source.set_int_custom_property("num_examples_eval", count)
  sample = standard_artifacts.Examples()
  sample.uri = output_uri
  shutil.rmtree(output_uri, ignore_errors=True)
  executor = eval_sample_gen.Executor(base_beam_executor.BaseBeamExecutor.Context(
      beam_pipeline_args=list(configs.LOCAL_BEAM_ARGS)))
  executor.Do({eval_sample_gen.EXAMPLES_KEY: [source]},
              {eval_sample_gen.EVAL_EXAMPLES_KEY: [sample]},
              {eval_sample_gen.SAMPLE_EXAMPLES_KEY: sample_examples})
  return os.path.join(output_uri, "Split-eval", "*")


def max_differences(reference: Dict[str, float], other: Dict[str, float]) -> Dict[str, float]:
  """Per metric name, the largest |other - reference| over the slices both have."""
  out: Dict[str, float] = {}
  for key, value in reference.items():
    if key in other:
      metric = key.rsplit(" ", 1)[1]
      out[metric] = max(out.get(metric, 0.0), abs(other[key] - value))
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--root", default=os.path.join(REPO, "runs", "scale", "local",
                                                     "gen-100k", "run"),
                      help="a finished pipeline run's root (its metadata.sqlite is read)")
  parser.add_argument("--variants", default="whole,sampled",
                      help=f"comma-separated, the first is the reference; of {list(VARIANTS)}")
  parser.add_argument("--profile", action="store_true",
                      help="run each variant under cProfile and print its 20 largest "
                           "cumulative entries (in-memory runner, one process)")
  parser.add_argument("--sample-examples", type=int,
                      default=configs.BlessingConfig.eval_sample_examples,
                      help="EvalSampleGen's sample_examples for the `sampled` variant")
  args = parser.parse_args()
  metadata = os.path.join(args.root, "metadata.sqlite")
  model = os.path.join(report.latest_artifact_uri(metadata, "Model"), "Format-Serving")
  examples = report.latest_output_uri(metadata, "RawLogExampleGen", "examples")
  data_location = os.path.join(examples, "Split-eval", "*")
  results: List[Dict] = []
  reference = None
  for name in args.variants.split(","):
    started = time.time()
    data = data_location
    if name == "sampled":
      data = write_eval_sample(examples, args.sample_examples,
                               os.path.join(args.root, "evaluator_bench", "eval_sample"))
    profile = cProfile.Profile() if args.profile else None
    if profile:
      profile.enable()
    values = evaluate(VARIANTS[name](), model, data,
                      os.path.join(args.root, "evaluator_bench", name))
    if profile:
      profile.disable()
      pstats.Stats(profile).sort_stats("cumulative").print_stats(20)
    seconds = round(time.time() - started, 1)
    reference = reference or values
    results.append({"variant": name, "seconds": seconds, "metrics": len(values),
                    "max_abs_difference": max_differences(reference, values)})
    print(f"{name:>10} {seconds:>7.1f} s  {len(values)} metric values", flush=True)
  print("\nlargest |difference| to the first variant, over all slices:")
  metrics = sorted({m for r in results for m in r["max_abs_difference"]})
  print(f"{'metric':>40} " + " ".join(f"{r['variant']:>10}" for r in results))
  for metric in metrics:
    print(f"{metric:>40} " + " ".join(
        f"{r['max_abs_difference'].get(metric, float('nan')):>10.2e}" for r in results))
  os.makedirs(RESULTS, exist_ok=True)
  case = os.path.basename(os.path.dirname(os.path.abspath(args.root)))
  path = os.path.join(RESULTS, f"evaluator-{case}.json")
  with open(path, "w") as f:
    json.dump({"root": args.root, "data_location": data_location,
               "sample_examples": args.sample_examples, "results": results}, f,
              indent=1)
  print(f"\nsaved {path}")


if __name__ == "__main__":
  main()
