"""DataValidationGate: stops the pipeline on anomalies the config does not tolerate.

TFX's validators record anomalies but never fail a run (they only mark their
output "not blessed"). This component reads both validators' anomalies and
raises `DataValidationError` naming each untolerated feature and anomaly, so
Transform and everything after it do not run. When the data passes, it writes
the run's statistics as its `validated_statistics` output: the next run's drift
check compares with the latest of these, so a run that was stopped never
becomes the baseline a drifted data set is measured against. It also checks
the examples' volume against that baseline, on exact counts (the statistics
may be a sample).
"""

import json

from absl import logging
from tfx import v1 as tfx
from tfx.utils import io_utils

from duia.components import raw_log_example_gen
from duia.components import sampled_statistics_gen
from duia.validation import findings as findings_lib
from duia.validation import policy

VALIDATED_STATISTICS_KEY = "validated_statistics"
ExampleStatistics = tfx.types.standard_artifacts.ExampleStatistics
ExampleAnomalies = tfx.types.standard_artifacts.ExampleAnomalies


@tfx.dsl.components.component
def DataValidationGate(  # pylint: disable=invalid-name
    statistics: tfx.dsl.components.InputArtifact[ExampleStatistics],
    schema_anomalies: tfx.dsl.components.InputArtifact[ExampleAnomalies],
    drift_anomalies: tfx.dsl.components.InputArtifact[ExampleAnomalies],
    validated_statistics: tfx.dsl.components.OutputArtifact[ExampleStatistics],
    # Optional: TFX's function components mark an input optional by its None default.
    baseline_statistics: tfx.dsl.components.InputArtifact[ExampleStatistics] = None,
    tolerate: tfx.dsl.components.Parameter[str] = "[]",
    min_examples_ratio: tfx.dsl.components.Parameter[float] = 0.0,
) -> None:
  """Raises on untolerated anomalies; else passes the statistics on as validated.

  Args:
    statistics: the run's statistics, with the exact example counts per split
      (SampledStatisticsGen).
    schema_anomalies: ExampleValidator's anomalies (against the curated schema).
    drift_anomalies: DistributionValidator's anomalies (against the statistics
      of the last validated run; none on the first run).
    validated_statistics: a copy of `statistics`, written only when they pass.
    baseline_statistics: the last validated run's statistics (None on the
      first run): the exact counts the volume check compares with.
    tolerate: JSON list of `ValidationConfig.tolerate` patterns.
    min_examples_ratio: `ValidationConfig.min_examples_ratio`; 0 turns the
      volume check off.

  Raises:
    DataValidationError: an anomaly not tolerated; the message names it.
  """
  config = policy.ValidationConfig(tolerate=tuple(json.loads(tolerate)))
  counts = sampled_statistics_gen.recorded_counts(statistics)
  baseline_counts = ({} if baseline_statistics is None
                     else sampled_statistics_gen.recorded_counts(baseline_statistics))
  found = (findings_lib.read(schema_anomalies.uri, findings_lib.SCHEMA_CHECK)
           + findings_lib.read(drift_anomalies.uri, findings_lib.DRIFT_CHECK)
           + findings_lib.volume_findings(counts, baseline_counts, min_examples_ratio or None))
  tolerated = findings_lib.raise_if_blocking(found, config)
  for finding in tolerated:
    logging.warning("Tolerated by the validation config: %s", finding)
  io_utils.copy_dir(statistics.uri, validated_statistics.uri)
  validated_statistics.split_names = statistics.split_names
  for split, count in counts.items():
    validated_statistics.set_int_custom_property(
        raw_log_example_gen.NUM_EXAMPLES_PROPERTY.format(split=split), count)
  validated_statistics.set_json_value_custom_property(
      "tolerated_anomalies", sorted({f"{f.feature}:{f.anomaly_type}" for f in tolerated}))
