"""Pipeline benchmark: wall time per component, peak memory, AUC per slice.

Runs the whole local pipeline (generate -> RawLogExampleGen .. Pusher) once per
case, each in its own process so peak RSS is per case, then prints a table and
saves JSON to benchmarks/results/pipeline.json.

    python -m benchmarks.pipeline_bench                   # 20k and 200k generated, MovieLens
    python -m benchmarks.pipeline_bench --cases gen-20k   # one case

Cases: gen-<N>k (generated logs, N thousand exposures, global time split) and
movielens (../shared/data/movielens-100k or $DUIA_MOVIELENS_DIR, per-user
split; skipped with a message when absent). Training runs about two epochs over
the train split (at least 300 steps) so quality is comparable across sizes.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")
MOVIELENS = os.environ.get("DUIA_MOVIELENS_DIR", os.path.join(
    os.path.dirname(REPO), "shared", "data", "movielens-100k"))


class TreeRssSampler:
  """Samples the summed RSS of this process and its descendants in a thread."""

  def __init__(self, interval_s: float = 0.5):
    import psutil  # pylint: disable=g-import-not-at-top
    self._process = psutil.Process()
    self._interval_s = interval_s
    self._peak = 0
    self._done = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()

  def _sample(self) -> int:
    import psutil  # pylint: disable=g-import-not-at-top
    total = 0
    for p in [self._process] + self._process.children(recursive=True):
      try:
        total += p.memory_info().rss
      except psutil.Error:  # exited between listing and reading
        pass
    return total

  def _run(self) -> None:
    while not self._done.wait(self._interval_s):
      self._peak = max(self._peak, self._sample())

  def stop(self) -> int:
    """Stops sampling; returns the peak in bytes."""
    self._done.set()
    self._thread.join()
    return max(self._peak, self._sample())


def run_case(case: str, work: str, beam_args=None, epochs: float = 2.0,
             overrides=None) -> dict:
  """Runs one case in this process and returns its measurements.

  Args:
    case: "gen-<N>k" or "movielens".
    work: folder for the case's data and run.
    beam_args: Beam options for every component; None keeps the config default.
    epochs: training length in passes over the train split (at least 300 steps).
    overrides: training config overrides (e.g. {"duia": {"variant": "duia"}}).
  """
  from duia import keras_env  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  from duia.data import generator  # pylint: disable=g-import-not-at-top
  from duia.models import config as model_config  # pylint: disable=g-import-not-at-top
  from duia.pipeline import configs, local_runner, report  # pylint: disable=g-import-not-at-top

  root = os.path.join(work, case)
  started = time.time()
  if case == "movielens":
    data_root, mapping, preset, rows = MOVIELENS, "movielens-100k", "movielens", 100_000
  else:
    rows = int(case.split("-")[1].rstrip("k")) * 1000
    data_root, mapping, preset = os.path.join(root, "data"), "generated", "small"
    generator.generate(data_root, generator.GeneratorConfig(num_exposures=rows, seed=0))
  generate_s = time.time() - started
  batch = model_config.preset(preset).batch_size
  steps = max(300, int(epochs * 0.85 * rows / batch))
  optional = {} if beam_args is None else {"beam_pipeline_args": tuple(beam_args)}
  # A first run every time: a run left here would be the warm start and the
  # Evaluator's baseline (a second model to evaluate: 1.7x the Evaluator's
  # time at 100k rows, docs/scale.md).
  shutil.rmtree(os.path.join(root, "run"), ignore_errors=True)
  config = configs.PipelineConfig(
      root=os.path.join(root, "run"), data_root=data_root,
      mapping_path=configs.packaged_mapping(mapping),
      training=model_config.preset(preset, dict(overrides or {}, train_steps=steps)),
      **optional)
  started = time.time()
  tree_peak = TreeRssSampler()
  local_runner.run(config)
  wall = time.time() - started
  evaluation = report.latest_artifact_uri(config.metadata_path, "ModelEvaluation")
  slices = {r.slice_name: r.values for r in report.load_slice_metrics(evaluation)}
  task = "valid_consumption"
  return {
      "case": case, "rows": rows, "train_steps": steps,
      "generate_s": round(generate_s, 1), "pipeline_s": round(wall, 1),
      "components_s": {name: round(s, 1) for name, s in report.component_seconds(
          config.metadata_path)},
      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
      # Beam's multi-processing workers are child processes: this process and
      # all its descendants together, sampled every 0.5 s.
      "peak_tree_rss_mb": round(tree_peak.stop() / 2**20),
      "blessed": report.is_blessed(report.latest_artifact_uri(config.metadata_path,
                                                              "ModelBlessing")),
      "auc": {name: round(values[f"{task}/auc"], 4) for name, values in slices.items()
              if f"{task}/auc" in values and name.count(",") == 0},
      "eval_rows": {name: int(values[f"{task}/example_count"])
                    for name, values in slices.items() if name.count(",") == 0},
  }


def print_table(results) -> None:
  components = ["RawLogExampleGen", "StatisticsGen", "Transform", "Trainer", "Evaluator"]
  print(f"\n{'case':<10} {'rows':>8} {'total s':>8} " + " ".join(f"{c[:10]:>10}" for c in components)
        + f" {'RSS MB':>7} {'AUC all':>8} {'AUC low':>8} {'AUC high':>8} {'low n':>6}")
  for r in results:
    if "skipped" in r:
      print(f"{r['case']:<10} skipped: {r['skipped']}")
      continue
    auc = r["auc"]
    print(f"{r['case']:<10} {r['rows']:>8} {r['pipeline_s']:>8.1f} "
          + " ".join(f"{r['components_s'].get(c, 0):>10.1f}" for c in components)
          + f" {r['peak_rss_mb']:>7} {auc.get('overall', 0):>8.4f} "
          f"{auc.get('user_activity=low', 0):>8.4f} {auc.get('user_activity=high', 0):>8.4f} "
          f"{r['eval_rows'].get('user_activity=low', 0):>6}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--cases", default="gen-20k,gen-200k,movielens")
  parser.add_argument("--work", default=os.path.join(REPO, "runs", "bench"))
  parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one case, print JSON
  args = parser.parse_args()
  if args.one:
    print("RESULT " + json.dumps(run_case(args.one, args.work)), flush=True)
    return
  results = []
  for case in args.cases.split(","):
    if case == "movielens" and not os.path.exists(os.path.join(MOVIELENS, "u.data")):
      results.append({"case": case, "skipped": f"no MovieLens 100K at {MOVIELENS}"})
      continue
    print(f"running {case} ...", flush=True)
    out = subprocess.run([sys.executable, "-m", "benchmarks.pipeline_bench", "--one", case,
                          "--work", args.work], cwd=REPO, capture_output=True, text=True,
                         check=False)
    lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
      sys.stderr.write(out.stderr[-5000:])
      raise SystemExit(f"case {case} failed with exit code {out.returncode}")
    results.append(json.loads(lines[-1][len("RESULT "):]))
    print_table(results[-1:])
  os.makedirs(RESULTS, exist_ok=True)
  path = os.path.join(RESULTS, "pipeline.json")
  with open(path, "w") as f:
    json.dump({"results": results, "cpus": os.cpu_count()}, f, indent=1)
  print_table(results)
  print(f"\nsaved {path}")


if __name__ == "__main__":
  main()
