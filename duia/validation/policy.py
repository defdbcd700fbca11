"""What the data validation checks, and which of its anomalies a run tolerates.

Two checks run on every pipeline run's statistics (docs/design.md §3):
  * the schema check (ExampleValidator against the curated schema): new or
    missing features, other value types, values outside the schema's ranges;
  * the drift check (DistributionValidator against the statistics of the last
    run that passed validation): a feature's distribution moved further than
    its threshold, or far fewer examples than then.
Any anomaly stops the run before Transform, unless `tolerate` names it.
"""

import dataclasses
import fnmatch
import os
from typing import Mapping, Optional, Tuple

from tfx.proto import distribution_validator_pb2

from duia.models import features

CURATED_SCHEMA = os.path.join(os.path.dirname(__file__), "schema.pbtxt")
# The comparators of TFDV's FeatureComparator a drift check may use: the largest
# difference in any value's share (categorical), and the Jensen-Shannon
# divergence of the histograms (numeric or categorical), both in [0, 1].
COMPARATORS = ("infinity_norm", "jensen_shannon_divergence")
# What stands for "the whole data set" in `tolerate` (its anomalies, e.g. the
# example count, belong to no feature).
DATASET = "(dataset)"

# Labels are what the ranker learns; a jump in their distribution between runs
# means the logging or a mapping changed (e.g. watch time logged in ms). Where
# nothing changed the labels' divergences stay <= 0.03, under the ms change
# they are ~1 (`python -m benchmarks.drift_bench`), so 0.1 stops gross shifts
# only (docs/data-validation.md).
DEFAULT_DRIFT: Mapping[str, Mapping[str, float]] = {
    features.LABEL_VALID: {"jensen_shannon_divergence": 0.1},
    features.LABEL_LIKE: {"jensen_shannon_divergence": 0.1},
    features.LABEL_WATCH: {"jensen_shannon_divergence": 0.1},
}


@dataclasses.dataclass(frozen=True)
class ValidationConfig:
  """The data validation of a pipeline run.

  Attributes:
    schema: the curated TFDV schema (text proto) the examples must follow.
    drift: feature -> {comparator: threshold}; the drift check compares these
      features' distributions with the last validated run's, per split.
    min_examples_ratio: a split with fewer examples than this share of the
      last validated run's is an anomaly (a flood of quarantined rows, a
      truncated export); None turns the check off. The DataValidationGate
      checks it on the exact counts, since the statistics may be sampled
      (`duia.components.sampled_statistics_gen`).
    tolerate: anomalies that do not stop the run, as "feature:ANOMALY_TYPE"
      patterns (shell wildcards; types as TFDV names them, e.g.
      "device:SCHEMA_NEW_COLUMN", "*:COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH";
      "(dataset):*" for data-set-wide anomalies). Tolerated anomalies are
      still recorded by the validators and logged.
    statistics_sample_examples: examples per split StatisticsGen reads (a
      split this size or smaller is read whole; a bigger one is sampled at
      this share of its size); 0 reads every example. See
      `duia.components.sampled_statistics_gen`.
  """
  schema: str = CURATED_SCHEMA
  drift: Mapping[str, Mapping[str, float]] = dataclasses.field(
      default_factory=lambda: {k: dict(v) for k, v in DEFAULT_DRIFT.items()})
  min_examples_ratio: Optional[float] = 0.5
  tolerate: Tuple[str, ...] = ()
  statistics_sample_examples: int = 200_000

  def __post_init__(self):
    if not isinstance(self.schema, str) or not self.schema:
      raise ValueError(f"validation.schema must be a file path. Received: {self.schema!r}")
    if not isinstance(self.drift, Mapping):
      raise ValueError(f"validation.drift must be an object. Received: {self.drift!r}")
    for feature, comparator in self.drift.items():
      where = f"validation.drift.{feature}"
      if not isinstance(comparator, Mapping) or len(comparator) != 1:
        raise ValueError(f"{where} must be one {{comparator: threshold}}, comparator one of "
                         f"{COMPARATORS}. Received: {comparator!r}")
      (name, threshold), = comparator.items()
      if name not in COMPARATORS:
        raise ValueError(f"{where}: unknown comparator {name!r}; known: {COMPARATORS}")
      if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
          0 <= threshold <= 1):
        raise ValueError(f"{where}.{name} must be a number in [0, 1]. Received: {threshold!r}")
    ratio = self.min_examples_ratio
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float))
                              or not 0 < ratio <= 1):
      raise ValueError(f"validation.min_examples_ratio must be in (0, 1] or null. "
                       f"Received: {ratio!r}")
    sample = self.statistics_sample_examples
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 0:
      raise ValueError("validation.statistics_sample_examples must be an int >= 0 (0 reads "
                       f"every example). Received: {sample!r}")
    if isinstance(self.tolerate, str) or not all(
        isinstance(p, str) and p.count(":") == 1 for p in self.tolerate):
      raise ValueError("validation.tolerate must be a list of \"feature:ANOMALY_TYPE\" "
                       f"patterns. Received: {self.tolerate!r}")

  def tolerates(self, feature: str, anomaly_type: str) -> bool:
    """Whether an anomaly of `anomaly_type` on `feature` lets the run go on."""
    return any(fnmatch.fnmatchcase(f"{feature}:{anomaly_type}", p) for p in self.tolerate)

  def distribution_validator_config(
      self) -> distribution_validator_pb2.DistributionValidatorConfig:
    """The DistributionValidator's config: one comparator per drift feature."""
    config = distribution_validator_pb2.DistributionValidatorConfig()
    dataset = config.default_slice_config
    for feature, comparator in sorted(self.drift.items()):
      (name, threshold), = comparator.items()
      entry = dataset.feature.add()
      entry.path.step.append(feature)
      getattr(entry.distribution_comparator, name).threshold = threshold
    return config
