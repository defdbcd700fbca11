"""Beam presets: the args of each preset, as Beam itself parses them, and clear errors."""

from apache_beam.options import pipeline_options as beam_options
import pytest

from duia.pipeline import beam_presets
from duia.pipeline import configs

DATAFLOW = {"project": "my-project", "region": "europe-west1",
            "temp_location": "gs://bucket/tmp"}


def _parsed(args):
  return beam_options.PipelineOptions(list(args))


def _assert_beam_knows_every_flag(args):
  known = set(beam_options.PipelineOptions([]).get_all_options())
  for arg in args:
    name = arg[2:].split("=", 1)[0]
    assert name in known, f"Beam has no option --{name}"


def test_local_is_the_embedded_default():
  assert beam_presets.beam_args("local") == configs.LOCAL_BEAM_ARGS == (
      "--runner=FnApiRunner", "--direct_num_workers=1")


def test_direct_multiprocessing_defaults_to_one_worker_per_core():
  args = beam_presets.beam_args("direct-multiprocessing")
  assert args == ("--runner=FnApiRunner", "--direct_running_mode=multi_processing",
                  "--direct_num_workers=0")
  direct = _parsed(args).view_as(beam_options.DirectOptions)
  assert direct.direct_running_mode == "multi_processing"
  assert direct.direct_num_workers == 0
  args = beam_presets.beam_args("direct-multiprocessing", {"direct_num_workers": "4"})
  assert _parsed(args).view_as(beam_options.DirectOptions).direct_num_workers == 4


def test_dataflow_args_parse_into_beams_options():
  args = beam_presets.beam_args("dataflow", dict(
      DATAFLOW, machine_type="n1-standard-4", max_num_workers="10",
      service_account_email="sa@my-project.iam.gserviceaccount.com",
      sdk_container_image="europe-docker.pkg.dev/p/duia/duia-ranking:0.1.0"))
  assert args[0] == "--runner=DataflowRunner"
  _assert_beam_knows_every_flag(args)
  options = _parsed(args)
  gcp = options.view_as(beam_options.GoogleCloudOptions)
  assert (gcp.project, gcp.region, gcp.temp_location) == (
      "my-project", "europe-west1", "gs://bucket/tmp")
  assert gcp.service_account_email == "sa@my-project.iam.gserviceaccount.com"
  worker = options.view_as(beam_options.WorkerOptions)
  assert worker.machine_type == "n1-standard-4"
  assert worker.max_num_workers == 10
  assert worker.sdk_container_image == "europe-docker.pkg.dev/p/duia/duia-ranking:0.1.0"
  assert options.view_as(beam_options.StandardOptions).runner == "DataflowRunner"


def test_flink_args_parse_into_beams_options():
  args = beam_presets.beam_args("flink", {
      "flink_master": "flink-jobmanager:8081", "environment_type": "EXTERNAL",
      "environment_config": "localhost:50000", "parallelism": "8"})
  assert args[0] == "--runner=FlinkRunner"
  _assert_beam_knows_every_flag(args)
  options = _parsed(args)
  assert options.view_as(beam_options.FlinkRunnerOptions).flink_master == "flink-jobmanager:8081"
  assert options.view_as(beam_options.FlinkRunnerOptions).parallelism == 8
  portable = options.view_as(beam_options.PortableOptions)
  assert (portable.environment_type, portable.environment_config) == (
      "EXTERNAL", "localhost:50000")


@pytest.mark.parametrize("endpoint", [{"spark_master_url": "spark://master:7077"},
                                      {"job_endpoint": "spark-job-server:8099"}])
def test_spark_takes_a_master_url_or_a_job_endpoint(endpoint):
  args = beam_presets.beam_args("spark", dict(endpoint, environment_type="LOOPBACK"))
  assert args[0] == "--runner=SparkRunner"
  _assert_beam_knows_every_flag(args)
  options = _parsed(args)
  if "job_endpoint" in endpoint:
    assert options.view_as(beam_options.PortableOptions).job_endpoint == "spark-job-server:8099"
  else:
    assert options.view_as(beam_options.SparkRunnerOptions).spark_master_url == (
        "spark://master:7077")


