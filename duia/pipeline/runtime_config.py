"""Runtime configuration: where a pipeline runs, from one JSON file.

`PipelineConfig` is what `create_pipeline` reads; this is what a person
writes to get one, for a laptop or a cluster alike:

    {
      "root": "gs://my-bucket/duia",
      "data_root": "gs://my-bucket/logs",
      "mapping": "generated",
      "training": {"preset": "small", "overrides": {"train_steps": 2000}},
      "beam": {"preset": "dataflow",
               "options": {"project": "my-project", "region": "europe-west1",
                           "temp_location": "gs://my-bucket/tmp",
                           "sdk_container_image": "{image}"}},
      "metadata": {"type": "sqlite"},
      "distribution": "mirrored",
      "validation": {"tolerate": ["client_version:SCHEMA_NEW_COLUMN"]},
      "kubeflow": {"image": "europe-docker.pkg.dev/my-project/duia/duia-ranking:0.1.0",
                   "output": "duia_pipeline.json"}
    }

Every key is optional; the defaults are those of `duia run` (outputs under
runs/local, in-memory Beam, SQLite ML Metadata). Unknown keys and bad values
are errors that name the key. Roots may be local paths (relative ones are
taken from the current directory) or any Beam/TensorFlow filesystem URI
(gs://, s3://, hdfs://), which are kept as given. In Beam option values,
"{image}" stands for `kubeflow.image`, so Dataflow/Flink/Spark workers can run
the same image as the Kubeflow steps.
"""

import dataclasses
import json
import re
from typing import Any, Dict, Mapping, Optional, Tuple

from duia.models import config as model_config
from duia.models import distribution as distribution_lib
from duia.pipeline import beam_presets
from duia.pipeline import configs
from duia.pipeline import metadata_config
from duia.pipeline import uris
from duia.validation import policy as validation_policy

# The pipeline image: `docker build -t duia-ranking:0.1.0 .` at the repository
# root (the Dockerfile); push it to a registry the cluster pulls from and set
# kubeflow.image to that name.
DEFAULT_IMAGE = "duia-ranking:0.1.0"
DEFAULT_KUBEFLOW_OUTPUT = "duia_pipeline.json"
IMAGE_PLACEHOLDER = "{image}"
# Kubeflow's rule for pipeline names (tfx.orchestration.kubeflow.v2.pipeline_builder),
# enforced for every runner so one name works everywhere.
_PIPELINE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")


def _check(where: str, value: Any, kind: type, optional: bool = False) -> None:
  """Raises ValueError naming `where` unless `value` is a `kind` (or None if optional)."""
  if value is None and optional:
    return
  # bool is an int subclass; a JSON true is never meant as a number here.
  ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
  if not ok or (kind is str and not value):
    wanted = "a non-empty string" if kind is str else f"a {kind.__name__}"
    raise ValueError(f"{where} must be {wanted}{' or null' if optional else ''}. "
                     f"Received: {value!r}")


def _fields_of(cls, raw: Any, where: str) -> Dict[str, Any]:
  """`raw` as keyword arguments of `cls`; unknown keys are an error naming them."""
  if not isinstance(raw, Mapping):
    raise ValueError(f"{where or 'a runtime config'} must be an object. Received: {raw!r}")
  known = [f.name for f in dataclasses.fields(cls)]
  for key in raw:
    if key not in known:
      name = f"{where}.{key}" if where else key
      raise ValueError(f"Unknown runtime config key {name!r}; known: {known}")
  return dict(raw)


# Substrings of the mapping names (or paths) of rating data, which has no watch
# time: they train the "movielens" preset's tasks (valid consumption and like).
RATING_MAPPINGS = ("movielens", "amazon-reviews")


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
  """The model's training config: a preset and nested overrides.

  Attributes:
    preset: a `duia.models.config.PRESETS` name; None picks "movielens" for
      rating mappings (`RATING_MAPPINGS`) and "small" otherwise (as `duia run`
      does).
    overrides: nested overrides, e.g. {"ple": {"num_levels": 3}}.
  """
  preset: Optional[str] = None
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    _check("training.preset", self.preset, str, optional=True)
    if self.preset is not None and self.preset not in model_config.PRESETS:
      raise ValueError(f"training.preset must be one of {tuple(model_config.PRESETS)}. "
                       f"Received: {self.preset!r}")
    if not isinstance(self.overrides, Mapping):
      raise ValueError(f"training.overrides must be an object. Received: {self.overrides!r}")

  def build(self, mapping: str) -> model_config.TrainingConfig:
    rating = any(part in mapping for part in RATING_MAPPINGS)
    name = self.preset or ("movielens" if rating else "small")
    return model_config.preset(name, dict(self.overrides))


