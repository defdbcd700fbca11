"""Serving signatures, shared by every model variant (as TFX penguin's
`make_serving_signatures`).

- `serving_default`: serialized tf.Example (raw features) -> every task and the
  fused score; the Transform graph is inside.
- `rank`: named raw tensors. User-level features come once ([1] or [1, L]),
  the candidates' per candidate ([N] or [N, L]), so a 100-candidate request
  does not carry the user's history 100 times (docs/design.md §7). The user side
  is also computed once: Transform runs on the user's one row and the
  candidates' N rows in one call (no preprocessing op mixes user and item
  features), and the ranker meets the two only where a candidate needs the
  user: target attention, and the first layer, which computes the user's
  columns once and adds them to each candidate's (`layers/row_split.py`).
- `rank_users`: the same for several users in one call (the server's batcher
  merges concurrent `rank` requests into it): user-level inputs with
  `features.RANK_USERS_PER_CALL` rows, and `candidate_user` [N], each
  candidate's user row.
String sequences are padded with b"" and int sequences (hist_ts, neg_ts) with
0; both paddings are dropped before Transform.
"""

from typing import Dict

import tensorflow as tf
import tensorflow_transform as tft

from duia.layers import user_rows
from duia.models import features

USER_LEVEL = set(features.USER_SCALAR_STRING + features.USER_SEQUENCE_STRING
                 + features.USER_SCALAR_INT + features.USER_SEQUENCE_INT
                 + [features.TIMESTAMP])
# Transform outputs computed from user-level inputs only: one row in `rank`.
USER_LEVEL_TRANSFORMED = {features.transformed_name(key) for key in USER_LEVEL}


def raw_input_specs(user_rows: int = 1) -> Dict[str, tf.TensorSpec]:
  """TensorSpecs of the `rank` signature's inputs: user-level ones have `user_rows`
  rows (one; `rank_users`: features.RANK_USERS_PER_CALL)."""
  specs = {}
  kinds = ((features.STRING_SCALARS, tf.string, 1), (features.STRING_SEQUENCES, tf.string, 2),
           (features.INT_SCALARS, tf.int64, 1), (features.INT_SEQUENCES, tf.int64, 2),
           (features.FLOAT_SCALARS, tf.float32, 1))
  for keys, dtype, rank in kinds:
    for key in keys:
      rows = user_rows if key in USER_LEVEL else None
      specs[key] = tf.TensorSpec([rows] + [None] * (rank - 1), dtype, name=key)
  return specs


def serving_feature_spec(tf_transform_output: tft.TFTransformOutput):
  """The raw feature spec without the labels: what a request carries."""
  spec = tf_transform_output.raw_feature_spec()
  for key in features.LABEL_KEYS:
    spec.pop(key, None)
  return spec


def to_parsed_form(tensors: Dict[str, tf.Tensor], feature_spec) -> Dict[str, tf.Tensor]:
  """Named tensors -> what tf.io.parse_example would give for `feature_spec`.

  Each feature keeps its own rows: the user's one, the candidates' N.
  """
  out = {}
  for key, spec in feature_spec.items():
    value = tensors[key]
    if value.shape.rank == 1:
      value = value[:, None]
    if isinstance(spec, tf.io.FixedLenFeature):
      out[key] = tf.reshape(value[:, :1], [-1] + list(spec.shape))
    else:
      # from_dense drops b"" / 0 (any dtype): padding, and empty values, become
      # absent. Column positions are kept, so aligned lists stay aligned.
      out[key] = tf.sparse.from_dense(value)
  return out


def pin_user_rows(transformed: Dict[str, tf.Tensor], rows: int = 1) -> Dict[str, tf.Tensor]:
  """Pins the user-level Transform outputs to their static row count.

  Transform's outputs have an unknown row count; the ranker tells the user's
  parts from the candidates' by their static rows (`layers/user_rows.py`), so
  the user's outputs must say so: one row in `rank`, U in `rank_users`.
  """
  return {key: tf.ensure_shape(value, [rows] + value.shape[1:])
          if key in USER_LEVEL_TRANSFORMED else value for key, value in transformed.items()}


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
  feature_spec = serving_feature_spec(tf_transform_output)

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name=features.SERVING_EXAMPLES_INPUT)])
  def serve_examples(serialized):
    raw = tf.io.parse_example(serialized, feature_spec)
    return model.serving_outputs(model.tft_layer(raw))

  @tf.function
  def serve_raw(**tensors):
    transformed = model.tft_layer(to_parsed_form(tensors, feature_spec))
    return model.serving_outputs(pin_user_rows(transformed))

  users = features.RANK_USERS_PER_CALL

  @tf.function
  def serve_users(**tensors):
    candidate_user = tensors.pop(features.CANDIDATE_USER_INPUT)
    with user_rows.several_users(candidate_user, users):
      transformed = model.tft_layer(to_parsed_form(tensors, feature_spec))
      return model.serving_outputs(pin_user_rows(transformed, users))

  users_specs = dict(raw_input_specs(users), **{features.CANDIDATE_USER_INPUT: tf.TensorSpec(
      [None], tf.int32, name=features.CANDIDATE_USER_INPUT)})
  return {
      features.SERVING_EXAMPLES_SIGNATURE: serve_examples.get_concrete_function(),
      features.SERVING_RAW_SIGNATURE: serve_raw.get_concrete_function(**raw_input_specs()),
      features.SERVING_USERS_SIGNATURE: serve_users.get_concrete_function(**users_specs),
  }
