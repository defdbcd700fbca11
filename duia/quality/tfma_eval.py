"""TFMA for the quality harness: several models against one baseline, with intervals.

The EvalConfig is the pipeline's own (`duia.pipeline.eval_config`: the same
metrics per task and the same slices) without the blessing thresholds, with
one ModelSpec per model and the PLE model of the same seed marked
`is_baseline`. TFMA then adds, per candidate, metric and slice, a diff metric
(candidate - baseline, `MetricKey.is_diff`) computed on the same examples, and,
with `compute_confidence_intervals`, a 95% interval for every value and every
diff: both models' predictions sit in one extract per example, so each
resample (jackknife bucket or Poisson bootstrap draw) is paired.

Interval methods (`ConfidenceIntervalOptions.method`; TFMA 0.47 picks
JACKKNIFE when none is set): "jackknife" (20 delete-a-bucket replicates, one
pass over the data) and "bootstrap" (20 Poisson bootstrap replicates, so the
metric combiners see every example about 21 times). Both report
mean +- t(0.975, dof) * standard error of the replicates.
"""

import json
import os
import shutil
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from apache_beam.options import pipeline_options
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.utils import config_util
from tensorflow_model_analysis.writers import eval_config_writer

from duia.pipeline import configs
from duia.pipeline import eval_config as eval_config_lib

CI_METHODS = {
    "jackknife": tfma.ConfidenceIntervalOptions.JACKKNIFE,
    "bootstrap": tfma.ConfidenceIntervalOptions.POISSON_BOOTSTRAP,
}
# Fixed so that re-running the harness reproduces the intervals too.
RESAMPLING_SEED = 0
# TFMA's default. The interval computation repeats the AUC's confusion matrices
# (one entry per threshold, in Python) for every replicate, slice, model and
# binary task, so this and the number of slices and tasks set TFMA's run time.
AUC_THRESHOLDS = 10_000


def make_eval_config(tasks: Sequence[str], model_names: Sequence[str],
                     baseline: Optional[str], ci_method: str,
                     slices: Optional[Sequence[Sequence[str]]] = None,
                     auc_thresholds: int = AUC_THRESHOLDS) -> tfma.EvalConfig:
  """The pipeline's EvalConfig for several named models, no thresholds, with intervals.

  Args:
    tasks: the tasks to evaluate (each with the pipeline's metrics for its kind).
    model_names: every model, the baseline included.
    baseline: the name of the baseline model, or None (no diffs).
    ci_method: a key of CI_METHODS.
    slices: feature-key tuples to slice by (`()` is overall), or strings of
      TFMA `slice_keys_sql` (e.g. `activity_deciles.slice_sql`); None keeps
      the pipeline's slices.
    auc_thresholds: `num_thresholds` of TFMA's AUC histogram.

  Returns:
    The EvalConfig.

  Raises:
    ValueError: unknown `ci_method`, or a baseline that is not among the models.
  """
  if ci_method not in CI_METHODS:
    raise ValueError(f"ci_method must be one of {sorted(CI_METHODS)}. Received: {ci_method!r}")
  if baseline is not None and baseline not in model_names:
    raise ValueError(f"Baseline {baseline!r} is not among the models {list(model_names)}")
  config = eval_config_lib.make_eval_config(tasks, configs.BlessingConfig())
  # The harness compares models; it does not gate them.
  for spec in config.metrics_specs:
    for metric in spec.metrics:
      metric.ClearField("threshold")
      if metric.class_name == "AUC":
        metric.config = json.dumps({"num_thresholds": auc_thresholds})
  if slices is not None:
    del config.slicing_specs[:]
    config.slicing_specs.extend(
        tfma.SlicingSpec(slice_keys_sql=keys) if isinstance(keys, str)
        else tfma.SlicingSpec(feature_keys=list(keys)) for keys in slices)
  template = config.model_specs[0]
  specs = []
  for name in model_names:
    spec = tfma.ModelSpec()
    spec.CopyFrom(template)
    spec.name = name
    spec.is_baseline = name == baseline
    specs.append(spec)
  del config.model_specs[:]
  config.model_specs.extend(specs)
  config.options.compute_confidence_intervals.value = True
  config.options.confidence_intervals.method = CI_METHODS[ci_method]
  return config


def finished(models: Mapping[str, str], baseline: Optional[str], tasks: Sequence[str],
             data_location: str, output_path: str, ci_method: str,
             slices: Optional[Sequence[Sequence[str]]] = None,
             auc_thresholds: int = AUC_THRESHOLDS) -> bool:
  """Whether `output_path` holds a finished `run` with exactly these arguments.

  TFMA writes `eval_config.json` (the EvalConfig, data location and model
  folders) first and its output shards through Beam's temporary folders, which
  are removed when the run finishes; so a run stopped midway has no metrics
  shard or still has `beam-temp-*` folders.
  """
  if not os.path.exists(os.path.join(output_path, eval_config_writer.EVAL_CONFIG_FILE + ".json")):
    return False
  names = os.listdir(output_path)
  if any(n.startswith("beam-temp") for n in names) or not any(
      n.startswith(tfma.constants.METRICS_KEY) for n in names):
    return False
  eval_config, location, _, model_locations = eval_config_writer.load_eval_run(output_path)
  # As `run_model_analysis` stores it: with TFMA's defaults filled in.
  expected = config_util.update_eval_config_with_defaults(
      make_eval_config(tasks, list(models), baseline, ci_method, slices, auc_thresholds),
      has_baseline=len(models) > 1)
  return (eval_config == expected and location == data_location
          and model_locations == dict(models))


