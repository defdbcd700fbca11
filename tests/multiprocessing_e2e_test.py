"""End to end with Beam's multi-processing runner: the direct-multiprocessing preset.

The shipped deploy/pipeline/local-multiprocessing.json, pointed at a few
thousand generated rows with tiny model sizes, runs the whole pipeline with
LocalDagRunner while every Beam component runs its DoFns in worker processes.
"""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from duia import demo_requests
from duia.data import generator
from duia.models import features
from duia.pipeline import configs
from duia.pipeline import local_runner
from duia.pipeline import report
from duia.pipeline import runtime_config
from duia.serving import model_loader

pytestmark = pytest.mark.e2e

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(REPO_ROOT, "deploy", "pipeline", "local-multiprocessing.json")
COMPONENTS = ("RawLogExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
              "DistributionValidator", "DataValidationGate",
              "Transform", "Trainer", "EvalSampleGen", "Evaluator", "Pusher")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """One pipeline run; returns (config, number of Beam worker processes started)."""
  from apache_beam.runners.portability import local_job_service  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("multiprocessing")
  data = str(root / "data")
  generator.generate(data, generator.GeneratorConfig(
      num_users=200, num_items=300, num_exposures=2000, seed=5))
  shipped = runtime_config.load(SHIPPED)
  runtime = dataclasses.replace(
      shipped, root=str(root / "run"), data_root=data,
      training=runtime_config.TrainingSettings(
          preset="tiny", overrides={"train_steps": 20, "eval_steps": 5}),
      # One worker process per Beam pipeline, whatever the core count: what
      # multi-processing adds (DoFns pickled into a fresh process that must
      # import this package under Keras 2) is all there, and it keeps the test
      # near 2 minutes on 2 shared cores (2 workers also passed: ~165 s setup).
      beam=dataclasses.replace(shipped.beam, options={"direct_num_workers": "1"}),
      # A floor of 0 pushes any model that trains: this test is about the runner.
      blessing=configs.BlessingConfig(auc_floor=0.0))
  config = runtime.to_pipeline_config()
  started = []
  original = local_job_service.SubprocessSdkWorker.run

  def counting_run(worker):
    started.append(worker)
    return original(worker)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(local_job_service.SubprocessSdkWorker, "run", counting_run)
    local_runner.run(config)
  return config, len(started)


def test_the_shipped_preset_runs_beam_in_worker_processes(run):
  config, workers = run
  assert "--direct_running_mode=multi_processing" in config.beam_pipeline_args
  assert "--runner=FnApiRunner" in config.beam_pipeline_args
  # Each Beam component's pipeline (ExampleGen, StatisticsGen, Transform,
  # Evaluator) starts its own worker process.
  assert workers >= 4
  names = [name for name, _ in report.component_seconds(config.metadata_source)]
  for component in COMPONENTS:
    assert component in names


def test_a_loadable_model_was_pushed(run):
  config, _ = run
  version, path = model_loader.latest_version(config.serving_model_dir)
  assert path.startswith(os.path.join(config.root, "serving", config.model_name))
  loaded = tf.saved_model.load(path)
  assert {features.SERVING_EXAMPLES_SIGNATURE, features.SERVING_RAW_SIGNATURE} <= set(
      loaded.signatures)
  eval_dir = os.path.join(
      report.latest_output_uri(config.metadata_source, "RawLogExampleGen", "examples"),
      "Split-eval")
  serialized = demo_requests.read_serialized([os.path.join(eval_dir, "*.gz")], 5)
  outputs = loaded.signatures[features.SERVING_EXAMPLES_SIGNATURE](
      examples=tf.constant(serialized))
  assert version > 0 and len(serialized) == 5
  for key in list(config.training.tasks) + [features.FUSED_SCORE]:
    scores = outputs[key].numpy()
    assert scores.shape == (5,) and np.all(np.isfinite(scores)), key
