"""The TFX Trainer entry point: `run_fn`.

Reads the transformed examples, builds the ranker named by the training config,
trains it, and exports a SavedModel with the serving signatures, the resolved
config next to it (`assets.extra/training_config.json`) and TF Serving's warmup
file (`assets.extra/tf_serving_warmup_requests`), which the Pusher copies along
with the model.
"""

import json
import os
from typing import Dict, List, Optional

from absl import logging
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from duia.models import autograph_rules
from duia.models import cluster_report
from duia.models import config as config_lib
from duia.models import distribution
from duia.models import duia_ranker
from duia.models import features
from duia.models import inputs as inputs_lib
from duia.models import preprocessing
from duia.models import signatures
from duia.models import warmup_export

CONFIG_KEY = "training_config"
CONFIG_FILE = "training_config.json"

REPORT_BATCHES = 20


def table_sizes(config: config_lib.TrainingConfig,
                tf_transform_output: tft.TFTransformOutput) -> Dict[str, int]:
  """Rows of every embedding table: hash buckets from config, vocab sizes from TFT."""
  sizes = {
      "user_id": config.features.user_id_buckets,
      "item_id": config.features.item_id_buckets,
      "author_id": config.features.author_id_buckets,
  }
  for name in preprocessing.VOCABULARIES:
    sizes[name] = preprocessing.vocabulary_size(tf_transform_output, name)
  missing = set(inputs_lib.TABLES) - set(sizes)
  if missing:
    raise ValueError(f"No size for embedding tables {sorted(missing)}")
  return sizes


def build_model(config: config_lib.TrainingConfig,
                tf_transform_output: tft.TFTransformOutput) -> tf.keras.Model:
  """The ranker for `config` (PLE or a DUIA variant), compiled."""
  model = duia_ranker.build_ranker(config, table_sizes(config, tf_transform_output))
  model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
  return model


def split_labels(transformed: Dict[str, tf.Tensor]):
  """(features, labels) from a transformed batch."""
  transformed = dict(transformed)
  labels = {key: transformed.pop(key) for key in features.LABEL_KEYS if key in transformed}
  return transformed, labels


def input_fn(file_pattern: List[str], data_accessor: tfx.components.DataAccessor,
             tf_transform_output: tft.TFTransformOutput, batch_size: int,
             seed: int, shuffle_buffer: Optional[int] = None) -> tf.data.Dataset:
  """Endless, shuffled (features, labels) batches of transformed examples.

  Args:
    file_pattern: the split's files.
    data_accessor: the Trainer's DataAccessor.
    tf_transform_output: the Transform output (schema of the examples).
    batch_size: rows per batch.
    seed: shuffle seed.
    shuffle_buffer: records in the shuffle buffer; None keeps TFXIO's default
      (10,000). The ingestion writes each user's rows together, so the
      training split needs a buffer that spans many users
      (`TrainingConfig.shuffle_buffer`).
  """
  buffer = {} if shuffle_buffer is None else {"shuffle_buffer_size": shuffle_buffer}
  options = tfxio.TensorFlowDatasetOptions(batch_size=batch_size, shuffle_seed=seed, **buffer)
  dataset = data_accessor.tf_dataset_factory(
      file_pattern, options, tf_transform_output.transformed_metadata.schema)
  return dataset.map(split_labels, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
      tf.data.AUTOTUNE)


def config_from_custom_config(custom_config) -> config_lib.TrainingConfig:
  if not custom_config or CONFIG_KEY not in custom_config:
    return config_lib.TrainingConfig()
  return config_lib.TrainingConfig.from_json(custom_config[CONFIG_KEY])


