"""RawLogExampleGen: an ExampleGen-style TFX component for raw exposure logs.

It reads exposures, users and items as described by a mapping config, joins
them, derives the point-in-time features of docs/design.md §3, splits train/eval
by time and writes gzipped tf.Example TFRecords in the Examples artifact layout
that StatisticsGen, Transform and the rest of TFX read. Rows that cannot be
ingested go to a separate Quarantine artifact with their reason, and are counted
(the counts are also custom properties of both artifacts, so they are visible in
ML Metadata).
"""

import json
from typing import Any, Dict, List

from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx.types.component_spec import ExecutionParameter

from duia.ingest import beam_ingest
from duia.ingest import ingest_outputs
from duia.ingest import mapping as mapping_lib
from duia.models import features

EXAMPLES_KEY = "examples"
QUARANTINE_KEY = "quarantine"
INPUT_BASE_KEY = "input_base"
MAPPING_KEY = "mapping_config"
CONTRACT_VERSION_KEY = "contract_version"
# Exact examples per split, on the Examples artifact (and copied onto statistics).
NUM_EXAMPLES_PROPERTY = "num_examples_{split}"


class Quarantine(types.Artifact):
  """Rows that could not be ingested, as JSON lines with source and reason."""
  # Kubeflow V2 requires custom artifact types named `namespace.Type`
  # (tfx.orchestration.kubeflow.v2.compiler_utils._SCHEMA_TITLE_RE).
  TYPE_NAME = "duia.Quarantine"


class RawLogExampleGenSpec(types.ComponentSpec):
  PARAMETERS = {
      INPUT_BASE_KEY: ExecutionParameter(type=str),
      MAPPING_KEY: ExecutionParameter(type=str),  # MappingConfig as JSON
      # TFX's cache keys on execution properties, not on the ingestion's code:
      # the contract version makes examples of an older contract a cache miss.
      CONTRACT_VERSION_KEY: ExecutionParameter(type=int),
  }
  INPUTS: Dict[str, ChannelParameter] = {}
  OUTPUTS = {
      EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
      QUARANTINE_KEY: ChannelParameter(type=Quarantine),
  }


class Executor(base_beam_executor.BaseBeamExecutor):
  """Runs the Beam ingestion and records its counts on the artifacts."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    mapping = mapping_lib.MappingConfig.from_json(exec_properties[MAPPING_KEY])
    examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
    quarantine = artifact_utils.get_single_instance(output_dict[QUARANTINE_KEY])

    with self._make_beam_pipeline() as pipeline:
      outputs = pipeline | "Ingest" >> beam_ingest.IngestRawLogs(  # pylint: disable=no-value-for-parameter
          mapping, exec_properties[INPUT_BASE_KEY])
      ingest_outputs.write_outputs(outputs, examples.uri, quarantine.uri)

    examples.split_names = artifact_utils.encode_split_names(list(beam_ingest.SPLITS))
    examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, "tfrecords_gzip")
    summary = ingest_outputs.read_summary(quarantine.uri)
    for artifact in (examples, quarantine):
      artifact.set_int_custom_property("quarantined_total", summary["quarantined_total"])
      artifact.set_string_custom_property("quarantined_by_reason",
                                          json.dumps(summary["quarantined"], sort_keys=True))
    examples.set_int_custom_property("low_activity_threshold",
                                     summary[beam_ingest.LOW_ACTIVITY_THRESHOLD])
    for split, count in summary["examples"].items():
      examples.set_int_custom_property(NUM_EXAMPLES_PROPERTY.format(split=split), count)


class RawLogExampleGen(base_beam_component.BaseBeamComponent):
  """Ingests raw exposure logs into train/eval tf.Examples plus a quarantine.

  Example:
    example_gen = RawLogExampleGen(
        input_base="/data/logs", mapping=mapping_lib.load_mapping("generated.json"))
  """

  SPEC_CLASS = RawLogExampleGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, input_base: str, mapping: mapping_lib.MappingConfig):
    """Creates the component.

    Args:
      input_base: folder or Beam filesystem URI the mapping's patterns are
        relative to.
      mapping: the mapping config; it is stored in the pipeline as JSON, so a
        change of mapping is a change of the component's execution properties
        (and invalidates TFX's cache).
    """
    spec = RawLogExampleGenSpec(
        input_base=input_base,
        mapping_config=mapping.to_json(),
        contract_version=features.CONTRACT_VERSION,
        examples=types.Channel(type=standard_artifacts.Examples),
        quarantine=types.Channel(type=Quarantine))
    super().__init__(spec=spec)