@dataclasses.dataclass(frozen=True)
class BeamSettings:
  """Beam args for every Beam component (see `beam_presets`).

  Attributes:
    preset: a `beam_presets.PRESETS` name.
    options: the preset's options (Beam option names, string values).
    extra_args: further `--flag=value` args.
  """
  preset: str = "local"
  options: Mapping[str, str] = dataclasses.field(default_factory=dict)
  extra_args: Tuple[str, ...] = ()

  def __post_init__(self):
    _check("beam.preset", self.preset, str)
    if not isinstance(self.options, Mapping):
      raise ValueError(f"beam.options must be an object. Received: {self.options!r}")
    for name, value in self.options.items():
      _check(f"beam.options.{name}", value, str)
    if isinstance(self.extra_args, str) or not isinstance(self.extra_args, (list, tuple)):
      raise ValueError(f"beam.extra_args must be a list of strings. Received: {self.extra_args!r}")

  def args(self, image: str) -> Tuple[str, ...]:
    """The args, with "{image}" in option values replaced by `image`."""
    options = {k: v.replace(IMAGE_PLACEHOLDER, image) for k, v in self.options.items()}
    return beam_presets.beam_args(self.preset, options, tuple(self.extra_args))


@dataclasses.dataclass(frozen=True)
class KubeflowSettings:
  """What `duia compile --kubeflow` uses.

  Attributes:
    image: the container image every step runs (this project installed).
    output: the PipelineJob JSON file to write.
  """
  image: str = DEFAULT_IMAGE
  output: str = DEFAULT_KUBEFLOW_OUTPUT

  def __post_init__(self):
    _check("kubeflow.image", self.image, str)
    _check("kubeflow.output", self.output, str)


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
  """Where and how a pipeline runs (see the module doc for the JSON form).

  Attributes:
    root: output root: pipeline_root, serving and the SQLite file go under it.
    data_root: folder/URI of the raw logs; required to build a pipeline.
    mapping: packaged mapping name (generated, movielens-100k) or a .json path.
    pipeline_root: TFX pipeline root instead of <root>/pipeline_root.
    serving_root: push destination parent instead of <root>/serving.
    pipeline_name: name in ML Metadata and on Kubeflow ([a-z0-9-]).
    enable_cache: reuse unchanged component outputs across runs.
    training: training preset and overrides.
    blessing: the Evaluator's thresholds and eval sample.
    beam: Beam preset, options and extra args.
    metadata: ML Metadata store of local runs (SQLite or MySQL).
    distribution: tf.distribute strategy of the Trainer.
    validation: curated schema (path or URI), drift thresholds, minimum
      example ratio and tolerated anomalies (`duia.validation.policy`).
    kubeflow: image and output file of the Kubeflow compile.
  """
  root: str = "runs/local"
  data_root: Optional[str] = None
  mapping: str = "generated"
  pipeline_root: Optional[str] = None
  serving_root: Optional[str] = None
  pipeline_name: str = "duia"
  enable_cache: bool = False
  training: TrainingSettings = TrainingSettings()
  blessing: configs.BlessingConfig = configs.BlessingConfig()
  beam: BeamSettings = BeamSettings()
  metadata: metadata_config.MetadataConfig = metadata_config.SqliteMetadata()
  distribution: str = "none"
  validation: validation_policy.ValidationConfig = validation_policy.ValidationConfig()
  kubeflow: KubeflowSettings = KubeflowSettings()

  def __post_init__(self):
    for name in ("root", "mapping", "pipeline_name"):
      _check(name, getattr(self, name), str)
    for name in ("data_root", "pipeline_root", "serving_root"):
      _check(name, getattr(self, name), str, optional=True)
    _check("enable_cache", self.enable_cache, bool)
    if not _PIPELINE_NAME.fullmatch(self.pipeline_name):
      raise ValueError("pipeline_name must match [a-z0-9][a-z0-9-]{0,127} (Kubeflow's rule). "
                       f"Received: {self.pipeline_name!r}")
    _check("distribution", self.distribution, str)
    distribution_lib.check_name(self.distribution)
    # Build what can be built without the data, so a bad value fails at load.
    self.beam.args(self.kubeflow.image)
    self.training.build(self.mapping)

  def mapping_path(self) -> str:
    if self.mapping.endswith(".json"):
      return uris.resolve(self.mapping)
    return configs.packaged_mapping(self.mapping)

  def to_pipeline_config(self) -> configs.PipelineConfig:
    """The pipeline config; local paths made absolute, URIs kept as given.

    Raises:
      ValueError: data_root is not set, or a value is invalid.
    """
    if self.data_root is None:
      raise ValueError("data_root is required: set it in the runtime config or pass --data-root")
    optional_root = lambda path: uris.resolve(path) if path else None  # noqa: E731
    metadata = self.metadata
    if isinstance(metadata, metadata_config.SqliteMetadata) and metadata.path:
      metadata = metadata_config.SqliteMetadata(path=uris.resolve(metadata.path))
    return configs.PipelineConfig(
        root=uris.resolve(self.root), data_root=uris.resolve(self.data_root),
        mapping_path=self.mapping_path(), training=self.training.build(self.mapping),
        pipeline_name=self.pipeline_name, blessing=self.blessing,
        beam_pipeline_args=self.beam.args(self.kubeflow.image),
        enable_cache=self.enable_cache,
        pipeline_root_override=optional_root(self.pipeline_root),
        serving_root_override=optional_root(self.serving_root),
        metadata=metadata, distribution=self.distribution,
        validation=dataclasses.replace(
            self.validation, schema=uris.resolve(self.validation.schema)))


