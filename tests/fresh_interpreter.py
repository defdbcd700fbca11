"""Runs a test file as a script in a fresh Python and reads the JSON it prints.

For checks that must configure TensorFlow before it initialises its devices
(e.g. two logical CPUs for MirroredStrategy), which a pytest process that has
already imported TensorFlow cannot do.
"""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_json(script: str, timeout_s: float) -> dict:
  """Runs `script` with the repo on PYTHONPATH; returns its last stdout line as JSON.

  Raises:
    AssertionError: with the script's stderr tail if it exits non-zero.
  """
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
  env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")])
  proc = subprocess.run([sys.executable, os.path.abspath(script)], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=timeout_s, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])