def warm_start(model: tf.keras.Model, base_model_dir: str,
               config: config_lib.TrainingConfig, sample_batch) -> bool:
  """Continues from a previous model's weights, centers and memories included.

  The stream clustering then goes on across pipeline runs (docs/design.md §5).
  Only a model trained with the same config is a valid start (other shapes or
  variants would not map); anything else is logged and skipped.

  Args:
    model: the freshly built ranker.
    base_model_dir: the previous run's SavedModel directory.
    config: this run's config.
    sample_batch: transformed features, to create the variables before restoring.

  Returns:
    Whether the weights were restored.
  """
  config_path = os.path.join(base_model_dir, "assets.extra", CONFIG_FILE)
  if not tf.io.gfile.exists(config_path):
    logging.warning("Warm start skipped: %s has no %s", base_model_dir, CONFIG_FILE)
    return False
  with tf.io.gfile.GFile(config_path) as f:
    previous = config_lib.TrainingConfig.from_json(f.read())
  if previous != config:
    logging.warning("Warm start skipped: the base model was trained with another config.")
    return False
  model(sample_batch)  # create every variable, so the restore maps them now
  model.load_weights(os.path.join(base_model_dir, "variables", "variables")).expect_partial()
  logging.info("Warm-started from %s", base_model_dir)
  return True


def write_cluster_report(model, dataset: tf.data.Dataset, directories: List[str]) -> None:
  """Writes and prints the DUIA memories' report on eval batches (no-op for PLE)."""
  if not hasattr(model, "memories"):
    return
  report = cluster_report.build_report(
      model, (batch for batch, _ in dataset.take(REPORT_BATCHES)))
  for directory in directories:
    tf.io.gfile.makedirs(directory)
    cluster_report.write_report(report, os.path.join(directory, cluster_report.REPORT_FILE))
  print("Cluster report (eval data):\n" + cluster_report.format_report(report), flush=True)


def export(model: tf.keras.Model, tf_transform_output: tft.TFTransformOutput,
           config: config_lib.TrainingConfig, serving_model_dir: str) -> None:
  """Saves the SavedModel with both signatures and the resolved config."""
  model.save(serving_model_dir, save_format="tf",
             signatures=signatures.make_serving_signatures(model, tf_transform_output))
  extra = os.path.join(serving_model_dir, "assets.extra")
  tf.io.gfile.makedirs(extra)
  with tf.io.gfile.GFile(os.path.join(extra, CONFIG_FILE), "w") as f:
    f.write(json.dumps(json.loads(config.to_json()), indent=1, sort_keys=True))


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """TFX Trainer entry point.

  Args:
    fn_args: TFX trainer args; `custom_config["training_config"]` holds the
      TrainingConfig as JSON (validated here; a bad key fails the run at once),
      `custom_config["raw_examples_uri"]` and `["model_name"]` what the warmup
      file is built from and for (see `warmup_export.write_run_warmup`),
      `custom_config["distribution_strategy"]` the tf.distribute strategy
      (`distribution.STRATEGIES`; default "none"). The batch size is global:
      each of R replicas gets batch_size / R rows.
  """
  config = config_from_custom_config(fn_args.custom_config)
  logging.info("Training config: %s", config.to_json())
  autograph_rules.skip_tf_keras_conversion()
  tf.keras.utils.set_random_seed(config.seed)
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  train = input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output,
                   config.batch_size, config.seed, config.shuffle_buffer)
  evaluation = input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output,
                        config.batch_size, config.seed)
  strategy = distribution.make_strategy(
      (fn_args.custom_config or {}).get(distribution.CONFIG_KEY, "none"))
  logging.info("Training on %d replica(s)", strategy.num_replicas_in_sync)
  with strategy.scope():
    # Variables (the DUIA centers too) are created, and restored, as mirrored.
    model = build_model(config, tf_transform_output)
    if fn_args.base_model:
      warm_start(model, fn_args.base_model, config, next(iter(train))[0])
  model.fit(train, epochs=1, steps_per_epoch=fn_args.train_steps or config.train_steps,
            validation_data=evaluation,
            validation_steps=fn_args.eval_steps or config.eval_steps, verbose=2)
  # fit() runs compute_loss -> forward(), never Model.__call__, so Keras has not
  # recorded the input structure that saving needs; one inference call does it.
  model(next(iter(evaluation))[0], training=False)
  export(model, tf_transform_output, config, fn_args.serving_model_dir)
  warmup_export.write_run_warmup(fn_args.serving_model_dir, fn_args.custom_config)
  write_cluster_report(model, evaluation, [
      fn_args.model_run_dir, os.path.join(fn_args.serving_model_dir, "assets.extra")])
