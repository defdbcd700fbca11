"""The `duia` command: generate, run, report, compile, serve, predict, demo, bench.

    duia generate --out data/generated --exposures 20000
    duia run --data generated --data-root data/generated --root runs/local
    duia run --config deploy/pipeline/local.json
    duia compile --kubeflow pipeline.json --config deploy/pipeline/kubeflow-dataflow.json
    duia serve --model_base_path runs/local/serving/duia
    duia predict --target 127.0.0.1:8500 --examples runs/local/...
    duia demo --root runs/local          # what `make run` does
    duia bench quality --data movielens-100k   # the papers' ablation, N1 sweep, plots
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # hide CUDA-plugin noise on CPU hosts
from duia import keras_env  # noqa: E402,F401  pylint: disable=g-import-not-at-top,unused-import


def main(argv=None) -> None:
  """The `duia` console script (setup.py's entry point)."""
  from duia.cli import app  # pylint: disable=g-import-not-at-top
  app.main(argv)
