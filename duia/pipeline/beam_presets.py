"""Named `beam_pipeline_args` presets: one pipeline, any Beam runner.

Every Beam component (ExampleGen, StatisticsGen, Transform, Evaluator, ...)
gets the same args. A preset fixes the runner flags; its options are Beam's own
pipeline options, under Beam's own names, so `beam_args("dataflow",
{"project": "p", "region": "europe-west1", "temp_location": "gs://b/tmp"})`
gives `--runner=DataflowRunner --project=p --region=europe-west1
--temp_location=gs://b/tmp`.

    local                   FnApiRunner in memory, one worker (the default)
    direct-multiprocessing  FnApiRunner with N worker processes on this machine
    dataflow                Google Cloud Dataflow
    flink                   Apache Flink (job server or uber jar)
    spark                   Apache Spark (job server or portable job endpoint)

Why FnApiRunner rather than DirectRunner locally: Beam 2.74's DirectRunner
first tries to download the Prism runner binary and only falls back after that
fails (offline: a network timeout per pipeline). FnApiRunner is what the
DirectRunner falls back to, and it honours `--direct_running_mode` and
`--direct_num_workers` itself (checked here: with `multi_processing` the DoFns
ran in 2 worker processes, with no Prism attempt).
"""

import dataclasses
from typing import Dict, Mapping, Optional, Sequence, Tuple


@dataclasses.dataclass(frozen=True)
class Preset:
  """A runner and the Beam options it takes.

  Attributes:
    runner_args: flags every use of the preset gets.
    required: options that must be given.
    optional: options that may be given, with their default (None: left out).
    one_of: groups of options of which exactly one must be given.
    docs: the Beam documentation the preset follows.
  """
  runner_args: Tuple[str, ...]
  required: Tuple[str, ...] = ()
  optional: Mapping[str, Optional[str]] = dataclasses.field(default_factory=dict)
  one_of: Tuple[Tuple[str, ...], ...] = ()
  docs: str = ""

  @property
  def options(self) -> Tuple[str, ...]:
    """Every option the preset accepts, in the order the args are emitted."""
    grouped = tuple(name for group in self.one_of for name in group)
    return self.required + grouped + tuple(n for n in self.optional if n not in grouped)


# SDK harness options of the portable runners (Flink, Spark): where the Python
# workers run. DOCKER starts `environment_config` (an image with this project
# installed, e.g. the pipeline image) on every worker node; EXTERNAL points at
# an already running worker pool (host:port); LOOPBACK runs them in the
# submitting process (local testing only). environment_type is required by
# both presets: Beam's default, DOCKER with Beam's stock SDK image, has neither
# TFX nor this project. https://beam.apache.org/documentation/runtime/sdk-harness-config/
_HARNESS = {"environment_type": None, "environment_config": None}

PRESETS: Dict[str, Preset] = {
    "local": Preset(
        # Exactly the embedded default (configs.LOCAL_BEAM_ARGS): in-memory,
        # one worker, no Prism download attempt.
        runner_args=("--runner=FnApiRunner", "--direct_num_workers=1"),
        docs="https://beam.apache.org/documentation/runners/direct/"),
    "direct-multiprocessing": Preset(
        # The Direct runner's parallel mode: each worker a separate process.
        # direct_num_workers 0 means one per core (FnApiRunner reads
        # multiprocessing.cpu_count()). On 2 shared cores it was slower than
        # in-memory (stack NOTES point 5); it pays off on bigger machines.
        runner_args=("--runner=FnApiRunner", "--direct_running_mode=multi_processing"),
        optional={"direct_num_workers": "0"},
        docs="https://beam.apache.org/documentation/runners/direct/"
             "#parallel-execution"),
    "dataflow": Preset(
        # Workers need this project installed: pass the pipeline image as
        # sdk_container_image (it keeps the TFX image's Beam boot entrypoint).
        runner_args=("--runner=DataflowRunner",),
        required=("project", "region", "temp_location"),
        optional={"staging_location": None, "job_name": None, "machine_type": None,
                  "num_workers": None, "max_num_workers": None,
                  "autoscaling_algorithm": None, "disk_size_gb": None,
                  "service_account_email": None, "network": None, "subnetwork": None,
                  "sdk_container_image": None, "experiments": None},
        docs="https://cloud.google.com/dataflow/docs/reference/pipeline-options, "
             "https://cloud.google.com/dataflow/docs/guides/using-custom-containers"),
    "flink": Preset(
        # flink_master http://host:8081 submits through a job server Beam starts
        # (or an uber jar with flink_submit_uber_jar).
        runner_args=("--runner=FlinkRunner",),
        required=("flink_master", "environment_type"),
        optional=dict(_HARNESS, parallelism=None, max_parallelism=None,
                      flink_version=None),
        docs="https://beam.apache.org/documentation/runners/flink/"),
    "spark": Preset(
        # Either spark_master_url (spark://host:7077: Beam starts the Spark job
        # server) or job_endpoint (host:8099: a Spark job server already running).
        runner_args=("--runner=SparkRunner",),
        required=("environment_type",),
        one_of=(("spark_master_url", "job_endpoint"),),
        optional=dict(_HARNESS, spark_version=None, spark_rest_url=None),
        docs="https://beam.apache.org/documentation/runners/spark/"),
}

