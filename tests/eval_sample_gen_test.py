"""EvalSampleGen: rare slices whole, the common examples sampled and weighted."""

import glob
import os

import pytest
import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.types import standard_artifacts

from duia.components import eval_sample_gen
from duia.models import features
from duia.pipeline import configs


def _example(i: int, activity: str, popularity: str) -> tf.train.Example:
  example = tf.train.Example()
  feature = example.features.feature
  feature[features.USER_ACTIVITY].bytes_list.value.append(activity.encode())
  feature[features.ITEM_POPULARITY].bytes_list.value.append(popularity.encode())
  feature["i"].int64_list.value.append(i)
  return example


def _strata(count: int):
  """`count` examples: every 10th of a low-active user, every 7th of a tail item."""
  for i in range(count):
    yield _example(i, features.LOW_ACTIVE if i % 10 == 0 else features.HIGH_ACTIVE,
                   features.TAIL_ITEM if i % 7 == 0 else features.HEAD_ITEM)


def _weight(record: bytes) -> float:
  return tf.train.Example.FromString(record).features.feature[
      features.EVAL_WEIGHT].float_list.value[0]


def test_weigh_keeps_rare_examples_and_weighs_kept_common_ones():
  low = _example(1, features.LOW_ACTIVE, features.HEAD_ITEM).SerializeToString()
  tail = _example(2, features.HIGH_ACTIVE, features.TAIL_ITEM).SerializeToString()
  assert _weight(eval_sample_gen.weigh(low, 0.01)) == 1.0
  assert _weight(eval_sample_gen.weigh(tail, 0.01)) == 1.0
  common = [_example(i, features.HIGH_ACTIVE, features.HEAD_ITEM).SerializeToString()
            for i in range(2000)]
  kept = [eval_sample_gen.weigh(record, 0.25) for record in common]
  weights = [_weight(record) for record in kept if record is not None]
  assert set(weights) == {4.0}
  assert 400 < len(weights) < 600  # ~500; the hash decides, so this is fixed
  # Rate 1: every example, weight 1, the rest of the example unchanged.
  whole = tf.train.Example.FromString(eval_sample_gen.weigh(common[0], 1.0))
  del whole.features.feature[features.EVAL_WEIGHT]
  assert whole == tf.train.Example.FromString(common[0])
  # The same bytes, the same decision: a model and its baseline see one sample.
  assert [r is None for r in kept] == [
      eval_sample_gen.weigh(record, 0.25) is None for record in common]


@pytest.mark.parametrize("recorded", [True, False])
def test_executor_writes_the_weighted_eval_sample(tmp_path, recorded):
  count = 4000
  source = standard_artifacts.Examples()
  source.uri = str(tmp_path / "examples")
  source.split_names = artifact_utils.encode_split_names(["train", "eval"])
  os.makedirs(os.path.join(source.uri, "Split-eval"))
  with tf.io.TFRecordWriter(os.path.join(source.uri, "Split-eval", "data.gz"),
                            options="GZIP") as writer:
    for example in _strata(count):
      writer.write(example.SerializeToString())
  if recorded:  # RawLogExampleGen records it; without it nothing is sampled
    source.set_int_custom_property("num_examples_eval", count)
  sample = standard_artifacts.Examples()
  sample.uri = str(tmp_path / "sample")
  executor = eval_sample_gen.Executor(base_beam_executor.BaseBeamExecutor.Context(
      beam_pipeline_args=list(configs.LOCAL_BEAM_ARGS)))
  executor.Do({eval_sample_gen.EXAMPLES_KEY: [source]},
              {eval_sample_gen.EVAL_EXAMPLES_KEY: [sample]},
              {eval_sample_gen.SAMPLE_EXAMPLES_KEY: 1000})

  assert artifact_utils.decode_split_names(sample.split_names) == ["eval"]
  files = glob.glob(os.path.join(sample.uri, "Split-eval", "*.gz"))
  records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
  by_index = {tf.train.Example.FromString(r).features.feature["i"].int64_list.value[0]:
              _weight(r) for r in records}
  rare = {i for i in range(count) if i % 10 == 0 or i % 7 == 0}
  common = count - len(rare)
  rate = sample.get_float_custom_property(eval_sample_gen.SAMPLE_RATE_PROPERTY)
  if not recorded:
    assert rate == 1.0 and sorted(by_index) == list(range(count))
    assert set(by_index.values()) == {1.0}
    return
  assert rate == 0.25  # 1000 / 4000
  assert rare <= set(by_index)  # every low-active and tail example
  assert all(by_index[i] == 1.0 for i in rare)
  assert all(by_index[i] == 4.0 for i in set(by_index) - rare)
  # The weights estimate the common count (std ~ sqrt(2743 * 0.25 * 0.75) / 0.25 = 91).
  estimate = sum(by_index[i] for i in set(by_index) - rare)
  assert abs(estimate - common) < 0.15 * common, (estimate, common)
  assert len(by_index) < 0.5 * count


def test_bad_sample_size_is_rejected():
  channel = types.Channel(type=standard_artifacts.Examples)
  with pytest.raises(ValueError, match="sample_examples must be an int >= 0.*-1"):
    eval_sample_gen.EvalSampleGen(examples=channel, sample_examples=-1)
