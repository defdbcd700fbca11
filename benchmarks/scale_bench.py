"""Scale benchmark: generated logs at 100k, 1M (10M) exposures to a pushed model.

Each size runs the whole local pipeline (RawLogExampleGen .. Pusher) in its own
process (`benchmarks.pipeline_bench.run_case`), so peak RSS is per size, with
the Beam preset and model variant given here. Prints wall time per component,
peak RSS (of the pipeline process, and of the process tree: with Beam
workers as processes, the sum over the pipeline and its workers, sampled every
0.5 s) and, between consecutive sizes, the time
ratio per 10x of data: 10 means linear, above 10 a super-linear step. Each
size is a first run (no warm start, no baseline model). Saves
benchmarks/results/scale-<preset>-<sizes>.json.

    python -m benchmarks.scale_bench                               # 100k, 1M
    python -m benchmarks.scale_bench --rows 100000 --preset direct-multiprocessing

Training runs `--epochs` passes over the train split (at least 300 steps), so
the Trainer grows with the data like every other component.
"""

import argparse
import json
import os
import subprocess
import sys
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")
COMPONENTS = ("RawLogExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
              "DistributionValidator", "DataValidationGate",
              "Transform", "Trainer", "Evaluator", "Pusher")
TARGET_1M_S = 15 * 60
TARGET_RATIO_PER_10X = 11.0


def run_size(rows: int, work: str, preset: str, variant: str, epochs: float) -> Dict:
  """Runs one size in this process; returns pipeline_bench's measurements."""
  from benchmarks import pipeline_bench  # pylint: disable=g-import-not-at-top
  from duia.pipeline import beam_presets  # pylint: disable=g-import-not-at-top
  case = f"gen-{rows // 1000}k"
  result = pipeline_bench.run_case(
      case, os.path.join(work, preset), beam_args=beam_presets.beam_args(preset),
      epochs=epochs, overrides={"duia": {"variant": variant}})
  result.update(preset=preset, variant=variant, epochs=epochs)
  return result


def ratios(smaller: Dict, larger: Dict) -> Dict[str, float]:
  """Time ratio per 10x of rows, per component and in total."""
  scale = (larger["rows"] / smaller["rows"]) / 10.0

  def per_10x(a: float, b: float) -> float:
    return round(b / a / scale, 2) if a > 0 else float("nan")

  out = {c: per_10x(smaller["components_s"].get(c, 0.0), larger["components_s"].get(c, 0.0))
         for c in COMPONENTS if smaller["components_s"].get(c, 0.0) >= 1.0}
  out["total"] = per_10x(smaller["pipeline_s"], larger["pipeline_s"])
  return out


def print_table(results: List[Dict]) -> None:
  shown = [c for c in COMPONENTS if any(r["components_s"].get(c, 0) >= 1.0 for r in results)]
  print(f"\n{'rows':>10} {'total s':>8} " + " ".join(f"{c[:11]:>11}" for c in shown)
        + f" {'RSS MB':>7} {'tree MB':>8}")
  for r in results:
    print(f"{r['rows']:>10,} {r['pipeline_s']:>8.1f} "
          + " ".join(f"{r['components_s'].get(c, 0):>11.1f}" for c in shown)
          + f" {r['peak_rss_mb']:>7} {r['peak_tree_rss_mb']:>8}")
  for a, b in zip(results, results[1:]):
    r = ratios(a, b)
    print(f"{'x per 10x':>10} {r['total']:>8.2f} "
          + " ".join(f"{r.get(c, float('nan')):>11.2f}" for c in shown)
          + f"   ({a['rows']:,} -> {b['rows']:,})")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rows", default="100000,1000000",
                      help="comma-separated exposure counts, ascending (multiples of 1000)")
  parser.add_argument("--preset", default="local", help="Beam preset (duia.pipeline.beam_presets)")
  parser.add_argument("--variant", default="duia", help="model variant")
  parser.add_argument("--epochs", type=float, default=1.0)
  parser.add_argument("--work", default=os.path.join(REPO, "runs", "scale"))
  parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one size
  args = parser.parse_args()
  if args.one:
    result = run_size(args.one, args.work, args.preset, args.variant, args.epochs)
    print("RESULT " + json.dumps(result), flush=True)
    return
  results = []
  for rows in (int(r) for r in args.rows.split(",")):
    print(f"running {rows:,} rows ({args.preset}, {args.variant}) ...", flush=True)
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale_bench", "--one", str(rows),
         "--preset", args.preset, "--variant", args.variant, "--epochs", str(args.epochs),
         "--work", args.work], cwd=REPO, capture_output=True, text=True, check=False)
    lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
      sys.stderr.write(out.stderr[-5000:])
      raise SystemExit(f"{rows} rows failed with exit code {out.returncode}")
    results.append(json.loads(lines[-1][len("RESULT "):]))
    print_table(results[-1:])
  summary = {"results": results, "cpus": os.cpu_count(),
             "ratios_per_10x": [ratios(a, b) for a, b in zip(results, results[1:])],
             "target_1m_s": TARGET_1M_S, "target_ratio_per_10x": TARGET_RATIO_PER_10X}
  os.makedirs(RESULTS, exist_ok=True)
  sizes = "-".join(f"{r['rows'] // 1000}k" for r in results)
  path = os.path.join(RESULTS, f"scale-{args.preset}-{sizes}.json")
  with open(path, "w") as f:
    json.dump(summary, f, indent=1)
  print_table(results)
  print(f"\nsaved {path}")


if __name__ == "__main__":
  main()
