"""DataValidationGate: stops the pipeline on anomalies the config does not tolerate.

TFX's validators record anomalies but never fail a run (they only mark their
output "not blessed"). This component reads both validators' anomalies and
raises `DataValidationError` naming each untolerated feature and anomaly, so
Transform and everything after it do not run. When the data passes, it writes
the run's statistics as its `validated_statistics` output: the next run's drift
check compares with the latest of these, so a run that was stopped never
becomes the baseline a drifted data set is measured against.
"""

import json

from absl import logging
from tfx import v1 as tfx
from tfx.utils import io_utils

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
    tolerate: tfx.dsl.components.Parameter[str] = "[]",
) -> None:
  """Raises on untolerated anomalies; else passes the statistics on as validated.

  Args:
    statistics: the run's StatisticsGen output.
    schema_anomalies: ExampleValidator's anomalies (against the curated schema).
    drift_anomalies: DistributionValidator's anomalies (against the statistics
      of the last validated run; none on the first run).
    validated_statistics: a copy of `statistics`, written only when they pass.
    tolerate: JSON list of `ValidationConfig.tolerate` patterns.

  Raises:
    DataValidationError: an anomaly not tolerated; the message names it.
  """
  config = policy.ValidationConfig(tolerate=tuple(json.loads(tolerate)))
  found = (findings_lib.read(schema_anomalies.uri, findings_lib.SCHEMA_CHECK)
           + findings_lib.read(drift_anomalies.uri, findings_lib.DRIFT_CHECK))
  tolerated = findings_lib.raise_if_blocking(found, config)
  for finding in tolerated:
    logging.warning("Tolerated by the validation config: %s", finding)
  io_utils.copy_dir(statistics.uri, validated_statistics.uri)
  validated_statistics.split_names = statistics.split_names
  validated_statistics.set_json_value_custom_property(
      "tolerated_anomalies", sorted({f"{f.feature}:{f.anomaly_type}" for f in tolerated}))
