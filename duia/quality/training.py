"""One model of the quality harness, trained and exported with the Trainer's code.

Follows `duia.models.trainer.run_fn` step by step (same `input_fn` over the
Transform output, `build_model`, seed, `fit`, the inference call that records
the input structure, `export` with both serving signatures and the resolved
config), minus what a comparison must not have or does not need: no warm
start (every model starts fresh), no per-epoch validation, no warmup file. The
cluster report is computed on the whole eval split rather than the Trainer's
first 20 batches, because DUIA Table 9's hit rate is over the test set.
"""

import dataclasses
import gc
import json
import glob
import os
import time
from typing import Any, Dict, List, Optional

import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx.components.util import tfxio_utils
from tfx.proto import example_gen_pb2
from tfx_bsl.public import tfxio

from duia.models import autograph_rules
from duia.models import cluster_report
from duia.models import config as config_lib
from duia.models import trainer
from duia.pipeline import report

_TELEMETRY = ["DuiaQualityHarness"]
EVAL_BATCH = 1024
# Training and export seconds, written next to the SavedModel after everything
# else; its presence marks a finished model (`finished_model`).
TIMES_FILE = "train_times.json"


@dataclasses.dataclass(frozen=True)
class TransformedData:
  """What the pipeline's Transform produced, and the raw examples TFMA reads.

  Attributes:
    transform_graph: the TFT output folder.
    transformed_examples: the transformed Examples artifact folder (Split-*/).
    raw_examples: RawLogExampleGen's Examples artifact folder (Split-*/).
  """
  transform_graph: str
  transformed_examples: str
  raw_examples: str

  @classmethod
  def from_metadata(cls, metadata_path: str) -> "TransformedData":
    """The newest outputs recorded in ML Metadata; raises if Transform never ran."""
    uris = (report.latest_output_uri(metadata_path, "Transform", "transform_graph"),
            report.latest_output_uri(metadata_path, "Transform", "transformed_examples"),
            report.latest_output_uri(metadata_path, "RawLogExampleGen", "examples"))
    if None in uris:
      raise FileNotFoundError(f"No Transform outputs in {metadata_path}; run the pipeline "
                              "up to Transform first.")
    return cls(*uris)

  def transformed_files(self, split: str) -> List[str]:
    return [os.path.join(self.transformed_examples, f"Split-{split}", "*")]

  def raw_eval_pattern(self) -> str:
    return os.path.join(self.raw_examples, "Split-eval", "*")

  def count_rows(self, split: str) -> int:
    files = sorted(glob.glob(self.transformed_files(split)[0]))
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def data_accessor() -> tfx.components.DataAccessor:
  """The DataAccessor the Trainer gets for Transform's output (tf.Example payload)."""

  def dataset_factory(file_pattern, options, schema):
    return tfxio_utils.make_tfxio(
        file_pattern=file_pattern, telemetry_descriptors=_TELEMETRY,
        payload_format=example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE,
        schema=schema).TensorFlowDataset(options)

  return tfx.components.DataAccessor(tf_dataset_factory=dataset_factory,
                                     record_batch_factory=None, data_view_decode_fn=None)


def eval_batches(data: TransformedData, tf_transform_output: tft.TFTransformOutput,
                 accessor: tfx.components.DataAccessor) -> tf.data.Dataset:
  """One unshuffled pass of (features, labels) over the transformed eval split."""
  dataset = accessor.tf_dataset_factory(
      data.transformed_files("eval"),
      tfxio.TensorFlowDatasetOptions(batch_size=EVAL_BATCH, num_epochs=1, shuffle=False),
      tf_transform_output.transformed_metadata.schema)
  return dataset.map(trainer.split_labels)


