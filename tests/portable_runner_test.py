"""The ingestion through Beam's portability stack, as Flink or Spark would run it.

A Flink or Spark cluster runs a Python pipeline through Beam's Job API (a job
server that takes the pipeline as a proto) and SDK workers in other processes
(`--environment_type=EXTERNAL`: a worker pool the runner asks for workers).
Neither job server starts here without downloading its jar, so this test
stands Beam's own Python job service in for it, with Beam's worker pool: the
pipeline is submitted by PortableRunner, translated from its proto and run by
SDK worker processes, so everything it needs must survive pickling and cross
process boundaries, as on a cluster. It must write the same examples as the
in-memory runner.
"""

import os
import socket
import subprocess
import sys
import time

import pytest

from duia.ingest import ingest_outputs
from duia.ingest import mapping as mapping_lib
from duia.pipeline import configs
from tests import ingested_examples


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _wait_for(port: int, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
  deadline = time.time() + timeout_s
  while time.time() < deadline:
    if process.poll() is not None:
      raise RuntimeError(f"{process.args} exited with {process.returncode}")
    with socket.socket() as s:
      if s.connect_ex(("localhost", port)) == 0:
        return
    time.sleep(0.2)
  raise TimeoutError(f"nothing listens on port {port} after {timeout_s} s")


@pytest.fixture(scope="module")
def portable_beam_args():
  """Beam args for PortableRunner against a local job service and worker pool."""
  job_port, pool_port = _free_port(), _free_port()
  env = dict(os.environ)
  # The pool starts each SDK worker as `python -c ...`: this interpreter's.
  env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
  processes = [
      subprocess.Popen([sys.executable, "-m",
                        "apache_beam.runners.portability.local_job_service_main",
                        "--port", str(job_port)], env=env),
      subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                        "--service_port", str(pool_port)], env=env),
  ]
  try:
    for port, process in zip((job_port, pool_port), processes):
      _wait_for(port, process)
    yield ["--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}",
           "--environment_type=EXTERNAL", f"--environment_config=localhost:{pool_port}"]
  finally:
    for process in processes:
      process.terminate()
      process.wait(timeout=30)


def _canonical(examples):
  return {split: sorted(sorted((k, str(v)) for k, v in row.items()) for row in rows)
          for split, rows in examples.items()}


@pytest.mark.e2e
def test_ingestion_on_the_portable_runner_writes_what_the_in_memory_runner_writes(
    portable_beam_args, tmp_path):
  from duia.data import generator  # pylint: disable=g-import-not-at-top
  data = str(tmp_path / "data")
  generator.generate(data, generator.GeneratorConfig(num_users=60, num_exposures=3000, seed=2))
  mapping = mapping_lib.load_mapping(configs.packaged_mapping("generated"))
  portable = ingest_outputs.run_ingestion(mapping, data, str(tmp_path / "portable"),
                                       beam_args=portable_beam_args)
  in_memory = ingest_outputs.run_ingestion(mapping, data, str(tmp_path / "in_memory"),
                                        beam_args=configs.LOCAL_BEAM_ARGS)
  assert portable == in_memory  # example counts per split, quarantine counts
  assert sum(portable["examples"].values()) == 3000
  assert _canonical(ingested_examples.read_examples(str(tmp_path / "portable"))) == (
      _canonical(ingested_examples.read_examples(str(tmp_path / "in_memory"))))
