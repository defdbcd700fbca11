"""A pushed model saved again with this code's `rank` graph and with the old one.

The old `rank` broadcast the user's raw features over the N candidates before
Transform, so Transform and the ranker ran the user side N times; the current
one runs it once (`signatures`). This module rebuilds a pushed model from its
pipeline run (training config, Transform output, weights) and saves it twice,
as TF Serving model folders, so that a benchmark times both graphs on the same
weights in one run, whatever code exported the pushed model
(`serving_bench`).
"""

import glob
import os
import shutil
from typing import Dict

import tensorflow as tf
import tensorflow_transform as tft

from duia.models import config as config_lib
from duia.models import features
from duia.models import signatures
from duia.models import trainer
from duia.pipeline import report


def _broadcast_user(tensors):
  """The user-level raw tensors repeated for every candidate: [N, ...]."""
  num_candidates = tf.shape(tensors[features.ITEM_ID])[0]
  return {key: tf.broadcast_to(value, tf.concat([[num_candidates], tf.shape(value)[1:]], 0))
          if key in signatures.USER_LEVEL else value for key, value in tensors.items()}


def rebuild_model(root: str, model_dir: str):
  """(the ranker with `model_dir`'s weights, the Transform output)."""
  metadata = os.path.join(root, "metadata.sqlite")
  with tf.io.gfile.GFile(os.path.join(model_dir, "assets.extra", trainer.CONFIG_FILE)) as f:
    config = config_lib.TrainingConfig.from_json(f.read())
  tf_transform_output = tft.TFTransformOutput(
      report.latest_output_uri(metadata, "Transform", "transform_graph"))
  examples = report.latest_output_uri(metadata, "RawLogExampleGen", "examples")
  files = sorted(glob.glob(os.path.join(examples, "Split-eval", "*.gz")))
  serialized = next(iter(tf.data.TFRecordDataset(files, compression_type="GZIP").batch(8)))
  raw = tf.io.parse_example(serialized, tf_transform_output.raw_feature_spec())
  sample, _ = trainer.split_labels(tf_transform_output.transform_features_layer()(raw))
  model = trainer.build_model(config, tf_transform_output)
  model(sample)  # create the variables, so the restore maps them
  model.load_weights(os.path.join(model_dir, "variables", "variables")).expect_partial()
  return model, tf_transform_output


USER_ONCE, BROADCAST = "user_once", "broadcast"


def export_graphs(root: str, model_dir: str, out_dir: str) -> Dict[str, str]:
  """Saves `model_dir`'s model with each `rank` graph.

  Returns:
    {USER_ONCE: model base path, BROADCAST: model base path}, each holding
    version 1 with both signatures (`serving_default` is the same in both).
  """
  model, tf_transform_output = rebuild_model(root, model_dir)
  bases = {name: os.path.join(out_dir, name) for name in (USER_ONCE, BROADCAST)}
  exported = signatures.make_serving_signatures(model, tf_transform_output)
  model.save(os.path.join(bases[USER_ONCE], "1"), save_format="tf", signatures=exported)
  feature_spec = signatures.serving_feature_spec(tf_transform_output)
  # The same inputs, but user rows of any count (the old signature's specs).
  specs = {key: tf.TensorSpec([None] + spec.shape[1:], spec.dtype, name=key)
           for key, spec in signatures.raw_input_specs().items()}

  @tf.function
  def broadcast_rank(**tensors):
    # With the user's rows already N, Transform and every user-side layer run
    # per candidate, as in the old graph (no part has a static single row).
    raw = signatures.to_parsed_form(_broadcast_user(tensors), feature_spec)
    return model.serving_outputs(model.tft_layer(raw))

  exported[features.SERVING_RAW_SIGNATURE] = broadcast_rank.get_concrete_function(**specs)
  # The old model had no `rank_users`: its server runs every rank request alone.
  exported.pop(features.SERVING_USERS_SIGNATURE)
  model.save(os.path.join(bases[BROADCAST], "1"), save_format="tf", signatures=exported)
  # The pushed model's assets.extra (its config and TF Serving warmup requests),
  # so that the server warms both exports up as it warms the pushed one.
  extra = os.path.join(model_dir, "assets.extra")
  if tf.io.gfile.isdir(extra):
    for base in bases.values():
      shutil.copytree(extra, os.path.join(base, "1", "assets.extra"))
  return bases