@dataclasses.dataclass
class TrainedModel:
  """An exported model and what training measured.

  Attributes:
    model_dir: the SavedModel (serving signatures, `assets.extra/`).
    train_s: wall seconds of `fit` (None when read from disk).
    export_s: wall seconds of the export (None when read from disk).
    clusters: `cluster_report.build_report` on the whole eval split ({} for PLE).
  """
  model_dir: str
  train_s: Optional[float]
  export_s: Optional[float]
  clusters: Dict[str, Any]

  @classmethod
  def from_disk(cls, model_dir: str) -> "TrainedModel":
    """An exported model as `train_and_export` left it (times None when not recorded)."""
    if not os.path.exists(os.path.join(model_dir, "saved_model.pb")):
      raise FileNotFoundError(f"No SavedModel in {model_dir}")
    clusters = _read_json(os.path.join(model_dir, "assets.extra", cluster_report.REPORT_FILE))
    times = _read_json(os.path.join(model_dir, TIMES_FILE))
    return cls(model_dir, times.get("train_s"), times.get("export_s"), clusters or {})

  def hit_rates(self) -> Dict[str, float]:
    """Level-1 hit fraction per memory (DUIA Table 9)."""
    return {name: r["level1_hit_fraction"] for name, r in self.clusters.items()}


def _read_json(path: str) -> Dict[str, Any]:
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def finished_model(model_dir: str, config: config_lib.TrainingConfig) -> Optional[TrainedModel]:
  """The model an earlier run finished exporting to `model_dir` with `config`, or None.

  Finished means: the SavedModel's recorded config (`assets.extra/
  training_config.json`, written by `trainer.export`) equals `config`, and
  what `train_and_export` writes after the export is there: `TIMES_FILE`, or,
  for models exported before it was written, the cluster report of a model
  with memories (PLE has none).
  """
  recorded = _read_json(os.path.join(model_dir, "assets.extra", trainer.CONFIG_FILE))
  if not recorded or recorded != json.loads(config.to_json()):
    return None
  has_report = os.path.exists(os.path.join(model_dir, "assets.extra",
                                           cluster_report.REPORT_FILE))
  if not (os.path.exists(os.path.join(model_dir, TIMES_FILE))
          or has_report or config.duia.variant == "ple"):
    return None
  return TrainedModel.from_disk(model_dir)


def train_and_export(config: config_lib.TrainingConfig, data: TransformedData,
                     model_dir: str) -> TrainedModel:
  """Trains `config` for `config.train_steps` steps and exports it like the Trainer.

  Args:
    config: the resolved training config (variant, seed, steps included).
    data: the Transform outputs.
    model_dir: where the SavedModel goes (overwritten).

  Returns:
    The exported model and its timings and cluster report.
  """
  times = os.path.join(model_dir, TIMES_FILE)
  if os.path.exists(times):  # a stale mark must not vouch for a half-written model
    os.remove(times)
  # Models of earlier runs stay in Keras' graph state otherwise; 20+ models in
  # one process would keep growing and slow down.
  tf.keras.backend.clear_session()
  gc.collect()
  autograph_rules.skip_tf_keras_conversion()
  tf.keras.utils.set_random_seed(config.seed)
  tf_transform_output = tft.TFTransformOutput(data.transform_graph)
  accessor = data_accessor()
  train = trainer.input_fn(data.transformed_files("train"), accessor, tf_transform_output,
                           config.batch_size, config.seed, config.shuffle_buffer)
  model = trainer.build_model(config, tf_transform_output)
  started = time.time()
  model.fit(train, epochs=1, steps_per_epoch=config.train_steps, verbose=0)
  train_s = time.time() - started
  evaluation = eval_batches(data, tf_transform_output, accessor)
  # As in run_fn: fit() never goes through Model.__call__, which saving needs.
  model(next(iter(evaluation))[0], training=False)
  started = time.time()
  trainer.export(model, tf_transform_output, config, model_dir)
  export_s = time.time() - started
  clusters = {}
  if hasattr(model, "memories"):
    clusters = cluster_report.build_report(model, (batch for batch, _ in evaluation))
    cluster_report.write_report(clusters, os.path.join(
        model_dir, "assets.extra", cluster_report.REPORT_FILE))
  trained = TrainedModel(model_dir, round(train_s, 1), round(export_s, 1), clusters)
  with open(times, "w") as f:
    json.dump({"train_s": trained.train_s, "export_s": trained.export_s}, f)
  return trained
