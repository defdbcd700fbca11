"""Compiles the pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines.

The same `create_pipeline(config)` the local runner runs, compiled with TFX's
KubeflowV2DagRunner. The output file's extension picks the format:

  .json         a PipelineJob (its `pipelineSpec` field is a KFP PipelineSpec,
                `runtimeConfig.gcsOutputDirectory` the pipeline root), what
                Vertex AI's `PipelineJob(template_path=...)` takes;
  .yaml / .yml  the PipelineSpec alone, what kfp 2.5's
                `Client.create_run_from_pipeline_package` takes (it refuses
                .json); pass it the pipeline root as `pipeline_root=`.

Every step runs `python -m
tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor` in `image`.

Transform and Trainer name their code by dotted path (`preprocessing_fn=`,
`run_fn=`), not by module file, so nothing is packaged at compile time: the
image must have this project installed (the repository's Dockerfile does).
ML Metadata is the cluster's own; the config's metadata setting is unused here.

The output is deterministic, so nothing needs handling here: the runner
writes JSON and YAML with sorted keys, and TFX 1.16 puts no time in the spec
(its `_get_current_time`, a leftover from job names with a timestamp, is never
called); the only random part, a component-name suffix, comes with an exit
handler, and none is set. The labels record the TFX and Python versions of the
compiling environment.
"""

import dataclasses
import os

from tfx import v1 as tfx

from duia.pipeline import configs
from duia.pipeline import pipeline as pipeline_lib
from duia.validation import policy

# Where the packaged curated schema is inside the image: the Dockerfile copies
# the repository to /pipeline. ImportSchemaGen reads its file in the step's
# container, where this machine's path to the package means nothing.
IMAGE_CURATED_SCHEMA = "/pipeline/duia/validation/schema.pbtxt"

OUTPUT_FORMATS = (".json", ".yaml", ".yml")


def _runner_classes():
  experimental = tfx.orchestration.experimental
  # TFX exports the v2 runner only when kfp imports (the ImportError is swallowed).
  if not hasattr(experimental, "KubeflowV2DagRunner"):
    raise ImportError("tfx.orchestration.experimental.KubeflowV2DagRunner is missing because "
                      "kfp is not installed; install the pinned stack: "
                      "pip install -c constraints.txt -e .")
  return experimental.KubeflowV2DagRunner, experimental.KubeflowV2DagRunnerConfig


def compile_pipeline(config: configs.PipelineConfig, image: str, output_path: str) -> str:
  """Writes the PipelineJob JSON of `config`'s pipeline.

  The packaged curated schema is read from the image (IMAGE_CURATED_SCHEMA);
  another schema (`validation.schema`) must be a URI every step can reach.

  Args:
    config: the pipeline config; its roots should be URIs every step can
      reach (gs://, s3://, a shared volume).
    image: container image of every step, with this project installed.
    output_path: the file to write (local path or URI), .json or .yaml (see
      the module doc); its folder is created if missing.

  Returns:
    `output_path`.
  """
  if not image:
    raise ValueError(f"image must name a container image. Received: {image!r}")
  if not output_path.endswith(OUTPUT_FORMATS):
    raise ValueError(f"The Kubeflow output must end with one of {OUTPUT_FORMATS}. "
                     f"Received: {output_path!r}")
  runner_class, runner_config_class = _runner_classes()
  runner = runner_class(
      config=runner_config_class(default_image=image),
      output_dir=os.path.dirname(output_path) or os.getcwd(),
      output_filename=os.path.basename(output_path))
  if config.validation.schema == policy.CURATED_SCHEMA:
    config = dataclasses.replace(config, validation=dataclasses.replace(
        config.validation, schema=IMAGE_CURATED_SCHEMA))
  runner.run(pipeline_lib.create_pipeline(config))
  return output_path
