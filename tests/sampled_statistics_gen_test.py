"""SampledStatisticsGen's executor: a big split is sampled, its exact count kept."""

import os

import pytest
import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs

from duia.components import sampled_statistics_gen
from duia.pipeline import configs


def _write(path: str, count: int) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path, options="GZIP") as writer:
    for i in range(count):
      example = tf.train.Example()
      example.features.feature["x"].int64_list.value.append(i % 7)
      writer.write(example.SerializeToString())


@pytest.mark.parametrize("recorded", [True, False])
def test_a_big_split_is_sampled_and_the_exact_counts_are_recorded(tmp_path, recorded):
  counts = {"train": 40_000, "eval": 300}
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / "examples")
  examples.split_names = artifact_utils.encode_split_names(list(counts))
  for split, count in counts.items():
    _write(os.path.join(examples.uri, f"Split-{split}", "data.gz"), count)
    if recorded:  # as RawLogExampleGen records them; ImportExampleGen does not
      examples.set_int_custom_property(f"num_examples_{split}", count)
  statistics = standard_artifacts.ExampleStatistics()
  statistics.uri = str(tmp_path / "statistics")
  executor = sampled_statistics_gen.Executor(base_beam_executor.BaseBeamExecutor.Context(
      beam_pipeline_args=list(configs.LOCAL_BEAM_ARGS)))
  executor.Do({standard_component_specs.EXAMPLES_KEY: [examples]},
              {standard_component_specs.STATISTICS_KEY: [statistics]},
              {sampled_statistics_gen.SAMPLE_EXAMPLES_KEY: 10_000})

  def counted(split):
    return sampled_statistics_gen._counted(statistics, split)  # pylint: disable=protected-access

  # The exact counts, whatever was read; the volume check compares these.
  assert sampled_statistics_gen.recorded_counts(statistics) == counts
  assert counted("eval") == 300  # under the target: read whole
  if recorded:
    # TFDV samples whole record batches at 0.25: about 10,000, never all.
    assert 0 < counted("train") < 40_000
  else:  # no recorded count, no sampling: the statistics count every example
    assert counted("train") == 40_000
