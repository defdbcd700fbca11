"""Where the bare `rank` call's time goes: Transform, the ranker, and XLA.

Rebuilds the pushed model from its pipeline run (`rank_graphs.rebuild_model`)
and times, per candidate count, on the same requests as `serving_bench`
(real eval users, 1 user x N candidates):
  - transform: the Transform graph on the request's raw tensors (what `rank`
    runs first: the user's one row and the candidates' N rows);
  - ranker: the ranker on Transform's outputs, as a TensorFlow graph;
  - ranker_xla: the same ranker compiled with XLA (`jit_compile=True`), one
    executable per candidate count (compiled during warm-up, not timed);
  - rank: both, as the `rank` signature runs them.
Each figure is the p50 of a concrete-function call from Python (traced for
that candidate count), so each carries one call's Python overhead; compare
columns measured in the same run. Prints a table and saves
benchmarks/results/rank_split.json.

    python -m benchmarks.rank_split_bench --model_base_path RUN/serving/duia --root RUN
"""

import argparse
import json
import os
import time
from typing import Callable, Dict, List

from duia import keras_env  # noqa: F401  pylint: disable=unused-import
import numpy as np
import tensorflow as tf

from benchmarks import rank_graphs
from benchmarks import serving_bench
from duia.models import signatures
from duia.serving import model_loader

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("transform", "ranker", "ranker_xla", "rank")


def build_functions(model, tf_transform_output) -> Dict[str, Callable]:
  """{part: function of the request's raw tensors or of Transform's outputs}."""
  model.tft_layer = tf_transform_output.transform_features_layer()
  feature_spec = signatures.serving_feature_spec(tf_transform_output)

  def transform(raw):
    # As `rank` does it: parsed form, Transform, the user's outputs pinned to one row.
    return signatures.pin_user_rows(model.tft_layer(signatures.to_parsed_form(raw, feature_spec)))

  return {
      "transform": tf.function(transform, reduce_retracing=True),
      "ranker": tf.function(model.serving_outputs),
      "ranker_xla": tf.function(model.serving_outputs, jit_compile=True),
      "rank": tf.function(lambda raw: model.serving_outputs(transform(raw))),
  }


def _p50_ms(function: Callable, inputs: List, repeats: int) -> float:
  # A concrete function, as the loaded signature is: calling the tf.function
  # would add its argument dispatch (~1 ms here) to every figure.
  # Row counts stay static (the user's one row, the N candidates); the other
  # dimensions (history length) vary between users, so they are left open.
  specs = tf.nest.map_structure(
      lambda t: tf.TensorSpec([t.shape[0]] + [None] * (t.shape.rank - 1), t.dtype), inputs[0])
  function = function.get_concrete_function(specs)
  for x in inputs[:5]:
    function(x)  # warm-up, and XLA's compilation for this shape
  latencies = []
  for i in range(repeats):
    start = time.perf_counter()
    tf.nest.map_structure(lambda t: t.numpy(), function(inputs[i % len(inputs)]))
    latencies.append(time.perf_counter() - start)
  return round(float(np.percentile(np.asarray(latencies) * 1e3, 50)), 3)


def measure(functions: Dict[str, Callable], requests, repeats: int) -> Dict[str, float]:
  """p50 ms of every part on `requests` (TensorProto inputs of `rank`)."""
  raw = [{k: tf.constant(tf.make_ndarray(v)) for k, v in r.inputs.items()} for r in requests]
  transformed = [functions["transform"](x) for x in raw]
  return {part: _p50_ms(functions[part], transformed if part.startswith("ranker") else raw,
                        repeats) for part in PARTS}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model_base_path", required=True, help="pushed model's base path")
  parser.add_argument("--root", required=True, help="its pipeline run folder")
  parser.add_argument("--model_name", default="duia", help="model name in the requests")
  parser.add_argument("--candidates", default="100,1000", help="comma-separated counts")
  parser.add_argument("--users", type=int, default=20, help="sampled eval users (requests)")
  parser.add_argument("--repeats", type=int, default=300, help="timed calls per part")
  parser.add_argument("--grappler_options", default="{}",
                      help="JSON for tf.config.optimizer.set_experimental_options, e.g. "
                           "'{\"remapping\": false}': grappler's passes on or off for this run")
  parser.add_argument("--results_name", default="rank_split.json",
                      help="JSON file name in benchmarks/results")
  args = parser.parse_args()
  grappler = json.loads(args.grappler_options)
  if grappler:
    tf.config.optimizer.set_experimental_options(grappler)

  _, model_dir = model_loader.latest_version(args.model_base_path)
  model, tf_transform_output = rank_graphs.rebuild_model(args.root, model_dir)
  functions = build_functions(model, tf_transform_output)
  results = []
  for n in (int(c) for c in args.candidates.split(",")):
    requests = serving_bench.build_requests(args.root, args.users, n, args.model_name)
    results.append({"candidates": n, "requests": len(requests),
                    "p50_ms": measure(functions, requests, args.repeats)})
  print(f"\n1 user x N candidates, {os.cpu_count()} CPUs, p50 ms of one call from Python; "
        f"grappler options {grappler or 'default'}")
  print(f"{'cands':>5} " + " ".join(f"{p:>11}" for p in PARTS) + f" {'xla/graph':>10}")
  for r in results:
    m = r["p50_ms"]
    print(f"{r['candidates']:>5} " + " ".join(f"{m[p]:>11.2f}" for p in PARTS)
          + f" {m['ranker_xla'] / m['ranker']:>9.2f}x")
  os.makedirs(os.path.join(REPO, "benchmarks", "results"), exist_ok=True)
  path = os.path.join(REPO, "benchmarks", "results", args.results_name)
  with open(path, "w") as f:
    json.dump({"model_base_path": args.model_base_path, "cpus": os.cpu_count(),
               "grappler_options": grappler, "results": results}, f, indent=1)
  print(f"saved {path}")


if __name__ == "__main__":
  main()