def _blessing_from_dict(raw: Any) -> configs.BlessingConfig:
  kwargs = _fields_of(configs.BlessingConfig, raw, "blessing")
  if "task" in kwargs:
    _check("blessing.task", kwargs["task"], str)
  for name in ("auc_floor", "max_auc_regression"):
    if name in kwargs and (isinstance(kwargs[name], bool)
                           or not isinstance(kwargs[name], (int, float))):
      raise ValueError(f"blessing.{name} must be a number. Received: {kwargs[name]!r}")
  return configs.BlessingConfig(**kwargs)


def _validation_from_dict(raw: Any) -> validation_policy.ValidationConfig:
  kwargs = _fields_of(validation_policy.ValidationConfig, raw, "validation")
  if isinstance(kwargs.get("tolerate"), list):
    kwargs["tolerate"] = tuple(kwargs["tolerate"])
  return validation_policy.ValidationConfig(**kwargs)


def _beam_from_dict(raw: Any) -> BeamSettings:
  kwargs = _fields_of(BeamSettings, raw, "beam")
  options = kwargs.get("options", {})
  if isinstance(options, Mapping):
    # JSON numbers are fine for counts and sizes; Beam gets them as strings.
    kwargs["options"] = {k: str(v) if isinstance(v, int) and not isinstance(v, bool) else v
                         for k, v in options.items()}
  if isinstance(kwargs.get("extra_args"), list):
    kwargs["extra_args"] = tuple(kwargs["extra_args"])
    for arg in kwargs["extra_args"]:
      _check("beam.extra_args[]", arg, str)
  return BeamSettings(**kwargs)


def from_dict(raw: Mapping[str, Any]) -> RuntimeConfig:
  """A runtime config from its JSON form (see the module doc).

  Raises:
    ValueError: an unknown key or a bad value; the message names the key.
  """
  kwargs = _fields_of(RuntimeConfig, raw, "")
  sections = {
      "training": lambda r: TrainingSettings(**_fields_of(TrainingSettings, r, "training")),
      "blessing": _blessing_from_dict,
      "beam": _beam_from_dict,
      "metadata": metadata_config.from_dict,
      "validation": _validation_from_dict,
      "kubeflow": lambda r: KubeflowSettings(**_fields_of(KubeflowSettings, r, "kubeflow")),
  }
  for name, parse in sections.items():
    if name in kwargs:
      kwargs[name] = parse(kwargs[name])
  return RuntimeConfig(**kwargs)


def load(path: str) -> RuntimeConfig:
  """Reads a runtime config JSON file.

  Raises:
    ValueError: the file is not JSON, or `from_dict` rejects it; the message
      names the file.
  """
  with open(path, encoding="utf-8") as f:
    text = f.read()
  try:
    raw = json.loads(text)
  except ValueError as e:
    raise ValueError(f"Runtime config {path} is not valid JSON: {e}") from e
  try:
    return from_dict(raw)
  except ValueError as e:
    raise ValueError(f"Runtime config {path}: {e}") from e