def run(models: Mapping[str, str], baseline: Optional[str], tasks: Sequence[str],
        data_location: str, output_path: str, ci_method: str,
        slices: Optional[Sequence[Sequence[str]]] = None,
        auc_thresholds: int = AUC_THRESHOLDS,
        beam_args: Sequence[str] = configs.LOCAL_BEAM_ARGS) -> None:
  """Evaluates `models` on the raw examples at `data_location` in one TFMA run.

  Args:
    models: model name -> SavedModel folder.
    baseline: the baseline's name (a key of `models`), or None.
    tasks: the tasks to evaluate.
    data_location: file pattern of raw tf.Example TFRecords (gzip is detected).
    output_path: TFMA's output folder; emptied first, so no stale shards are read.
    ci_method: a key of CI_METHODS.
    slices: as in `make_eval_config`.
    auc_thresholds: as in `make_eval_config`.
    beam_args: Beam options (the pipeline's local FnApiRunner by default).
  """
  eval_config = make_eval_config(tasks, list(models), baseline, ci_method, slices,
                                 auc_thresholds)
  shared = [tfma.default_eval_shared_model(eval_saved_model_path=path, model_name=name,
                                           eval_config=eval_config)
            for name, path in models.items()]
  if os.path.exists(output_path):
    shutil.rmtree(output_path)
  tfma.run_model_analysis(
      eval_shared_model=shared if len(shared) > 1 else shared[0],
      eval_config=eval_config, data_location=data_location, output_path=output_path,
      pipeline_options=pipeline_options.PipelineOptions(list(beam_args)),
      random_seed_for_testing=RESAMPLING_SEED)


def slice_name(slice_key) -> str:
  """"overall", "user_activity=low" or "item_popularity=tail, user_activity=low"."""
  parts = []
  for single in slice_key.single_slice_keys:
    kind = single.WhichOneof("kind")
    value = getattr(single, kind)
    parts.append(f"{single.column}={value.decode() if isinstance(value, bytes) else value}")
  return ", ".join(parts) if parts else "overall"


def _double(metric_value) -> Optional[float]:
  if metric_value.WhichOneof("type") == "double_value":
    return float(metric_value.double_value.value)
  return None


def metric_records(metrics_for_slices: Iterable[Any]) -> List[Dict[str, Any]]:
  """Flat records of scalar metrics from `MetricsForSlice` protos.

  Args:
    metrics_for_slices: what `tfma.load_metrics(output_path)` yields.

  Returns:
    [{"slice", "model", "metric" ("<output>/<name>"), "is_diff", "value", and
    "lower", "upper", "stderr" when TFMA computed an interval}]. Cross-slice
    results and non-scalar values are skipped.
  """
  records = []
  for for_slice in metrics_for_slices:
    # The overall slice's key is empty and may not even be marked present.
    if for_slice.WhichOneof("slicing_spec_oneof") == "cross_slice_key":
      continue
    name = slice_name(for_slice.slice_key)
    for item in for_slice.metric_keys_and_values:
      value = _double(item.value)
      if value is None:
        continue
      key = item.key
      metric = f"{key.output_name}/{key.name}" if key.output_name else key.name
      record = {"slice": name, "model": key.model_name, "metric": metric,
                "is_diff": bool(key.is_diff), "value": value}
      if item.HasField("confidence_interval"):
        interval = item.confidence_interval
        for field, proto in (("lower", interval.lower_bound), ("upper", interval.upper_bound),
                             ("stderr", interval.standard_error)):
          bound = _double(proto)
          if bound is not None:
            record[field] = bound
      records.append(record)
  return records


def by_model(records: Iterable[Mapping[str, Any]]) -> Dict[str, Dict[str, Any]]:
  """Groups flat records: {model: {"metrics": {slice: {metric: v}}, "diff": {...}}}.

  Each `v` is {"value", and "lower", "upper", "stderr" where present}; "diff"
  holds the candidate - baseline metrics (empty for the baseline itself).
  """
  out: Dict[str, Dict[str, Any]] = {}
  for record in records:
    entry = out.setdefault(record["model"], {"metrics": {}, "diff": {}})
    group = entry["diff" if record["is_diff"] else "metrics"]
    group.setdefault(record["slice"], {})[record["metric"]] = {
        k: record[k] for k in ("value", "lower", "upper", "stderr") if k in record}
  return out


def load(output_path: str) -> Dict[str, Dict[str, Any]]:
  """`by_model` of a finished TFMA run's output folder."""
  return by_model(metric_records(tfma.load_metrics(output_path)))