# Harness types that need environment_config (LOOPBACK does not).
_NEEDS_ENVIRONMENT_CONFIG = ("DOCKER", "EXTERNAL", "PROCESS")
_ENVIRONMENT_TYPES = _NEEDS_ENVIRONMENT_CONFIG + ("LOOPBACK",)


def _check_harness(preset: str, given: Mapping[str, str]) -> None:
  environment = given.get("environment_type")
  if environment is None:
    return
  if environment not in _ENVIRONMENT_TYPES:
    raise ValueError(f"Beam preset {preset!r}: environment_type must be one of "
                     f"{_ENVIRONMENT_TYPES}. Received: {environment!r}")
  if environment in _NEEDS_ENVIRONMENT_CONFIG and not given.get("environment_config"):
    raise ValueError(f"Beam preset {preset!r}: environment_type={environment} needs "
                     "environment_config (the SDK image for DOCKER, host:port for "
                     "EXTERNAL, the boot command for PROCESS)")


def beam_args(preset: str, options: Mapping[str, str] = None,
              extra: Sequence[str] = ()) -> Tuple[str, ...]:
  """`beam_pipeline_args` of a named preset.

  Args:
    preset: a name in `PRESETS`.
    options: Beam pipeline options the preset accepts (Beam's names, without
      dashes), e.g. {"project": "my-project"}; values are strings.
    extra: further `--flag=value` args, appended as given, for options no
      preset lists. They may not repeat a flag the preset already sets.

  Returns:
    The args: the preset's runner flags, then its options in a fixed order,
    then `extra`.

  Raises:
    ValueError: unknown preset or option, a required option missing, or an
      `extra` arg that is not a flag or repeats one of the preset's flags.
  """
  if preset not in PRESETS:
    raise ValueError(f"Beam preset must be one of {tuple(PRESETS)}. Received: {preset!r}")
  spec = PRESETS[preset]
  given = dict(options or {})
  unknown = sorted(set(given) - set(spec.options))
  if unknown:
    raise ValueError(f"Beam preset {preset!r} has no option(s) {unknown}; "
                     f"it takes {list(spec.options)} (add others as extra args)")
  for name, value in given.items():
    if not isinstance(value, str) or not value:
      raise ValueError(f"Beam option {name!r} must be a non-empty string. Received: {value!r}")
  missing = [name for name in spec.required if name not in given]
  if missing:
    raise ValueError(f"Beam preset {preset!r} requires option(s) {missing}")
  for group in spec.one_of:
    chosen = [name for name in group if name in given]
    if len(chosen) != 1:
      raise ValueError(f"Beam preset {preset!r} requires exactly one of {list(group)}. "
                       f"Received: {chosen}")
  _check_harness(preset, given)
  resolved = {name: given.get(name, spec.optional.get(name)) for name in spec.options}
  args = spec.runner_args + tuple(f"--{name}={value}" for name, value in resolved.items()
                                  if value is not None)
  taken = {arg.split("=", 1)[0] for arg in args}
  for arg in extra:
    if not isinstance(arg, str) or not arg.startswith("--"):
      raise ValueError(f"extra Beam args must be --flag[=value] strings. Received: {arg!r}")
    if arg.split("=", 1)[0] in taken:
      raise ValueError(f"extra Beam arg {arg!r} repeats a flag of preset {preset!r}; "
                       "set it through the preset's options instead")
  return args + tuple(extra)
