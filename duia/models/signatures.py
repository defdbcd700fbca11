"""Serving signatures, shared by every model variant (as TFX penguin's
`make_serving_signatures`).

- `serving_default`: serialized tf.Example (raw features) -> every task and the
  fused score; the Transform graph is inside.
- `rank`: named raw tensors. User-level features come once ([1] or [1, L]) and
  are broadcast over the N candidates ([N] or [N, L]), so a 100-candidate
  request does not carry the user's history 100 times (DESIGN section 7).
  String sequences are padded with b"" and int sequences (hist_ts, neg_ts) with
  0; both paddings are dropped before Transform.
"""

from typing import Dict

import tensorflow as tf
import tensorflow_transform as tft

from duia.models import features

USER_LEVEL = set(features.USER_SCALAR_STRING + features.USER_SEQUENCE_STRING
                 + features.USER_SCALAR_INT + features.USER_SEQUENCE_INT
                 + [features.TIMESTAMP])


def raw_input_specs() -> Dict[str, tf.TensorSpec]:
  """TensorSpecs of the `rank` signature's inputs."""
  specs = {}
  for key in features.STRING_SCALARS:
    specs[key] = tf.TensorSpec([None], tf.string, name=key)
  for key in features.STRING_SEQUENCES:
    specs[key] = tf.TensorSpec([None, None], tf.string, name=key)
  for key in features.INT_SCALARS:
    specs[key] = tf.TensorSpec([None], tf.int64, name=key)
  for key in features.INT_SEQUENCES:
    specs[key] = tf.TensorSpec([None, None], tf.int64, name=key)
  for key in features.FLOAT_SCALARS:
    specs[key] = tf.TensorSpec([None], tf.float32, name=key)
  return specs


def _serving_feature_spec(tf_transform_output: tft.TFTransformOutput):
  spec = tf_transform_output.raw_feature_spec()
  for key in features.LABEL_KEYS:
    spec.pop(key, None)
  return spec


def _to_parsed_form(tensors: Dict[str, tf.Tensor], feature_spec) -> Dict[str, tf.Tensor]:
  """Named tensors -> what tf.io.parse_example would give for `feature_spec`."""
  num_candidates = tf.shape(tensors[features.ITEM_ID])[0]
  out = {}
  for key, spec in feature_spec.items():
    value = tensors[key]
    if key in USER_LEVEL:
      target = tf.concat([[num_candidates], tf.shape(value)[1:]], axis=0)
      value = tf.broadcast_to(value, target)
    if value.shape.rank == 1:
      value = value[:, None]
    if isinstance(spec, tf.io.FixedLenFeature):
      out[key] = tf.reshape(value[:, :1], [-1] + list(spec.shape))
    else:
      # from_dense drops b"" / 0 (any dtype): padding, and empty values, become
      # absent. Column positions are kept, so aligned lists stay aligned.
      out[key] = tf.sparse.from_dense(value)
  return out


def make_serving_signatures(model: tf.keras.Model,
                            tf_transform_output: tft.TFTransformOutput) -> Dict[str, tf.types.experimental.ConcreteFunction]:
  """Builds both serving signatures for `model`.

  Args:
    model: a ranker with `serving_outputs(transformed_features)`.
    tf_transform_output: the Transform output whose graph is embedded.

  Returns:
    {signature name: concrete function}, for `model.save(signatures=...)`.
  """
  model.tft_layer = tf_transform_output.transform_features_layer()
  feature_spec = _serving_feature_spec(tf_transform_output)

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name=features.SERVING_EXAMPLES_INPUT)])
  def serve_examples(serialized):
    raw = tf.io.parse_example(serialized, feature_spec)
    return model.serving_outputs(model.tft_layer(raw))

  @tf.function
  def serve_raw(**tensors):
    raw = _to_parsed_form(tensors, feature_spec)
    return model.serving_outputs(model.tft_layer(raw))

  return {
      features.SERVING_EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
      features.SERVING_RAW_SIGNATURE: serve_raw.get_concrete_function(**raw_input_specs()),
  }