@pytest.mark.parametrize("preset,options,missing", [
    ("dataflow", {"project": "p"}, "['region', 'temp_location']"),
    ("dataflow", {}, "['project', 'region', 'temp_location']"),
    ("flink", {"environment_type": "LOOPBACK"}, "['flink_master']"),
    ("spark", {"job_endpoint": "h:8099"}, "['environment_type']"),
])
def test_missing_required_options_are_named(preset, options, missing):
  with pytest.raises(ValueError, match=f"preset '{preset}' requires option\\(s\\) "
                                       + missing.replace("[", "\\[").replace("]", "\\]")):
    beam_presets.beam_args(preset, options)


@pytest.mark.parametrize("options", [
    {"environment_type": "LOOPBACK"},
    {"environment_type": "LOOPBACK", "spark_master_url": "spark://m:7077",
     "job_endpoint": "h:8099"},
])
def test_spark_needs_exactly_one_endpoint(options):
  with pytest.raises(ValueError, match=r"exactly one of \['spark_master_url', 'job_endpoint'\]"):
    beam_presets.beam_args("spark", options)


def test_docker_harness_needs_its_image():
  with pytest.raises(ValueError, match="environment_type=DOCKER needs environment_config"):
    beam_presets.beam_args("flink", {"flink_master": "m:8081", "environment_type": "DOCKER"})
  with pytest.raises(ValueError, match=r"environment_type must be one of .*Received: 'VM'"):
    beam_presets.beam_args("flink", {"flink_master": "m:8081", "environment_type": "VM"})


def test_unknown_preset_and_option_are_named():
  with pytest.raises(ValueError, match=r"Beam preset must be one of \('local', "
                                       r"'direct-multiprocessing', 'dataflow', 'flink', "
                                       r"'spark'\)\. Received: 'prism'"):
    beam_presets.beam_args("prism")
  with pytest.raises(ValueError,
                     match=r"preset 'local' has no option\(s\) \['direct_num_workers'\]"):
    beam_presets.beam_args("local", {"direct_num_workers": "2"})
  with pytest.raises(ValueError, match=r"preset 'dataflow' has no option\(s\) \['zone'\]"):
    beam_presets.beam_args("dataflow", dict(DATAFLOW, zone="europe-west1-b"))
  with pytest.raises(ValueError, match="Beam option 'max_num_workers' must be a non-empty string"):
    beam_presets.beam_args("dataflow", dict(DATAFLOW, max_num_workers=10))


def test_extra_args_are_appended_but_may_not_repeat_a_preset_flag():
  args = beam_presets.beam_args("dataflow", DATAFLOW,
                                extra=["--experiments=use_runner_v2", "--save_main_session"])
  assert args[-2:] == ("--experiments=use_runner_v2", "--save_main_session")
  with pytest.raises(ValueError, match="'--runner=DirectRunner' repeats a flag of preset 'local'"):
    beam_presets.beam_args("local", extra=["--runner=DirectRunner"])
  with pytest.raises(ValueError, match="repeats a flag of preset 'dataflow'"):
    beam_presets.beam_args("dataflow", DATAFLOW, extra=["--project=other"])
  with pytest.raises(ValueError, match="must be --flag\\[=value\\] strings. Received: 'runner'"):
    beam_presets.beam_args("local", extra=["runner"])


def test_every_preset_lists_its_docs_and_only_options_beam_knows():
  known = set(beam_options.PipelineOptions([]).get_all_options())
  for name, preset in beam_presets.PRESETS.items():
    assert preset.docs.startswith("https://"), name
    assert set(preset.options) <= known, (name, set(preset.options) - known)
