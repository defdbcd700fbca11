"""The harness's TFMA config (pipeline metrics and slices, baseline, intervals) and its reading."""

import json

import pytest
import tensorflow_model_analysis as tfma

from duia.models import features
from duia.pipeline import configs
from duia.pipeline import eval_config as eval_config_lib
from duia.quality import tfma_eval

TASKS = (features.TASK_VALID, features.TASK_LIKE)


def test_eval_config_is_the_pipelines_without_thresholds_with_a_baseline_and_intervals():
  config = tfma_eval.make_eval_config(TASKS, ["ple_s0", "duia_s0", "uie_s0"], "ple_s0",
                                      "bootstrap")
  pipeline = eval_config_lib.make_eval_config(TASKS, configs.BlessingConfig())
  assert [s.name for s in config.model_specs] == ["ple_s0", "duia_s0", "uie_s0"]
  assert [s.is_baseline for s in config.model_specs] == [True, False, False]
  for spec in config.model_specs:
    assert spec.signature_name == pipeline.model_specs[0].signature_name
    assert dict(spec.label_keys) == dict(pipeline.model_specs[0].label_keys)
  assert list(config.slicing_specs) == list(pipeline.slicing_specs)
  assert [[m.class_name for m in s.metrics] for s in config.metrics_specs] == \
      [[m.class_name for m in s.metrics] for s in pipeline.metrics_specs]
  assert not any(m.HasField("threshold") for s in config.metrics_specs for m in s.metrics)
  assert any(m.HasField("threshold") for s in pipeline.metrics_specs for m in s.metrics)
  assert config.options.compute_confidence_intervals.value
  assert config.options.confidence_intervals.method == \
      tfma.ConfidenceIntervalOptions.POISSON_BOOTSTRAP
  assert tfma_eval.make_eval_config(TASKS, ["a"], None, "jackknife").options \
      .confidence_intervals.method == tfma.ConfidenceIntervalOptions.JACKKNIFE


def test_eval_config_slices_and_auc_thresholds_are_settable():
  config = tfma_eval.make_eval_config(
      TASKS, ["ple_s0", "duia_s0"], "ple_s0", "jackknife",
      slices=[(), (features.USER_ACTIVITY,)], auc_thresholds=1000)
  assert [list(s.feature_keys) for s in config.slicing_specs] == [[], [features.USER_ACTIVITY]]
  aucs = [m for s in config.metrics_specs for m in s.metrics if m.class_name == "AUC"]
  assert len(aucs) == len(TASKS)
  assert all(json.loads(m.config) == {"num_thresholds": 1000} for m in aucs)
  # TFMA passes the config to the metric's constructor.
  instance = tfma.metrics.AUC(**json.loads(aucs[0].config))
  assert instance.get_config()["num_thresholds"] == 1000


def test_eval_config_rejects_unknown_baseline_and_method():
  with pytest.raises(ValueError, match="Baseline 'ple' is not among"):
    tfma_eval.make_eval_config(TASKS, ["duia_s0"], "ple", "jackknife")
  with pytest.raises(ValueError, match="Received: 'percentile'"):
    tfma_eval.make_eval_config(TASKS, ["duia_s0"], None, "percentile")


def _entry(for_slice, name, model, value, is_diff=False, bounds=None):
  item = for_slice.metric_keys_and_values.add()
  item.key.name = name
  item.key.output_name = features.TASK_VALID
  item.key.model_name = model
  item.key.is_diff = is_diff
  item.value.double_value.value = value
  if bounds:
    item.confidence_interval.lower_bound.double_value.value = bounds[0]
    item.confidence_interval.upper_bound.double_value.value = bounds[1]
    item.confidence_interval.standard_error.double_value.value = bounds[2]


def test_reads_values_bounds_and_diffs_per_model_and_slice():
  overall = tfma.MetricsForSlice()  # the overall slice: an empty (even absent) key
  _entry(overall, "auc", "ple_s0", 0.75, bounds=(0.74, 0.76, 0.005))
  _entry(overall, "auc", "duia_s0", 0.76, bounds=(0.75, 0.77, 0.005))
  _entry(overall, "auc", "duia_s0", 0.01, is_diff=True, bounds=(0.002, 0.018, 0.004))
  plot_like = overall.metric_keys_and_values.add()  # non-scalar values are skipped
  plot_like.key.name = "confusion_matrix"
  plot_like.value.confusion_matrix_at_thresholds.SetInParent()
  low = tfma.MetricsForSlice()
  key = low.slice_key.single_slice_keys.add()
  key.column, key.bytes_value = features.USER_ACTIVITY, b"low"
  _entry(low, "example_count", "ple_s0", 411.0)
  cross = tfma.MetricsForSlice()
  cross.cross_slice_key.SetInParent()  # cross-slice results are not read
  _entry(cross, "auc", "ple_s0", 0.1)

  out = tfma_eval.by_model(tfma_eval.metric_records([overall, low, cross]))
  auc = f"{features.TASK_VALID}/auc"
  assert out["ple_s0"]["metrics"]["overall"][auc] == {
      "value": 0.75, "lower": 0.74, "upper": 0.76, "stderr": 0.005}
  assert out["ple_s0"]["metrics"]["user_activity=low"] == {
      f"{features.TASK_VALID}/example_count": {"value": 411.0}}
  assert out["ple_s0"]["diff"] == {}
  assert out["duia_s0"]["diff"]["overall"][auc] == {
      "value": 0.01, "lower": 0.002, "upper": 0.018, "stderr": 0.004}
  assert set(out["duia_s0"]["metrics"]["overall"]) == {auc}
