"""What a finished run produced: per-component times, TFMA metrics per slice.

Reads ML Metadata (the executions of the latest pipeline run and their times)
and the Evaluator's output, so the numbers printed are the pipeline's own.
"""

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
import tensorflow as tf
import tensorflow_model_analysis as tfma

from duia.pipeline import eval_config as eval_config_lib

PIPELINE_RUN_CONTEXT = "pipeline_run"
NODE_CONTEXT = "node"


# ML Metadata to read: a SQLite file path (opened read-only) or a connection
# (MySQL), as `PipelineConfig.metadata_source` gives.
MetadataSource = Union[str, metadata_store_pb2.ConnectionConfig]


def _store(metadata: MetadataSource) -> mlmd.MetadataStore:
  if isinstance(metadata, metadata_store_pb2.ConnectionConfig):
    return mlmd.MetadataStore(metadata)
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = metadata
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return mlmd.MetadataStore(config)


def component_seconds(metadata: MetadataSource) -> List[Tuple[str, float]]:
  """(node id, wall seconds) of the latest pipeline run's executions, in order."""
  store = _store(metadata)
  runs = store.get_contexts_by_type(PIPELINE_RUN_CONTEXT)
  if not runs:
    return []
  latest = max(runs, key=lambda c: c.create_time_since_epoch)
  executions = sorted(store.get_executions_by_context(latest.id),
                      key=lambda e: e.create_time_since_epoch)
  node_type = store.get_context_type(NODE_CONTEXT).id
  out = []
  for execution in executions:
    # The node's id ("StatisticsGen", "latest_model_resolver"), from its node
    # context "<pipeline>.<node id>": a component's type name can be shared
    # (three Resolvers) or differ from its id (SampledStatisticsGen).
    name = next((c.name.split(".", 1)[-1] for c in store.get_contexts_by_execution(execution.id)
                 if c.type_id == node_type), "?")
    seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1e3
    out.append((name, seconds))
  return out


def latest_artifact_uri(metadata: MetadataSource, type_name: str) -> Optional[str]:
  """URI of the newest artifact of `type_name`, or None."""
  artifacts = _store(metadata).get_artifacts_by_type(type_name)
  if not artifacts:
    return None
  return max(artifacts, key=lambda a: a.id).uri


def _executions_of(store, component: str):
  types = {t.id: t.name for t in store.get_execution_types()}
  return [e for e in store.get_executions()
          if types.get(e.type_id, "").rsplit(".", 1)[-1] == component]


def count_executions(metadata: MetadataSource, component: str) -> int:
  """How many times `component` (by class name) has run, cached runs included."""
  return len(_executions_of(_store(metadata), component))


def _latest_input_events(store, component: str) -> list:
  """INPUT events (with a key) of the newest execution of `component`."""
  executions = _executions_of(store, component)
  if not executions:
    return []
  latest = max(executions, key=lambda e: e.id)
  return [event for event in store.get_events_by_execution_ids([latest.id])
          if event.type == metadata_store_pb2.Event.INPUT and event.path.steps]


def latest_input_keys(metadata: MetadataSource, component: str) -> set:
  """Input keys (e.g. "base_model") the newest execution of `component` received."""
  return {event.path.steps[0].key
          for event in _latest_input_events(_store(metadata), component)}


def latest_input_uri(metadata: MetadataSource, component: str, input_key: str) -> Optional[str]:
  """URI of input `input_key` of the newest execution of `component`, or None."""
  store = _store(metadata)
  for event in _latest_input_events(store, component):
    if event.path.steps[0].key == input_key:
      return store.get_artifacts_by_id([event.artifact_id])[0].uri
  return None


def latest_output_uri(metadata: MetadataSource, component: str, output_key: str) -> Optional[str]:
  """URI of output `output_key` of the newest execution of `component` (by class name)."""
  store = _store(metadata)
  executions = _executions_of(store, component)
  for execution in sorted(executions, key=lambda e: e.id, reverse=True):
    for event in store.get_events_by_execution_ids([execution.id]):
      if (event.type == metadata_store_pb2.Event.OUTPUT and event.path.steps
          and event.path.steps[0].key == output_key):
        return store.get_artifacts_by_id([event.artifact_id])[0].uri
  return None


def is_blessed(blessing_uri: str) -> bool:
  return tf.io.gfile.exists(os.path.join(blessing_uri, "BLESSED"))


@dataclasses.dataclass
class SliceMetrics:
  slice_name: str
  values: Dict[str, float]  # "<output>/<metric>" -> value


def _slice_name(slice_key) -> str:
  if not slice_key:
    return "overall"
  return ", ".join(f"{k}={v.decode() if isinstance(v, bytes) else v}" for k, v in slice_key)


def load_slice_metrics(evaluation_uri: str) -> List[SliceMetrics]:
  """Every slice's metrics from a TFMA evaluation output."""
  result = tfma.load_eval_result(evaluation_uri)
  rows = []
  for slice_key, by_output in result.slicing_metrics:
    values = {}
    for output, by_sub_key in by_output.items():
      for metrics in by_sub_key.values():
        for name, value in metrics.items():
          if "doubleValue" in value:
            values[f"{output}/{name}"] = value["doubleValue"]
    rows.append(SliceMetrics(_slice_name(slice_key), values))
  order = {"overall": 0}
  return sorted(rows, key=lambda r: (order.get(r.slice_name, 1 + r.slice_name.count(",")),
                                     r.slice_name))


def metrics_table(rows: Sequence[SliceMetrics], tasks: Sequence[str]) -> str:
  """A fixed-width table: one row per slice, key metrics per task."""
  columns = []
  for task in tasks:
    metrics = (("auc", "auc"), ("binary_crossentropy", "logloss"), ("calibration", "calib")) \
        if task in eval_config_lib.binary_tasks() else (("root_mean_squared_error", "rmse"),)
    columns += [(f"{task}/{m}", f"{task[:8]} {short}") for m, short in metrics]
  count_key = f"{tasks[0]}/example_count"
  width = max([len(r.slice_name) for r in rows] + [5])
  header = f"{'slice':<{width}} {'n':>7} " + " ".join(f"{label:>15}" for _, label in columns)
  lines = [header, "-" * len(header)]
  for row in rows:
    cells = []
    for key, _ in columns:
      value = row.values.get(key)
      cells.append(f"{value:>15.4f}" if value is not None else f"{'-':>15}")
    count = row.values.get(count_key)
    count_text = f"{int(count):>7d}" if count is not None else f"{'-':>7}"
    lines.append(f"{row.slice_name:<{width}} {count_text} " + " ".join(cells))
  return "\n".join(lines)
