"""Ingestion benchmark: the raw-log ExampleGen's Beam pipeline alone, timed, with a digest.

Generates logs of `--rows` exposures (once per size, kept under `--work`), runs
`ingest_outputs.run_ingestion` on them `--repeats` times with the pipeline's local
Beam args, and prints the wall time of each run, the process's peak RSS and a
digest of the examples written (SHA-1 over the sorted per-example digests of both splits). Two code
versions that give the same digest wrote the same examples, so an ingestion
change can be checked for speed and for unchanged output in one command:

    python -m benchmarks.ingest_bench --rows 300000
    git stash; python -m benchmarks.ingest_bench --rows 300000; git stash pop

Saves benchmarks/results/ingest-<rows>.json.
"""

import argparse
import glob
import hashlib
import json
import os
import resource
import shutil
import time

from duia import keras_env  # noqa: F401  pylint: disable=unused-import
import tensorflow as tf

from duia.data import generator
from duia.ingest import ingest_outputs
from duia.ingest import mapping as mapping_lib
from duia.pipeline import configs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "benchmarks", "results")


def examples_digest(examples_dir: str) -> str:
  """Order-free digest of every example under `examples_dir`/Split-*/."""
  digests = []
  for split_dir in sorted(glob.glob(os.path.join(examples_dir, "Split-*"))):
    split = os.path.basename(split_dir)
    for path in sorted(glob.glob(os.path.join(split_dir, "*"))):
      for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        # Deterministic serialization: map fields in a fixed order.
        digests.append(split + hashlib.sha1(
            example.SerializeToString(deterministic=True)).hexdigest())
  return hashlib.sha1("".join(sorted(digests)).encode()).hexdigest()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rows", type=int, default=300_000, help="generated exposures")
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument("--work", default=os.path.join(REPO, "runs", "ingest_bench"))
  args = parser.parse_args()
  data_root = os.path.join(args.work, f"data-{args.rows}")
  if not os.path.exists(os.path.join(data_root, "summary.json")):
    generator.generate(data_root, generator.GeneratorConfig(num_exposures=args.rows, seed=0))
  mapping = mapping_lib.load_mapping(configs.packaged_mapping("generated"))
  out_dir = os.path.join(args.work, "out")
  seconds, summary = [], {}
  for _ in range(args.repeats):
    shutil.rmtree(out_dir, ignore_errors=True)
    started = time.time()
    summary = ingest_outputs.run_ingestion(mapping, data_root, out_dir,
                                        beam_args=configs.LOCAL_BEAM_ARGS)
    seconds.append(round(time.time() - started, 1))
  # The in-memory runner holds its group-bys' data in this process.
  peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
  digest = examples_digest(os.path.join(out_dir, "examples"))
  result = {"rows": args.rows, "seconds": seconds, "peak_rss_mb": peak_rss_mb,
            "examples": summary["examples"],
            "quarantined_total": summary["quarantined_total"], "digest": digest}
  print(json.dumps(result, indent=1))
  os.makedirs(RESULTS, exist_ok=True)
  with open(os.path.join(RESULTS, f"ingest-{args.rows}.json"), "w") as f:
    json.dump(result, f, indent=1)


if __name__ == "__main__":
  main()
