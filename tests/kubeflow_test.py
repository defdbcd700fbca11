"""The Kubeflow V2 compile: the same pipeline as a KFP PipelineSpec, deterministic, URIs kept.

Roots are gs:// URIs and every filesystem entry point (TFX fileio,
tf.io.gfile, Beam FileSystems) refuses remote paths while compiling, so the
compile is shown not to touch them. No cluster is contacted.
"""

import json
import os
import re

from google.protobuf import json_format
from kfp import components as kfp_components
from kfp.pipeline_spec import pipeline_spec_pb2
import pytest
import tensorflow as tf

from duia import cli
from duia.models import distribution
from duia.models import warmup_export
from duia.pipeline import configs
from duia.pipeline import kubeflow_runner
from duia.pipeline import pipeline as pipeline_lib
from duia.pipeline import runtime_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "registry.example/duia/duia-ranking:test"
ROOT, DATA_ROOT = "gs://duia-test-bucket/run", "gs://duia-test-bucket/logs"
EXECUTOR_COMMAND = ["python", "-m",
                    "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
COMPONENTS = ("RawLogExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
              "DistributionValidator", "DataValidationGate", "Transform",
              "Trainer", "EvalSampleGen", "Evaluator", "Pusher")
RESOLVERS = ("validated_statistics_resolver", "latest_model_resolver",
             "latest_blessed_model_resolver")


class RemoteAccess(AssertionError):
  pass


def _refuse_remote_paths(monkeypatch) -> list:
  """Fails any read, write or listing of a path with a URI scheme; returns those seen."""
  from apache_beam.io import filesystems  # pylint: disable=g-import-not-at-top
  from tfx.dsl.io import fileio  # pylint: disable=g-import-not-at-top
  seen = []

  def guard(function):
    def guarded(path, *args, **kwargs):
      for item in (path if isinstance(path, (list, tuple)) else [path]):
        if "://" in str(item):
          seen.append(str(item))
          raise RemoteAccess(f"compile touched {item}")
      return function(path, *args, **kwargs)
    return guarded

  monkeypatch.setattr(fileio, "_get_filesystem", guard(fileio._get_filesystem))  # pylint: disable=protected-access
  for name in ("exists", "glob", "isdir", "listdir", "makedirs", "mkdir", "stat", "walk",
               "GFile", "copy", "remove", "rename", "rmtree"):
    monkeypatch.setattr(tf.io.gfile, name, guard(getattr(tf.io.gfile, name)))
  for name in ("match", "exists", "create", "open", "mkdirs", "delete"):
    monkeypatch.setattr(filesystems.FileSystems, name,
                        staticmethod(guard(getattr(filesystems.FileSystems, name))))
  return seen


@pytest.fixture
def no_remote_filesystem(monkeypatch):
  return _refuse_remote_paths(monkeypatch)


def _config():
  return runtime_config.RuntimeConfig(
      root=ROOT, data_root=DATA_ROOT, distribution="mirrored").to_pipeline_config()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
  """(path of a first compile, path of a second, the config), both with gs:// roots."""
  out = tmp_path_factory.mktemp("kubeflow")
  with pytest.MonkeyPatch.context() as patch:
    seen = _refuse_remote_paths(patch)
    config = _config()
    first = kubeflow_runner.compile_pipeline(config, IMAGE, str(out / "first" / "pipeline.json"))
    second = kubeflow_runner.compile_pipeline(_config(), IMAGE, str(out / "second.json"))
  assert seen == []
  return first, second, config


def _job(path):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _spec(path) -> pipeline_spec_pb2.PipelineSpec:
  return json_format.ParseDict(_job(path)["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())


def test_the_file_is_a_pipeline_job_whose_spec_parses(compiled):
  job = json_format.ParseDict(_job(compiled[0]), pipeline_spec_pb2.PipelineJob())
  assert job.display_name == "duia"
  spec = _spec(compiled[0])
  assert spec.pipeline_info.name == "duia"
  assert spec.schema_version == "2.0.0"
  assert spec.sdk_version == "tfx-1.16.0"


def test_spec_names_every_component_of_create_pipeline(compiled):
  ids = [node.id for node in pipeline_lib.create_pipeline(compiled[2]).components]
  assert sorted(ids) == sorted(COMPONENTS + RESOLVERS)
  tasks = set(_spec(compiled[0]).root.dag.tasks)
  for component in COMPONENTS:
    assert component in tasks
  # A resolver compiles to one task per query, named after it.
  assert tasks - set(COMPONENTS) == {
      "validated_statistics_resolver", "latest_model_resolver",
      "latest_blessed_model_resolver-model-blessing-resolver",
      "latest_blessed_model_resolver-model-resolver"}


def test_every_executor_container_runs_the_configured_image(compiled):
  executors = _job(compiled[0])["pipelineSpec"]["deploymentSpec"]["executors"]
  containers = {name: e["container"] for name, e in executors.items() if "container" in e}
  assert sorted(containers) == sorted(f"{c}_executor" for c in COMPONENTS)
  for name, container in containers.items():
    assert container["image"] == IMAGE, name
    assert container["command"] == EXECUTOR_COMMAND, name
  # The rest are resolvers, which ML Metadata queries answer without a container.
  assert all("resolver" in e for n, e in executors.items() if n not in containers)
  # Beam components carry the config's Beam args.
  assert containers["Transform_executor"]["args"][-2:] == list(configs.LOCAL_BEAM_ARGS)


def test_kfp_loads_the_spec_as_a_pipeline(compiled):
  with open(compiled[0], encoding="utf-8") as f:
    text = json.dumps(json.load(f)["pipelineSpec"])
  component = kfp_components.load_component_from_text(text)
  assert component.name == "duia"
  assert set(component.pipeline_spec.root.dag.tasks) == set(_spec(compiled[0]).root.dag.tasks)


def test_compiling_twice_gives_the_same_file(compiled):
  first, second, _ = compiled
  with open(first, "rb") as a, open(second, "rb") as b:
    assert a.read() == b.read()


def test_uri_roots_are_in_the_spec_as_given(compiled):
  job = _job(compiled[0])
  assert job["runtimeConfig"]["gcsOutputDirectory"] == f"{ROOT}/pipeline_root"
  tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
  constant = lambda task, key: (  # noqa: E731
      tasks[task]["inputs"]["parameters"][key]["runtimeValue"]["constantValue"]["stringValue"])
  assert constant("RawLogExampleGen", "input_base") == DATA_ROOT
  assert json.loads(constant("Pusher", "push_destination"))["filesystem"][
      "base_directory"] == f"{ROOT}/serving/duia"
  trainer_config = json.loads(constant("Trainer", "custom_config"))
  assert trainer_config[warmup_export.RAW_EXAMPLES_KEY] == (
      f"{ROOT}/pipeline_root/RawLogExampleGen/examples")
  # The strategy name reaches the Trainer.
  assert trainer_config[distribution.CONFIG_KEY] == "mirrored"
  # The packaged curated schema is read where the image has it (the Dockerfile
  # copies the repository to its WORKDIR).
  assert constant("ImportSchemaGen", "schema_file") == kubeflow_runner.IMAGE_CURATED_SCHEMA
  with open(os.path.join(REPO_ROOT, "Dockerfile"), encoding="utf-8") as f:
    copy_to = re.search(r"^COPY \. (\S+)$", f.read(), re.M).group(1)
  assert kubeflow_runner.IMAGE_CURATED_SCHEMA == f"{copy_to}/duia/validation/schema.pbtxt"
  assert "/work/" not in json.dumps(job) and os.getcwd() not in json.dumps(job)


def test_cli_compiles_the_shipped_dataflow_example(tmp_path, no_remote_filesystem):
  example = os.path.join(REPO_ROOT, "deploy", "pipeline", "kubeflow-dataflow.json")
  out = str(tmp_path / "dataflow.json")
  cli.main(["compile", "--config", example, "--kubeflow", out])
  assert no_remote_filesystem == []
  image = runtime_config.load(example).kubeflow.image
  executors = _job(out)["pipelineSpec"]["deploymentSpec"]["executors"]
  transform = executors["Transform_executor"]["container"]
  assert transform["image"] == image
  # Dataflow workers run the same image as the Kubeflow steps ("{image}").
  assert f"--sdk_container_image={image}" in transform["args"]
  assert "--runner=DataflowRunner" in transform["args"]


def test_the_filesystem_guard_sees_every_entry_point(no_remote_filesystem):
  """The guard above is what makes "compile touches no URI" mean something."""
  from apache_beam.io import filesystems  # pylint: disable=g-import-not-at-top
  from tfx.dsl.io import fileio  # pylint: disable=g-import-not-at-top
  with pytest.raises(RemoteAccess):
    fileio.exists("gs://duia-test-bucket/x")
  with pytest.raises(RemoteAccess):
    tf.io.gfile.glob("gs://duia-test-bucket/*")
  with pytest.raises(RemoteAccess):
    filesystems.FileSystems.match(["gs://duia-test-bucket/*"])
  assert len(no_remote_filesystem) == 3
  assert fileio.exists(REPO_ROOT)  # local paths pass through


def test_yaml_output_is_the_spec_kfp_clients_accept(compiled, tmp_path, no_remote_filesystem):
  out = str(tmp_path / "pipeline.yaml")
  kubeflow_runner.compile_pipeline(_config(), IMAGE, out)
  assert no_remote_filesystem == []
  # What kfp.Client.create_run_from_pipeline_package reads the package with
  # (kfp 2.5, private): it accepts .yaml/.zip/.tar.gz, not the .json PipelineJob.
  from kfp.client import client as kfp_client  # pylint: disable=g-import-not-at-top
  document = kfp_client._extract_pipeline_yaml(out)  # pylint: disable=protected-access
  # The same spec as the .json PipelineJob holds.
  assert document.pipeline_spec == _spec(compiled[0])
  assert kfp_components.load_component_from_file(out).name == "duia"
  with pytest.raises(ValueError, match=r"must end with one of \('.json', '.yaml', '.yml'\)"):
    kubeflow_runner.compile_pipeline(_config(), IMAGE, str(tmp_path / "pipeline.txt"))


def test_vertex_ai_builds_a_job_from_the_json(compiled):
  """Vertex AI's SDK reads the file as it would to submit it (nothing is sent)."""
  from google.auth import credentials  # pylint: disable=g-import-not-at-top
  from google.cloud import aiplatform  # pylint: disable=g-import-not-at-top
  job = aiplatform.PipelineJob(
      display_name="duia", template_path=compiled[0], project="duia-test-project",
      location="europe-west1", credentials=credentials.AnonymousCredentials())
  resource = job._gca_resource  # pylint: disable=protected-access
  assert resource.runtime_config.gcs_output_directory == f"{ROOT}/pipeline_root"
  assert set(resource.pipeline_spec["root"]["dag"]["tasks"]) == set(
      _spec(compiled[0]).root.dag.tasks)
