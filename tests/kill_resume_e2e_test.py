"""A pipeline process killed (SIGKILL) during the Trainer: re-running completes
from the cached upstream outputs and pushes a valid model.

The pipeline runs in a child process (this file run as a script) so that the
test can kill it the way an OOM killer or a preempted node would.
"""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(work: str):
  from duia.models import config as model_config  # pylint: disable=g-import-not-at-top
  from duia.pipeline import configs  # pylint: disable=g-import-not-at-top
  return configs.PipelineConfig(
      root=os.path.join(work, "run"), data_root=os.path.join(work, "data"),
      mapping_path=configs.packaged_mapping("generated"),
      training=model_config.preset("tiny", {"train_steps": 400}),
      blessing=configs.BlessingConfig(auc_floor=0.5), enable_cache=True)


def _run_pipeline(work: str) -> None:
  from duia.pipeline import local_runner  # pylint: disable=g-import-not-at-top
  local_runner.run(_config(work))


def _wait_for(predicate, timeout_s: float, what: str) -> None:
  deadline = time.time() + timeout_s
  while time.time() < deadline:
    if predicate():
      return
    time.sleep(0.5)
  raise AssertionError(f"Timed out after {timeout_s} s waiting for {what}")


def test_a_pipeline_killed_in_the_trainer_resumes_from_the_cache(tmp_path):
  from duia import demo_requests  # pylint: disable=g-import-not-at-top
  from duia.data import generator  # pylint: disable=g-import-not-at-top
  from duia.pipeline import local_runner  # pylint: disable=g-import-not-at-top
  from duia.pipeline import report  # pylint: disable=g-import-not-at-top
  from duia.serving import model_loader  # pylint: disable=g-import-not-at-top
  work = str(tmp_path)
  generator.generate(os.path.join(work, "data"), generator.GeneratorConfig(
      num_users=400, num_items=600, num_exposures=6000, seed=3))
  config = _config(work)
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
  log = open(os.path.join(work, "child.log"), "w")
  child = subprocess.Popen([sys.executable, os.path.abspath(__file__), work], env=env, cwd=REPO,
                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
  try:
    # The Trainer's output folders appear when its execution starts; building
    # the model and 400 steps take longer than the 5 s waited here.
    trainer_dir = os.path.join(config.pipeline_root, "Trainer")
    _wait_for(lambda: os.path.isdir(trainer_dir) or child.poll() is not None, 900,
              "the Trainer to start")
    time.sleep(5)
    assert child.poll() is None, open(log.name).read()[-3000:]
    assert not os.path.isdir(os.path.join(config.pipeline_root, "Evaluator"))
    os.killpg(child.pid, signal.SIGKILL)
    assert child.wait(60) == -signal.SIGKILL
  finally:
    if child.poll() is None:
      os.killpg(child.pid, signal.SIGKILL)
    log.close()
  # Killed inside the Trainer: nothing evaluated, nothing pushed.
  assert not os.path.isdir(os.path.join(config.pipeline_root, "Evaluator"))
  assert not glob.glob(os.path.join(config.serving_model_dir, "*", "saved_model.pb"))
  examples = report.latest_output_uri(config.metadata_path, "RawLogExampleGen", "examples")
  graph = report.latest_output_uri(config.metadata_path, "Transform", "transform_graph")

  local_runner.run(config)

  # The upstream outputs of the killed run were reused, not recomputed.
  assert report.latest_output_uri(config.metadata_path, "RawLogExampleGen",
                                  "examples") == examples
  assert report.latest_output_uri(config.metadata_path, "Transform",
                                  "transform_graph") == graph
  # The pushed model is complete and answers.
  version, path = model_loader.latest_version(config.serving_model_dir)
  assert os.path.exists(os.path.join(path, "saved_model.pb"))
  loaded = model_loader.load_version(config.serving_model_dir, version, config.model_name)
  serialized = demo_requests.read_serialized(os.path.join(examples, "Split-eval", "*.gz"), 16)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from duia.models import features  # pylint: disable=g-import-not-at-top
  scores = loaded.signatures[features.SERVING_EXAMPLES_SIGNATURE].function(
      examples=tf.constant(serialized))[features.FUSED_SCORE].numpy()
  assert scores.shape == (16,) and np.all(np.isfinite(scores))


if __name__ == "__main__":
  _run_pipeline(sys.argv[1])
