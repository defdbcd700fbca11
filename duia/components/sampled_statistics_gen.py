"""SampledStatisticsGen: TFX's StatisticsGen, sampling each split by its size.

TFDV's statistics cost grows with every value of every list feature (a
history of up to 100 ids per example), and past a few hundred thousand
examples a sample gives the same schema and drift checks. The sample rate is
chosen per split when the component runs, from the exact example count that
RawLogExampleGen recorded on its artifact (`num_examples_<split>`):

    rate = min(1, sample_examples / num_examples)

so about `sample_examples` examples per split are read into the statistics
(TFDV samples whole record batches at that rate, `StatsOptions.sample_rate`
semantics), and smaller splits are not sampled. TFX's own executor does the
work (its `sample_rate_by_split` execution property); this one only chooses the
rates and writes the exact counts on the statistics artifact as
`num_examples_<split>`, because sampled statistics count the sample: the
DataValidationGate compares those exact counts with the baseline's, not the
statistics' `num_examples`. Examples from another ExampleGen (no recorded
counts) are read whole, and their statistics' counts are exact.
"""

from typing import Any, Dict, List, Optional

from tfx import types
from tfx.components.statistics_gen import component as statistics_gen_component
from tfx.components.statistics_gen import executor as statistics_gen_executor
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils

from duia.components import raw_log_example_gen
from duia.validation import policy

SAMPLE_EXAMPLES_KEY = "sample_examples"
# Examples per split read into the statistics (see the module docstring).
DEFAULT_SAMPLE_EXAMPLES = policy.ValidationConfig.statistics_sample_examples


def sample_rate(num_examples: Optional[int], sample_examples: int) -> float:
  """The share of a split's examples to read for about `sample_examples` (1.0 below).

  Also EvalSampleGen's rate for the eval split's common examples.

  Args:
    num_examples: the split's exact example count; None (not recorded) -> 1.0.
    sample_examples: examples to read; 0 turns sampling off.
  """
  if not num_examples or sample_examples <= 0 or num_examples <= sample_examples:
    return 1.0
  return sample_examples / num_examples


def recorded_counts(artifact: types.Artifact) -> Dict[str, int]:
  """{split: exact example count} recorded on an Examples or ExampleStatistics artifact.

  RawLogExampleGen records them on its examples, SampledStatisticsGen copies
  them onto its statistics; splits without the property are left out.
  """
  counts = {}
  for split in artifact_utils.decode_split_names(artifact.split_names):
    name = raw_log_example_gen.NUM_EXAMPLES_PROPERTY.format(split=split)
    if artifact.has_custom_property(name):
      counts[split] = int(artifact.get_int_custom_property(name))
  return counts


class SampledStatisticsGenSpec(standard_component_specs.StatisticsGenSpec):
  PARAMETERS = dict(standard_component_specs.StatisticsGenSpec.PARAMETERS,
                    **{SAMPLE_EXAMPLES_KEY: ExecutionParameter(type=int)})


class Executor(statistics_gen_executor.Executor):
  """Chooses each split's sample rate, then runs TFX's StatisticsGen executor."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    examples = artifact_utils.get_single_instance(
        input_dict[standard_component_specs.EXAMPLES_KEY])
    splits = artifact_utils.decode_split_names(examples.split_names)
    counts = recorded_counts(examples)
    sample_examples = exec_properties.get(SAMPLE_EXAMPLES_KEY, DEFAULT_SAMPLE_EXAMPLES)
    rates = {split: sample_rate(counts.get(split), sample_examples) for split in splits}
    properties = dict(exec_properties)
    properties[standard_component_specs.SAMPLE_RATE_BY_SPLIT_KEY] = json_utils.dumps(rates)
    super().Do(input_dict, output_dict, properties)
    statistics = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.STATISTICS_KEY])
    for split in splits:
      if split not in counts:  # not sampled (rate 1.0): the statistics count every example
        counts[split] = _counted(statistics, split)
      statistics.set_int_custom_property(
          raw_log_example_gen.NUM_EXAMPLES_PROPERTY.format(split=split), counts[split])


def _counted(statistics: types.Artifact, split: str) -> int:
  stats = stats_artifact_utils.load_statistics(statistics, split).proto()
  return int(stats.datasets[0].num_examples) if stats.datasets else 0


class SampledStatisticsGen(statistics_gen_component.StatisticsGen):
  """StatisticsGen over a sample of about `sample_examples` examples per split."""

  SPEC_CLASS = SampledStatisticsGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, examples: types.BaseChannel,
               sample_examples: int = DEFAULT_SAMPLE_EXAMPLES):
    """Builds the component.

    Args:
      examples: RawLogExampleGen's examples (with `num_examples_<split>`).
      sample_examples: examples per split the statistics read; 0 reads all.
    """
    if isinstance(sample_examples, bool) or not isinstance(sample_examples, int) or (
        sample_examples < 0):
      raise ValueError("sample_examples must be an int >= 0 (0 reads every example). "
                       f"Received: {sample_examples!r}")
    spec = SampledStatisticsGenSpec(
        examples=examples, schema=None, stats_options_json=None,
        exclude_splits=json_utils.dumps([]), sample_examples=sample_examples,
        statistics=types.Channel(type=standard_artifacts.ExampleStatistics))
    # BaseBeamComponent's constructor, not StatisticsGen's (which builds its own spec).
    super(statistics_gen_component.StatisticsGen, self).__init__(spec=spec)
