"""How far the drift check's features move between runs, with and without a shift.

The drift check (`duia.validation.policy.DEFAULT_DRIFT`) stops a run when a
label's Jensen-Shannon divergence from the last validated run's exceeds 0.1.
This measures the divergences TFDV reports (the same `validate_statistics` with
a previous-statistics comparison the DistributionValidator runs) for pairs of
data sets that should pass, and for one that should not:

  * generated logs of other seeds and sizes (the same world, other draws);
  * the eval split against the train split of one data set (later days);
  * MovieLens 100K eval against train (if the data is there);
  * generated logs whose watch time is logged in milliseconds (a shift).

    python -m benchmarks.drift_bench [--out benchmarks/results/drift.json]

Prints a table (feature x pair), saves it as JSON, and prints the message the
pipeline's gate gives for the shift under the default validation config.
About 2 minutes.
"""

import argparse
import glob
import gzip
import json
import os
import shutil
import tempfile
from typing import Dict, List, Tuple

from duia import keras_env  # noqa: F401  pylint: disable=unused-import
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2

from duia.data import generator
from duia.ingest import ingest_outputs
from duia.ingest import mapping as mapping_lib
from duia.models import features
from duia.pipeline import configs
from duia.validation import findings
from duia.validation import policy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOVIELENS = os.environ.get("DUIA_MOVIELENS_DIR",
                           os.path.join(os.path.dirname(REPO), "shared", "data", "movielens-100k"))
# The default drift features, and profile / slice features for comparison.
NUMERIC = list(policy.DEFAULT_DRIFT) + [features.DURATION_S, features.USER_VALID_COUNT]
CATEGORICAL = [features.DEVICE, features.AGE_BUCKET, features.USER_ACTIVITY,
               features.ITEM_POPULARITY]


def ingest(data_root: str, mapping_name: str, out: str) -> Dict[str, object]:
  """{split: statistics} of the logs at `data_root`, ingested like the pipeline does."""
  mapping = mapping_lib.load_mapping(configs.packaged_mapping(mapping_name))
  ingest_outputs.run_ingestion(mapping, data_root, out)
  return {split: tfdv.generate_statistics_from_tfrecord(
      os.path.join(out, "examples", f"Split-{split}", "*")) for split in ("train", "eval")}


def generated(work: str, seed: int, exposures: int, watch_scale: float = 1.0):
  data = os.path.join(work, f"gen-{seed}-{exposures}-{watch_scale:g}")
  generator.generate(data, generator.GeneratorConfig(
      num_users=400, num_items=600, num_exposures=exposures, seed=seed))
  if watch_scale != 1.0:
    for path in glob.glob(os.path.join(data, "exposures", "*.jsonl.gz")):
      with gzip.open(path, "rt") as f:
        rows = [json.loads(line) for line in f]
      with gzip.open(path, "wt") as f:
        for row in rows:
          row["watch_time_s"] *= watch_scale
          f.write(json.dumps(row) + "\n")
  return ingest(data, "generated", data + "-out")


def compare(current, previous, comparators: Dict[str, object]):
  """TFDV's anomalies of `current` against `previous`, as DistributionValidator
  computes them: a schema inferred from the baseline, `comparators` (feature ->
  tensorflow_metadata FeatureComparator) attached, previous statistics given."""
  schema = tfdv.infer_schema(previous)
  for key, comparator in comparators.items():
    tfdv.get_feature(schema, key).drift_comparator.CopyFrom(comparator)
  return tfdv.validate_statistics(current, schema, previous_statistics=previous)


def divergences(current, previous) -> Dict[str, float]:
  """feature -> TFDV's measured drift (JSD for NUMERIC, L-infinity for CATEGORICAL)."""
  comparators = {}
  for keys, name in ((NUMERIC, "jensen_shannon_divergence"), (CATEGORICAL, "infinity_norm")):
    for key in keys:
      comparators[key] = schema_pb2.FeatureComparator()
      getattr(comparators[key], name).threshold = 1.0  # measure, never flag
  anomalies = compare(current, previous, comparators)
  return {".".join(info.path.step): round(m.value, 4)
          for info in anomalies.drift_skew_info for m in info.drift_measurements}


def gate_message(current, previous) -> str:
  """What DataValidationGate says for `current` against the baseline `previous`,
  under the default `ValidationConfig`'s drift check."""
  config = policy.ValidationConfig()
  anomalies = compare(current, previous, {
      f.path.step[0]: f.distribution_comparator
      for f in config.distribution_validator_config().default_slice_config.feature})
  found = findings.from_proto(anomalies, findings.DRIFT_CHECK, "train_train")
  blocking, _ = findings.partition(found, config.tolerates)
  return findings.message(blocking) if blocking else "passes"


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "drift.json"))
  args = parser.parse_args(argv)
  work = tempfile.mkdtemp(prefix="drift-bench-")
  try:
    base = generated(work, seed=3, exposures=6000)
    pairs: List[Tuple[str, object, object]] = [
        ("gen seed 4 vs seed 3 (6k rows)", generated(work, 4, 6000)["train"], base["train"]),
        ("gen seed 5, 20k vs seed 3, 6k", generated(work, 5, 20000)["train"], base["train"]),
        ("gen eval vs train (seed 3)", base["eval"], base["train"]),
    ]
    if os.path.exists(os.path.join(MOVIELENS, "u.data")):
      movielens = ingest(MOVIELENS, "movielens-100k", os.path.join(work, "movielens-out"))
      pairs.append(("MovieLens eval vs train", movielens["eval"], movielens["train"]))
    shifted = generated(work, 3, 6000, 1000.0)["train"]
    pairs.append(("gen watch time in ms vs seed 3", shifted, base["train"]))
    table = {name: divergences(current, previous) for name, current, previous in pairs}
    message = gate_message(shifted, base["train"])
  finally:
    shutil.rmtree(work, ignore_errors=True)
  keys = [k for k in NUMERIC + CATEGORICAL if any(k in row for row in table.values())]
  print("drift per feature (JSD for " + ", ".join(NUMERIC) + "; L-infinity for the rest)")
  print(f"{'pair':34s}" + "".join(f"{k[:14]:>15s}" for k in keys))
  for name, row in table.items():
    print(f"{name:34s}" + "".join(f"{row.get(k, float('nan')):15.4f}" for k in keys))
  print("\nThe gate on the watch-time-in-ms logs (train split):\n" + message)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump({"numeric_jsd": NUMERIC, "categorical_linf": CATEGORICAL, "pairs": table},
              f, indent=2, sort_keys=True)
  print(f"saved {args.out}")


if __name__ == "__main__":
  main()
