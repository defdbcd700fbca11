"""The orchestrator-agnostic pipeline definition.

    RawLogExampleGen -> StatisticsGen (sampled by size) -> ExampleValidator (curated schema,
      ImportSchemaGen) + DistributionValidator (vs. the last validated
      statistics) -> DataValidationGate -> Transform -> Trainer
      -> Evaluator (vs. latest blessed, on EvalSampleGen's weighted eval sample) -> Pusher

Runners (local, Kubeflow) only pass their environment in.
"""

import os
from typing import Optional

from tfx import v1 as tfx

from duia.components import eval_sample_gen
from duia.components import raw_log_example_gen
from duia.components import sampled_statistics_gen
from duia.models import distribution
from duia.models import features
from duia.models import preprocessing
from duia.models import trainer
from duia.models import warmup_export
from duia.pipeline import configs
from duia.pipeline import eval_config
from duia.pipeline import validation_nodes

PREPROCESSING_FN = f"{preprocessing.__name__}.preprocessing_fn"
RUN_FN = f"{trainer.__name__}.run_fn"


def create_pipeline(config: configs.PipelineConfig,
                    metadata_connection_config: Optional[object] = None) -> tfx.dsl.Pipeline:
  """Builds the TFX pipeline for `config`.

  Args:
    config: the pipeline config.
    metadata_connection_config: ML Metadata connection (SQLite locally, MySQL
      on Kubeflow); None lets the orchestrator supply it.

  Returns:
    The pipeline, ready for any TFX runner.
  """
  training_json = config.training.to_json()
  example_gen = raw_log_example_gen.RawLogExampleGen(
      input_base=config.data_root, mapping=config.mapping())
  statistics_gen = sampled_statistics_gen.SampledStatisticsGen(
      examples=example_gen.outputs["examples"],
      sample_examples=config.validation.statistics_sample_examples).with_id("StatisticsGen")
  statistics = statistics_gen.outputs["statistics"]
  validation = validation_nodes.validation_nodes(statistics, config.validation)
  schema = validation.schema
  transform = tfx.components.Transform(
      examples=example_gen.outputs["examples"], schema=schema,
      preprocessing_fn=PREPROCESSING_FN,
      custom_config={trainer.CONFIG_KEY: training_json},
      # No pre-/post-transform TFDV statistics: StatisticsGen already has the
      # raw ones, and these two more passes over the data were a large part of
      # Transform's time when it was profiled (an early stop; not re-measured).
      disable_statistics=True)
  # The gate passes nothing Transform reads; this edge is what makes its
  # failure stop the run.
  transform.add_upstream_node(validation.gate)
  # Warm start: the Trainer continues from the latest model (blessed or not),
  # so the DUIA stream clustering goes on across runs.
  latest_model = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
  ).with_id("latest_model_resolver")
  trainer_component = tfx.components.Trainer(
      run_fn=RUN_FN,
      base_model=latest_model.outputs["model"],
      examples=transform.outputs["transformed_examples"],
      transform_graph=transform.outputs["transform_graph"],
      schema=schema,
      train_args=tfx.proto.TrainArgs(num_steps=config.training.train_steps),
      eval_args=tfx.proto.EvalArgs(num_steps=config.training.eval_steps),
      custom_config={
          trainer.CONFIG_KEY: training_json,
          # The warmup file needs raw tf.Examples, which the Trainer's own
          # (transformed) examples are not; TFX writes ExampleGen's output
          # under this folder, one subfolder per execution.
          warmup_export.RAW_EXAMPLES_KEY: os.path.join(
              config.pipeline_root, example_gen.id, raw_log_example_gen.EXAMPLES_KEY),
          warmup_export.MODEL_NAME_KEY: config.model_name,
          # The tf.distribute strategy run_fn trains under (a name; the
          # strategy itself is built inside the Trainer's process).
          distribution.CONFIG_KEY: config.distribution,
      })
  model_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id("latest_blessed_model_resolver")
  eval_sample = eval_sample_gen.EvalSampleGen(
      examples=example_gen.outputs["examples"],
      sample_examples=config.blessing.eval_sample_examples)
  evaluator = tfx.components.Evaluator(
      examples=eval_sample.outputs[eval_sample_gen.EVAL_EXAMPLES_KEY],
      model=trainer_component.outputs["model"],
      baseline_model=model_resolver.outputs["model"],
      eval_config=eval_config.make_eval_config(config.training.tasks, config.blessing,
                                               example_weight_key=features.EVAL_WEIGHT))
  pusher = tfx.components.Pusher(
      model=trainer_component.outputs["model"],
      model_blessing=evaluator.outputs["blessing"],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=config.serving_model_dir)))
  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=config.pipeline_root,
      components=[example_gen, statistics_gen, *validation.in_order(), transform,
                  latest_model, trainer_component, model_resolver, eval_sample, evaluator,
                  pusher],
      enable_cache=config.enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=list(config.beam_pipeline_args))
