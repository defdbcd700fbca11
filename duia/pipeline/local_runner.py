"""Runs the pipeline locally: LocalDagRunner, ML Metadata from the config.

ML Metadata is SQLite at <root>/metadata.sqlite unless the config names
another file or a MySQL server; Beam runs as the config's args say (in memory
by default, or e.g. the direct-multiprocessing preset).
"""

from typing import Optional

from tfx import v1 as tfx
from tfx.orchestration import pipeline as tfx_pipeline

from duia.pipeline import configs
from duia.pipeline import pipeline as pipeline_lib


def run(config: configs.PipelineConfig, to_node: Optional[str] = None) -> None:
  """Runs every component in order (or up to `to_node`); raises if one fails.

  Args:
    config: the pipeline config.
    to_node: a component id (e.g. "Transform") to stop after, for runs that
      only need the data side (benchmarks); its upstream runs too.
  """
  run_options = None
  if to_node:
    run_options = tfx_pipeline.RunOptions(to_nodes=[to_node])
  tfx.orchestration.LocalDagRunner().run(
      pipeline_lib.create_pipeline(
          config, metadata_connection_config=config.metadata_connection_config()),
      run_options=run_options)
