"""The validators' anomalies as findings, and the message that stops a run.

ExampleValidator and DistributionValidator write one TFDV `Anomalies` proto per
split (`Split-<split>/SchemaDiff.pb`, `SplitPair-<split>_<baseline>/...`). A
finding is one reason of one feature in one of them; `raise_if_blocking` stops
the run with a message that names each feature, the anomaly and how to let it
through.
"""

import dataclasses
import os
from typing import Callable, Iterable, List, Mapping, Optional, Tuple

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2

from duia.validation import policy

ANOMALIES_FILE = "SchemaDiff.pb"
# TFDV's name for too few examples against the baseline, kept for `tolerate`.
LOW_NUM_EXAMPLES = "COMPARATOR_LOW_NUM_EXAMPLES"
SCHEMA_CHECK = "schema"
DRIFT_CHECK = "drift"
_SPLIT_PREFIXES = ("SplitPair-", "Split-")


class DataValidationError(RuntimeError):
  """The examples of a run have anomalies the validation config does not tolerate."""


@dataclasses.dataclass(frozen=True)
class Finding:
  """One anomaly reason.

  Attributes:
    check: SCHEMA_CHECK or DRIFT_CHECK.
    split: the split ("train"), or for the drift check the split pair
      ("train_train": this run's train against the baseline's).
    feature: the feature's name, or `policy.DATASET`.
    anomaly_type: TFDV's `AnomalyInfo.Type` name, e.g. "SCHEMA_NEW_COLUMN".
    description: TFDV's description of this case.
  """
  check: str
  split: str
  feature: str
  anomaly_type: str
  description: str


def from_proto(anomalies: anomalies_pb2.Anomalies, check: str, split: str) -> List[Finding]:
  """Every reason of every feature (and of the data set) in `anomalies`."""
  out = []
  type_name = anomalies_pb2.AnomalyInfo.Type.Name
  for key, info in sorted(anomalies.anomaly_info.items()):
    feature = ".".join(info.path.step) or key
    for reason in info.reason:
      out.append(Finding(check, split, feature, type_name(reason.type),
                         reason.description or reason.short_description))
  for reason in anomalies.dataset_anomaly_info.reason:
    out.append(Finding(check, split, policy.DATASET, type_name(reason.type),
                       reason.description or reason.short_description))
  if anomalies.data_missing:
    out.append(Finding(check, split, policy.DATASET, "DATA_MISSING",
                       "The split has no examples."))
  return out


def read(anomalies_uri: str, check: str) -> List[Finding]:
  """The findings of an ExampleAnomalies artifact's folder, every split."""
  out = []
  for path in sorted(tf.io.gfile.glob(os.path.join(anomalies_uri, "*", ANOMALIES_FILE))):
    folder = os.path.basename(os.path.dirname(path))
    split = next((folder[len(p):] for p in _SPLIT_PREFIXES if folder.startswith(p)), folder)
    with tf.io.gfile.GFile(path, "rb") as f:
      out.extend(from_proto(anomalies_pb2.Anomalies.FromString(f.read()), check, split))
  return out


def volume_findings(counts: Mapping[str, int], baseline_counts: Mapping[str, int],
                    min_ratio: Optional[float]) -> List[Finding]:
  """A drift finding per split with fewer than `min_ratio` of the baseline's examples.

  The counts are exact (recorded by the ExampleGen), not the statistics'
  `num_examples`, which counts TFDV's sample. The split is named as the
  DistributionValidator names a split pair ("train_train").

  Args:
    counts: {split: examples} of this run.
    baseline_counts: {split: examples} of the last validated run; splits it
      lacks (the first run, an older baseline) are not compared.
    min_ratio: `ValidationConfig.min_examples_ratio`; None checks nothing.
  """
  if min_ratio is None:
    return []
  out = []
  for split, count in sorted(counts.items()):
    before = baseline_counts.get(split)
    if before and count < min_ratio * before:
      out.append(Finding(
          DRIFT_CHECK, f"{split}_{split}", policy.DATASET, LOW_NUM_EXAMPLES,
          f"The split has {count} examples, {count / before:.6g} of the {before} of the "
          f"last validated run, below the threshold {min_ratio}."))
  return out


def partition(findings: Iterable[Finding], tolerates: Callable[[str, str], bool]
              ) -> Tuple[List[Finding], List[Finding]]:
  """(blocking, tolerated) findings, by `tolerates(feature, anomaly_type)`."""
  blocking, tolerated = [], []
  for finding in findings:
    (tolerated if tolerates(finding.feature, finding.anomaly_type) else blocking).append(finding)
  return blocking, tolerated


def message(blocking: List[Finding]) -> str:
  """A readable account of blocking findings: one line per feature and anomaly."""
  grouped = {}
  for f in blocking:
    grouped.setdefault((f.check, f.feature, f.anomaly_type), []).append(f)
  lines = [f"Data validation stopped the run before Transform: {len(grouped)} "
           f"anomal{'y' if len(grouped) == 1 else 'ies'} not tolerated by the config."]
  for (check, feature, anomaly_type), cases in grouped.items():
    splits = ", ".join(f.split for f in cases)
    lines.append(f"  - feature {feature!r}: {anomaly_type} ({check} check, split {splits}): "
                 f"{cases[0].description}")
  patterns = sorted({f"{f.feature}:{f.anomaly_type}" for f in blocking})
  lines.append(
      "If the data is right, change the curated schema (validation.schema) or the drift "
      "thresholds (validation.drift), or let these through with validation.tolerate = "
      f"{patterns} in the runtime config.")
  return "\n".join(lines)


def raise_if_blocking(findings: Iterable[Finding], config: policy.ValidationConfig
                      ) -> List[Finding]:
  """Returns the tolerated findings; raises if any finding is not tolerated.

  Raises:
    DataValidationError: naming every blocking feature and anomaly.
  """
  blocking, tolerated = partition(findings, config.tolerates)
  if blocking:
    raise DataValidationError(message(blocking))
  return tolerated
