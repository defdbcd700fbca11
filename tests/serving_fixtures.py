"""A tiny stand-in ranker with the two serving signatures, and request data.

`TinyRanker` has the signatures of docs/design.md §7 (`serving_default` over
serialized tf.Examples, `rank` over raw tensors with the user sent once) and a
`scale` that tells versions apart; `save(scale, path)` writes it as a SavedModel.
"""

import os

import tensorflow as tf

from duia.models import features
from duia.serving import client as client_lib
from duia.serving import warmup

TASKS = (features.TASK_VALID, features.TASK_WATCH, features.TASK_LIKE)
TS = 1_700_000_000


def rank_input_specs():
  specs = {}

  def add(keys, shape, dtype):
    for key in keys:
      specs[key] = tf.TensorSpec(shape, dtype, name=key)

  add(features.USER_SCALAR_STRING, [1], tf.string)
  add(features.USER_SEQUENCE_STRING, [1, None], tf.string)
  add(features.USER_SCALAR_INT + [features.TIMESTAMP], [1], tf.int64)
  add(features.USER_SEQUENCE_INT, [1, None], tf.int64)
  add(features.ITEM_SCALAR_STRING, [None], tf.string)
  add(features.ITEM_SEQUENCE_STRING, [None, None], tf.string)
  add(features.ITEM_SCALAR_INT, [None], tf.int64)
  add(features.ITEM_SCALAR_FLOAT, [None], tf.float32)
  return specs


def _hash(strings):
  return tf.cast(tf.strings.to_hash_bucket_fast(strings, 1000), tf.float32)


class TinyRanker(tf.Module):
  """Deterministic stand-in for the ranker; `scale` tells versions apart."""

  def __init__(self, scale):
    super().__init__()
    self.scale = tf.Variable(scale, dtype=tf.float32)

  def _scores(self, user_hash, item_hash, duration, hist_len, tags_len):
    # [1]-shaped user terms broadcast over the [N] candidates, as in the model.
    valid = tf.sigmoid(self.scale * (item_hash - user_hash) / 1000.0 +
                       0.01 * duration)
    watch = self.scale * duration * valid + hist_len
    like = tf.sigmoid(tags_len - 1.0 + item_hash / 1000.0)
    return {
        features.TASK_VALID: valid,
        features.TASK_WATCH: watch,
        features.TASK_LIKE: like,
        features.FUSED_SCORE: valid + 0.01 * watch + like,
    }

  @tf.function(input_signature=[rank_input_specs()])
  def rank(self, inputs):
    nonempty = lambda t: tf.reduce_sum(tf.cast(t != b"", tf.float32), axis=1)
    return self._scores(
        _hash(inputs[features.USER_ID]), _hash(inputs[features.ITEM_ID]),
        inputs[features.DURATION_S] + 1e-3 * tf.cast(
            inputs[features.ITEM_PRIOR_EXPOSURES], tf.float32),
        nonempty(inputs[features.HIST_ITEM_IDS]),
        nonempty(inputs[features.TAGS]))

  @tf.function(input_signature=[{
      features.SERVING_EXAMPLES_INPUT:
          tf.TensorSpec([None], tf.string, name=features.SERVING_EXAMPLES_INPUT)
  }])
  def serve_examples(self, inputs):
    parsed = tf.io.parse_example(
        inputs[features.SERVING_EXAMPLES_INPUT], {
            features.USER_ID: tf.io.FixedLenFeature([], tf.string, ""),
            features.ITEM_ID: tf.io.FixedLenFeature([], tf.string, ""),
            features.DURATION_S: tf.io.FixedLenFeature([], tf.float32, 0.0),
            features.HIST_ITEM_IDS: tf.io.RaggedFeature(tf.string),
            features.TAGS: tf.io.RaggedFeature(tf.string),
        })
    lengths = lambda r: tf.cast(r.row_lengths(), tf.float32)
    return self._scores(
        _hash(parsed[features.USER_ID]), _hash(parsed[features.ITEM_ID]),
        parsed[features.DURATION_S], lengths(parsed[features.HIST_ITEM_IDS]),
        lengths(parsed[features.TAGS]))


def save(scale, path):
  module = TinyRanker(scale)
  tf.saved_model.save(module, str(path), signatures={
      features.SERVING_EXAMPLES_SIGNATURE:
          module.serve_examples.get_concrete_function(),
      features.SERVING_RAW_SIGNATURE: module.rank.get_concrete_function(),
  })


USER = {
    features.USER_ID: "u42",
    features.CITY: "paris",
    features.HIST_ITEM_IDS: ["i1", "i7", "i3"],
    features.HIST_TS: [TS - 3_600, TS - 86_400, TS - 7 * 86_400],  # aligned
    features.PREF_CAT1: [b"music"],
    features.USER_VALID_COUNT: 12,
    features.LABEL_VALID: 1,  # Label columns of a dataset row are ignored.
}
CANDIDATES = [
    {features.ITEM_ID: "a", features.DURATION_S: 30.0, features.TAGS: ["x"]},
    {features.ITEM_ID: "b", features.DURATION_S: 5.5,
     features.TAGS: ["x", "y", "z"], features.ITEM_PRIOR_EXPOSURES: 40},
    {features.ITEM_ID: "c"},  # Every other feature defaulted.
    {features.ITEM_ID: "d", features.DURATION_S: 120.0, features.TAGS: []},
    {features.ITEM_ID: "e", features.DURATION_S: 60.0, features.CAT1: "news"},
]


def good_request(**kwargs):
  return client_lib.build_rank_request(USER, CANDIDATES, TS, **kwargs)


def examples():
  rows = []
  for i, candidate in enumerate(CANDIDATES):
    example = tf.train.Example()
    feats = example.features.feature
    feats[features.USER_ID].bytes_list.value.append(b"u%d" % i)
    feats[features.ITEM_ID].bytes_list.value.append(
        candidate[features.ITEM_ID].encode())
    feats[features.DURATION_S].float_list.value.append(
        candidate.get(features.DURATION_S, 0.0))
    feats[features.TAGS].bytes_list.value.extend(
        t.encode() for t in candidate.get(features.TAGS, []))
    feats[features.HIST_ITEM_IDS].bytes_list.value.extend([b"h"] * i)
    rows.append(example.SerializeToString())
  return rows


def push(root, version, scale, tmp_path, warmup_requests=None):
  """Saves version `version` aside, then renames it into `root`, as a Pusher's
  copy completes (a server polling `root` never sees it half-written)."""
  staging = tmp_path / f"staging-{version}"
  save(scale, staging)
  if warmup_requests is not None:
    warmup.write_warmup_requests(str(staging), warmup_requests)
  os.rename(staging, root / str(version))


def model_root(tmp_path, scales):
  """A model base path `tmp_path/duia` holding version -> scale of `scales`."""
  root = tmp_path / "duia"
  root.mkdir()
  for version, scale in scales.items():
    push(root, version, scale, tmp_path)
  return root


def expected_rank_scores(root, version):
  """The fused scores of `good_request()` from version `version`, in process."""
  loaded = tf.saved_model.load(str(root / str(version)))
  inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in good_request().inputs.items()}
  return loaded.signatures[features.SERVING_RAW_SIGNATURE](**inputs)[features.FUSED_SCORE].numpy()
