"""Pipeline configuration: everything a run needs, with embedded local defaults.

One typed, validated object that runners fill from their environment; the
pipeline definition (`pipeline.create_pipeline`) reads only this.
"""

import dataclasses
import os
from typing import Optional, Tuple, Union

from ml_metadata.proto import metadata_store_pb2

from duia.ingest import mapping as mapping_lib
from duia.models import config as model_config
from duia.models import distribution as distribution_lib
from duia.pipeline import metadata_config
from duia.validation import policy as validation_policy

PACKAGE_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs")
MODEL_NAME = "duia"
# FnApiRunner directly: Beam 2.74's DirectRunner first tries to download the
# Prism runner binary, which fails offline before falling back (NOTES point 5).
LOCAL_BEAM_ARGS: Tuple[str, ...] = ("--runner=FnApiRunner", "--direct_num_workers=1")


def packaged_mapping(name: str) -> str:
  """Path of a mapping config shipped with the package (e.g. "generated")."""
  path = os.path.join(PACKAGE_CONFIGS, f"{name}.json")
  if not os.path.exists(path):
    known = sorted(f[:-5] for f in os.listdir(PACKAGE_CONFIGS) if f.endswith(".json"))
    raise ValueError(f"No packaged mapping {name!r}; known: {known}")
  return path


@dataclasses.dataclass(frozen=True)
class BlessingConfig:
  """What the Evaluator reads and when it blesses a model (docs/design.md §6).

  Attributes:
    task: the task whose AUC gates the push.
    auc_floor: absolute lower bound on overall AUC.
    max_auc_regression: allowed absolute AUC drop against the last blessed model.
    eval_sample_examples: eval split size above which the Evaluator reads a
      weighted sample of the high-active x head examples (low-active and tail
      ones whole; `components/eval_sample_gen.py`); 0 reads every example.
  """
  task: str = "valid_consumption"
  auc_floor: float = 0.55
  max_auc_regression: float = 0.01
  eval_sample_examples: int = 50_000

  def __post_init__(self):
    if not 0.0 <= self.auc_floor <= 1.0:
      raise ValueError(f"blessing.auc_floor must be in [0, 1]. Received: {self.auc_floor}")
    if self.max_auc_regression < 0:
      raise ValueError("blessing.max_auc_regression must be >= 0. "
                       f"Received: {self.max_auc_regression}")
    if (isinstance(self.eval_sample_examples, bool)
        or not isinstance(self.eval_sample_examples, int) or self.eval_sample_examples < 0):
      raise ValueError("blessing.eval_sample_examples must be an int >= 0 (0 reads every "
                       f"example). Received: {self.eval_sample_examples!r}")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """A pipeline run's configuration.

  Attributes:
    root: folder or URI under which every output lives by default.
    data_root: folder/URI with the raw logs (the mapping's patterns are relative).
    mapping_path: mapping config file.
    training: the model's training config.
    pipeline_name: name in ML Metadata.
    model_name: served model name (the push goes to <serving_root>/<model_name>/).
    blessing: the Evaluator's thresholds and eval sample.
    beam_pipeline_args: Beam options for every Beam component.
    enable_cache: reuse unchanged component outputs across runs.
    pipeline_root_override: TFX pipeline root instead of <root>/pipeline_root.
    serving_root_override: push destination parent instead of <root>/serving.
    metadata: ML Metadata store (SQLite at <root>/metadata.sqlite by default).
    distribution: tf.distribute strategy of the Trainer
      (`duia.models.distribution.STRATEGIES`).
    validation: the curated schema, drift thresholds and tolerated anomalies
      of the data validation before Transform.
  """
  root: str
  data_root: str
  mapping_path: str
  training: model_config.TrainingConfig = model_config.TrainingConfig()
  pipeline_name: str = "duia"
  model_name: str = MODEL_NAME
  blessing: BlessingConfig = BlessingConfig()
  beam_pipeline_args: Tuple[str, ...] = LOCAL_BEAM_ARGS
  enable_cache: bool = False
  pipeline_root_override: Optional[str] = None
  serving_root_override: Optional[str] = None
  metadata: metadata_config.MetadataConfig = metadata_config.SqliteMetadata()
  distribution: str = "none"
  validation: validation_policy.ValidationConfig = validation_policy.ValidationConfig()

  def __post_init__(self):
    if self.blessing.task not in self.training.tasks:
      raise ValueError(f"blessing.task {self.blessing.task!r} is not among the trained tasks "
                       f"{list(self.training.tasks)}")
    distribution_lib.check_name(self.distribution)

  @property
  def pipeline_root(self) -> str:
    return self.pipeline_root_override or os.path.join(self.root, "pipeline_root")

  @property
  def metadata_path(self) -> str:
    """The SQLite file of ML Metadata; a MySQL config has none (ValueError)."""
    if isinstance(self.metadata, metadata_config.MysqlMetadata):
      raise ValueError("metadata_path is only defined for SQLite metadata; this config uses "
                       f"MySQL at {self.metadata.host}: use metadata_connection_config()")
    return self.metadata.file(self.root)

  @property
  def metadata_source(self) -> Union[str, metadata_store_pb2.ConnectionConfig]:
    """What `report` reads: the SQLite file (opened read-only) or the MySQL connection."""
    if isinstance(self.metadata, metadata_config.MysqlMetadata):
      return self.metadata_connection_config()
    return self.metadata_path

  def metadata_connection_config(self) -> metadata_store_pb2.ConnectionConfig:
    """The ML Metadata connection a local runner writes to."""
    return metadata_config.connection_config(self.metadata, self.root)

  @property
  def serving_root(self) -> str:
    """TF Serving's --model_base_path parent: models live in <this>/<model_name>/<version>."""
    return self.serving_root_override or os.path.join(self.root, "serving")

  @property
  def serving_model_dir(self) -> str:
    return os.path.join(self.serving_root, self.model_name)

  def mapping(self) -> mapping_lib.MappingConfig:
    return mapping_lib.load_mapping(self.mapping_path)
