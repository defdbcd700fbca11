"""Serving signatures, shared by every model variant (as TFX penguin's
`make_serving_signatures`).

- `serving_default`: serialized tf.Example (raw features) -> every task and the
  fused score; the Transform graph is inside.
- `rank`: named raw tensors. User-level features come once ([1] or [1, L]) and
  are broadcast over the N candidates ([N] or [N, L]), so a 100-candidate
  request does not carry the user's history 100 times (DESIGN section 7).
  String sequences are padded with b"" (dropped before Transform). Transform
  runs on N + 1 rows, the user's row and the candidates' rows, and only then
  are the user's transformed features broadcast: the history's strings are
  looked up once, not N times. This is exact because every transformed feature
  depends on one raw feature only (`preprocessing.py`).
"""

from typing import Dict

import tensorflow as tf
import tensorflow_transform as tft

from duia.models import features

USER_LEVEL = set(features.USER_SCALAR_STRING + features.USER_SEQUENCE_STRING
                 + features.USER_SCALAR_INT + [features.TIMESTAMP])


def raw_input_specs() -> Dict[str, tf.TensorSpec]:
  """TensorSpecs of the `rank` signature's inputs."""
  specs = {}
  for key in features.STRING_SCALARS:
    specs[key] = tf.TensorSpec([None], tf.string, name=key)
  for key in features.STRING_SEQUENCES:
    specs[key] = tf.TensorSpec([None, None], tf.string, name=key)
  for key in features.INT_SCALARS:
    specs[key] = tf.TensorSpec([None], tf.int64, name=key)
  for key in features.FLOAT_SCALARS:
    specs[key] = tf.TensorSpec([None], tf.float32, name=key)
  return specs


def _serving_feature_spec(tf_transform_output: tft.TFTransformOutput):
  spec = tf_transform_output.raw_feature_spec()
  for key in features.LABEL_KEYS:
    spec.pop(key, None)
  return spec


def _to_parsed_form(tensors: Dict[str, tf.Tensor], feature_spec) -> Dict[str, tf.Tensor]:
  """Named tensors -> what tf.io.parse_example would give, on N + 1 rows.

  Row 0 holds the user-level features, rows 1..N the candidates'; the other
  level's cells are empty (b"" / 0: absent after `from_dense`), and are dropped
  again by `_user_then_candidates`.
  """
  num_candidates = tf.shape(tensors[features.ITEM_ID])[0]
  out = {}
  for key, spec in feature_spec.items():
    value = tensors[key]
    if value.shape.rank == 1:
      value = value[:, None]
    if key in USER_LEVEL:
      tf.debugging.assert_equal(
          tf.shape(value)[0], 1,
          message=f"{key} is a user-level feature: send it once, with leading dimension 1")
      empty = tf.zeros([num_candidates, tf.shape(value)[1]], value.dtype)
      value = tf.concat([value, empty], axis=0)
    else:
      value = tf.concat([tf.zeros([1, tf.shape(value)[1]], value.dtype), value], axis=0)
    if isinstance(spec, tf.io.FixedLenFeature):
      out[key] = tf.reshape(value[:, :1], [-1] + list(spec.shape))
    else:
      # from_dense drops b"" / 0: padding, and empty values, become absent.
      out[key] = tf.sparse.from_dense(value)
  return out


def _user_then_candidates(transformed: Dict[str, tf.Tensor], num_candidates) -> Dict[str, tf.Tensor]:
  """Transform outputs on N + 1 rows -> [N] rows: row 0 broadcast for user features."""
  out = {}
  for key, value in transformed.items():
    raw_key = key[:-len(features.TRANSFORMED_SUFFIX)]
    if key.endswith(features.TRANSFORMED_SUFFIX) and raw_key in USER_LEVEL:
      out[key] = tf.gather(value, tf.zeros([num_candidates], tf.int32))
    else:
      out[key] = value[1:]
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
    transformed = model.tft_layer(_to_parsed_form(tensors, feature_spec))
    num_candidates = tf.shape(tensors[features.ITEM_ID])[0]
    return model.serving_outputs(_user_then_candidates(transformed, num_candidates))

  return {
      features.SERVING_EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
      features.SERVING_RAW_SIGNATURE: serve_raw.get_concrete_function(**raw_input_specs()),
  }
