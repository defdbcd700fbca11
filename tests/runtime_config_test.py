"""Runtime config: shipped examples load, defaults are `duia run`'s, URIs stay URIs."""

import dataclasses
import glob
import json
import os

import pytest

from duia import cli
from duia.cli import app as cli_app
from duia.cli import pipeline_cmds
from duia.models import config as model_config
from duia.pipeline import configs
from duia.pipeline import metadata_config
from duia.pipeline import runtime_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(glob.glob(os.path.join(REPO_ROOT, "deploy", "pipeline", "*.json")))


def _write(tmp_path, raw, name="runtime.json"):
  path = tmp_path / name
  path.write_text(json.dumps(raw))
  return str(path)


def _cli_config(argv):
  return pipeline_cmds.pipeline_config(cli_app.build_parser().parse_args(argv))


def test_the_examples_are_shipped():
  names = {os.path.basename(path) for path in EXAMPLES}
  assert {"local.json", "local-multiprocessing.json", "kubeflow-dataflow.json", "flink.json",
          "spark.json"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_every_shipped_example_loads_and_builds_a_pipeline_config(path):
  runtime = runtime_config.load(path)
  config = runtime.to_pipeline_config()
  assert config.beam_pipeline_args[0].startswith("--runner=")
  assert config.mapping().sources  # the mapping it names exists and parses
  assert config.distribution == runtime.distribution


def test_defaults_are_those_of_duia_run(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  expected = configs.PipelineConfig(
      root=str(tmp_path / "runs" / "local"), data_root=str(tmp_path / "logs"),
      mapping_path=configs.packaged_mapping("generated"), training=model_config.preset("small"))
  assert runtime_config.RuntimeConfig(data_root="logs").to_pipeline_config() == expected
  assert _cli_config(["run", "--data", "generated", "--data-root", "logs"]) == expected
  assert expected.beam_pipeline_args == configs.LOCAL_BEAM_ARGS
  assert expected.metadata_path == str(tmp_path / "runs" / "local" / "metadata.sqlite")
  assert expected.pipeline_root == str(tmp_path / "runs" / "local" / "pipeline_root")
  assert expected.serving_model_dir == str(tmp_path / "runs" / "local" / "serving" / "duia")
  assert expected.distribution == "none"


def test_local_example_equals_the_documented_command(monkeypatch):
  monkeypatch.chdir(REPO_ROOT)
  from_file = runtime_config.load(os.path.join("deploy", "pipeline", "local.json"))
  assert from_file.to_pipeline_config() == _cli_config(
      ["run", "--data", "generated", "--data-root", "data/generated", "--root", "runs/local",
       "--preset", "small"])


def test_movielens_mapping_picks_the_movielens_preset_as_before():
  config = runtime_config.RuntimeConfig(mapping="movielens-100k",
                                        data_root="/data/ml-100k").to_pipeline_config()
  assert config.training == model_config.preset("movielens")


def test_uris_are_kept_and_local_paths_made_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  config = runtime_config.from_dict({
      "root": "gs://bucket/duia", "data_root": "s3://logs/raw",
      "pipeline_root": "hdfs://namenode:8020/tfx", "serving_root": "gs://models/serving",
      "metadata": {"type": "sqlite", "path": "mlmd/metadata.sqlite"},
  }).to_pipeline_config()
  assert config.root == "gs://bucket/duia"
  assert config.data_root == "s3://logs/raw"
  assert config.pipeline_root == "hdfs://namenode:8020/tfx"
  assert config.serving_model_dir == "gs://models/serving/duia"
  assert config.metadata_path == str(tmp_path / "mlmd" / "metadata.sqlite")
  relative = runtime_config.RuntimeConfig(root="out", data_root="in").to_pipeline_config()
  assert (relative.root, relative.data_root) == (str(tmp_path / "out"), str(tmp_path / "in"))


def test_cli_roots_that_are_uris_are_not_made_absolute():
  config = _cli_config(["run", "--data", "generated", "--data-root", "gs://bucket/logs",
                        "--root", "gs://bucket/run"])
  assert (config.data_root, config.root) == ("gs://bucket/logs", "gs://bucket/run")
  assert config.pipeline_root == "gs://bucket/run/pipeline_root"


def test_cli_flags_override_the_config_file(tmp_path):
  path = _write(tmp_path, {
      "root": "gs://bucket/run", "data_root": "gs://bucket/logs",
      "training": {"preset": "tiny", "overrides": {"train_steps": 5, "ple": {"num_levels": 1}}},
      "beam": {"preset": "flink", "options": {"flink_master": "m:8081",
                                              "environment_type": "LOOPBACK"}},
  })
  from_file = _cli_config(["run", "--config", path])
  assert from_file.training.train_steps == 5 and from_file.training.ple.num_levels == 1
  assert from_file.beam_pipeline_args[0] == "--runner=FlinkRunner"
  config = _cli_config(["run", "--config", path, "--root", "gs://other/run", "--set",
                        "train_steps=7", "--variant", "duia", "--beam-preset",
                        "direct-multiprocessing", "--beam-option", "direct_num_workers=2",
                        "--distribution", "mirrored", "--cache"])
  assert config.root == "gs://other/run" and config.data_root == "gs://bucket/logs"
  assert config.training.train_steps == 7  # --set wins
  assert config.training.ple.num_levels == 1  # the file's other overrides stay
  assert config.training.duia.variant == "duia"
  assert config.training.embedding_dim == model_config.preset("tiny").embedding_dim
  # A new Beam preset does not inherit the file's Flink options.
  assert config.beam_pipeline_args == ("--runner=FnApiRunner",
                                       "--direct_running_mode=multi_processing",
                                       "--direct_num_workers=2")
  assert config.distribution == "mirrored" and config.enable_cache


def test_run_needs_data_without_a_config():
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["run", "--data-root", "logs"])
  assert exit_info.value.code == 2


def test_image_placeholder_in_beam_options():
  runtime = runtime_config.from_dict({
      "data_root": "gs://b/logs",
      "beam": {"preset": "spark", "options": {"job_endpoint": "js:8099",
                                              "environment_type": "DOCKER",
                                              "environment_config": "{image}"}},
      "kubeflow": {"image": "registry.example/duia:7"}})
  assert "--environment_config=registry.example/duia:7" in (
      runtime.to_pipeline_config().beam_pipeline_args)
  assert runtime_config.RuntimeConfig().kubeflow.image == runtime_config.DEFAULT_IMAGE


@pytest.mark.parametrize("raw,message", [
    ({"roots": "x"}, "Unknown runtime config key 'roots'"),
    ({"beam": {"preset": "local", "option": {}}}, "Unknown runtime config key 'beam.option'"),
    ({"training": {"presets": "tiny"}}, "Unknown runtime config key 'training.presets'"),
    ({"kubeflow": {"tag": "1"}}, "Unknown runtime config key 'kubeflow.tag'"),
    ({"blessing": {"floor": 0.5}}, "Unknown runtime config key 'blessing.floor'"),
    ({"metadata": {"type": "mysql", "host": "h", "database": "d", "user": "u",
                   "pasword_env": "X"}}, r"Unknown metadata key\(s\) \['pasword_env'\]"),
    ({"root": 3}, "root must be a non-empty string. Received: 3"),
    ({"data_root": ""}, "data_root must be a non-empty string or null"),
    ({"enable_cache": "yes"}, "enable_cache must be a bool. Received: 'yes'"),
    ({"distribution": "tpu"}, r"distribution strategy must be one of \('none', 'mirrored', "
                              r"'multi_worker_mirrored'\). Received: 'tpu'"),
    ({"pipeline_name": "DUIA_1"}, r"pipeline_name must match .*Received: 'DUIA_1'"),
    ({"training": {"preset": "huge"}}, r"training.preset must be one of \('small', 'tiny', "
                                       r"'movielens'\). Received: 'huge'"),
    ({"training": {"overrides": {"ple": {"levels": 2}}}}, "Unknown config key training.ple.levels"),
    ({"beam": {"preset": "dataflow"}}, r"preset 'dataflow' requires option\(s\) "),
    ({"beam": {"preset": "local", "options": {"x": True}}}, "beam.options.x must be a non-empty"),
    ({"beam": {"extra_args": "--x=1"}}, "beam.extra_args must be a list of strings"),
    ({"blessing": {"auc_floor": "high"}}, "blessing.auc_floor must be a number"),
    ({"kubeflow": {"image": ""}}, "kubeflow.image must be a non-empty string"),
    ({"mapping": "no-such-mapping"}, "No packaged mapping 'no-such-mapping'"),
    ([1, 2], "a runtime config must be an object"),
])
def test_bad_configs_are_rejected_with_the_key_named(raw, message):
  with pytest.raises(ValueError, match=message):
    runtime = runtime_config.from_dict(raw)
    runtime.to_pipeline_config() if runtime.data_root else runtime.mapping_path()


def test_data_root_is_required_to_build_a_pipeline():
  with pytest.raises(ValueError, match="data_root is required"):
    runtime_config.RuntimeConfig().to_pipeline_config()


def test_load_names_the_file(tmp_path):
  broken = tmp_path / "broken.json"
  broken.write_text("{not json")
  with pytest.raises(ValueError, match=f"Runtime config {broken} is not valid JSON"):
    runtime_config.load(str(broken))
  with pytest.raises(ValueError, match=r"runtime.json: Unknown runtime config key 'bogus'"):
    runtime_config.load(_write(tmp_path, {"bogus": 1}))


def test_cli_reports_a_bad_config_without_a_traceback(tmp_path):
  path = _write(tmp_path, {"data_root": "x", "distribution": "tpu"})
  with pytest.raises(SystemExit, match="duia: Runtime config .*distribution strategy must be"):
    _cli_config(["run", "--config", path])


def test_pipeline_config_validates_the_strategy_name():
  with pytest.raises(ValueError, match="distribution strategy must be one of"):
    configs.PipelineConfig(root="r", data_root="d", mapping_path="m", distribution="gpu")
  config = configs.PipelineConfig(root="r", data_root="d", mapping_path="m",
                                  metadata=metadata_config.SqliteMetadata("x.sqlite"))
  assert dataclasses.replace(config, distribution="mirrored").distribution == "mirrored"
