"""The data validation part of the pipeline: check a run's statistics, or stop it.

    statistics -> ExampleValidator (against the curated schema, ImportSchemaGen)
               -> DistributionValidator (against the last validated statistics)
               -> DataValidationGate (raises on an anomaly the config does not
                  tolerate; else its output is the next run's drift baseline)

`create_pipeline` puts these between StatisticsGen and Transform; tests run
them on hand-made examples with the same wiring.
"""

import dataclasses
import json
from typing import List

from tfx import v1 as tfx
from tfx.dsl.components.base import base_node
# Not in tfx.v1 in TFX 1.16; the component itself is TFX's.
from tfx.components.distribution_validator import component as distribution_validator_lib

from duia.components import validation_gate
from duia.validation import policy

GATE_ID = "DataValidationGate"


@dataclasses.dataclass(frozen=True)
class ValidationNodes:
  """The nodes, in pipeline order; `schema` is the curated schema's channel."""
  schema_gen: base_node.BaseNode
  example_validator: base_node.BaseNode
  baseline: base_node.BaseNode
  distribution_validator: base_node.BaseNode
  gate: base_node.BaseNode

  @property
  def schema(self) -> tfx.dsl.Channel:
    return self.schema_gen.outputs["schema"]

  def in_order(self) -> List[base_node.BaseNode]:
    return [self.schema_gen, self.example_validator, self.baseline,
            self.distribution_validator, self.gate]


def validation_nodes(statistics: tfx.dsl.Channel,
                     config: policy.ValidationConfig) -> ValidationNodes:
  """The validation nodes for a StatisticsGen's `statistics`.

  Args:
    statistics: ExampleStatistics of the run's examples.
    config: schema, drift thresholds and tolerated anomalies.

  Returns:
    The nodes; make the first node that must not run on bad data depend on
    `gate` (`add_upstream_node`).
  """
  # The curated schema, not one inferred from each run: a run is checked
  # against what was agreed, not against itself.
  schema_gen = tfx.components.ImportSchemaGen(schema_file=config.schema)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics, schema=schema_gen.outputs["schema"])
  # The drift baseline: the statistics of the last run whose data passed the
  # gate (the gate's own output), never those of a run it stopped. Empty on
  # the first run, when DistributionValidator passes everything.
  baseline = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
      statistics=tfx.dsl.Channel(
          type=tfx.types.standard_artifacts.ExampleStatistics,
          producer_component_id=GATE_ID,
          output_key=validation_gate.VALIDATED_STATISTICS_KEY),
  ).with_id("validated_statistics_resolver")
  distribution_validator = distribution_validator_lib.DistributionValidator(
      statistics=statistics,
      baseline_statistics=baseline.outputs["statistics"].as_optional(),
      config=config.distribution_validator_config())
  gate = validation_gate.DataValidationGate(
      statistics=statistics,
      schema_anomalies=example_validator.outputs["anomalies"],
      drift_anomalies=distribution_validator.outputs["anomalies"],
      baseline_statistics=baseline.outputs["statistics"].as_optional(),
      tolerate=json.dumps(list(config.tolerate)),
      min_examples_ratio=float(config.min_examples_ratio or 0.0)).with_id(GATE_ID)
  return ValidationNodes(schema_gen, example_validator, baseline, distribution_validator, gate)
