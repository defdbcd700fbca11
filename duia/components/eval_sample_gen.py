"""EvalSampleGen: the Evaluator's examples, the common ones sampled and weighted.

TFMA's cost is per example and slice: every example passes through a Python
combiner per metric, task and slice (`benchmarks/evaluator_bench --profile`
at 100k rows: 51 of 90 s in the combiners' `add_input`; docs/scale.md), so the Evaluator grows with the eval split and was the
largest component at 1M rows.
The slices the product is judged on are the small ones (low-active users,
tail items); the large stratum (high-active user and head item) is where a
sample costs little precision. So this component copies the eval split with:

- every example of a low-active user or of a tail item, weight 1;
- each other example with probability `rate`, weight 1 / rate, where

      rate = min(1, sample_examples / num_examples_eval)

  from the exact count RawLogExampleGen recorded (read whole if none).

The weight goes into each example as `features.EVAL_WEIGHT`, which the
EvalConfig names as TFMA's example weight, so every metric of every slice
(overall, high-active, head included) estimates the full split's value; the
low-active and tail slices are computed on all their examples. An example is
kept or not by a hash of its bytes: the same data gives the same sample, and
the model and its baseline are evaluated on the same examples. Below
`sample_examples` eval examples nothing is dropped (every weight is 1).
"""

import os
import zlib
from typing import Any, Dict, List, Optional

import apache_beam as beam
import tensorflow as tf
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

from duia.components import sampled_statistics_gen
from duia.models import features

EXAMPLES_KEY = "examples"
EVAL_EXAMPLES_KEY = "eval_examples"
SAMPLE_EXAMPLES_KEY = "sample_examples"
EVAL_SPLIT = "eval"
# On the output artifact: the rate the common examples were kept at.
SAMPLE_RATE_PROPERTY = "common_sample_rate"
_HASH_RANGE = float(2 ** 32)


def is_rare(example: tf.train.Example) -> bool:
  """Whether an example belongs to a slice that is never sampled."""
  feature = example.features.feature

  def value(key: str) -> bytes:
    values = feature[key].bytes_list.value if key in feature else []
    return values[0] if values else b""

  return (value(features.USER_ACTIVITY) == features.LOW_ACTIVE.encode()
          or value(features.ITEM_POPULARITY) == features.TAIL_ITEM.encode())


def weigh(record: bytes, rate: float) -> Optional[bytes]:
  """One serialized tf.Example -> itself with its weight, or None when dropped."""
  example = tf.train.Example.FromString(record)
  weight = 1.0
  if rate < 1.0 and not is_rare(example):
    if zlib.crc32(record) / _HASH_RANGE >= rate:
      return None
    weight = 1.0 / rate
  example.features.feature[features.EVAL_WEIGHT].float_list.value[:] = [weight]
  return example.SerializeToString()


class EvalSampleGenSpec(types.ComponentSpec):
  PARAMETERS = {SAMPLE_EXAMPLES_KEY: ExecutionParameter(type=int)}
  INPUTS = {EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}
  OUTPUTS = {EVAL_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class Executor(base_beam_executor.BaseBeamExecutor):
  """Copies the eval split, sampled and weighted (see the module docstring)."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    source = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
    sample = artifact_utils.get_single_instance(output_dict[EVAL_EXAMPLES_KEY])
    count = sampled_statistics_gen.recorded_counts(source).get(EVAL_SPLIT)
    rate = sampled_statistics_gen.sample_rate(count, exec_properties[SAMPLE_EXAMPLES_KEY])
    sample.split_names = artifact_utils.encode_split_names([EVAL_SPLIT])
    read = os.path.join(artifact_utils.get_split_uri([source], EVAL_SPLIT), "*")
    write = os.path.join(artifact_utils.get_split_uri([sample], EVAL_SPLIT), "data_tfrecord")
    with self._make_beam_pipeline() as pipeline:
      _ = (pipeline
           | "Read" >> beam.io.ReadFromTFRecord(read)
           | "Weigh" >> beam.Map(weigh, rate)
           | "DropUnsampled" >> beam.Filter(lambda record: record is not None)
           | "Write" >> beam.io.WriteToTFRecord(write, file_name_suffix=".gz"))
    examples_utils.set_payload_format(sample, example_gen_pb2.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(sample, "tfrecords_gzip")
    sample.set_float_custom_property(SAMPLE_RATE_PROPERTY, rate)


class EvalSampleGen(base_beam_component.BaseBeamComponent):
  """The eval split for the Evaluator: rare slices whole, the rest sampled and weighted.

  Example:
    eval_sample = EvalSampleGen(examples=example_gen.outputs["examples"],
                                sample_examples=50_000)
    evaluator = tfx.components.Evaluator(examples=eval_sample.outputs["eval_examples"], ...)
  """

  SPEC_CLASS = EvalSampleGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, examples: types.BaseChannel, sample_examples: int):
    """Builds the component.

    Args:
      examples: RawLogExampleGen's examples (with `num_examples_eval`).
      sample_examples: the eval split size from which on the common examples
        are sampled; 0 keeps every example.
    """
    if isinstance(sample_examples, bool) or not isinstance(sample_examples, int) or (
        sample_examples < 0):
      raise ValueError("sample_examples must be an int >= 0 (0 keeps every example). "
                       f"Received: {sample_examples!r}")
    spec = EvalSampleGenSpec(examples=examples, sample_examples=sample_examples,
                             eval_examples=types.Channel(type=standard_artifacts.Examples))
    super().__init__(spec=spec)
