"""The Trainer's input on a user-grouped split: the shuffle buffer decides what a batch mixes.

The ingestion writes each user's rows together; these tests write a split the
same way (100 users x 20 rows, in user order) and read it with
`trainer.input_fn` through the Trainer's DataAccessor (TFXIO).
"""

import types

import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2

from duia.models import config as config_lib
from duia.models import features
from duia.models import trainer
from duia.quality import training

USERS, ROWS_PER_USER, BATCH = 100, 20, 200
USER = "user_index"


def _write_user_grouped_split(path: str) -> None:
  with tf.io.TFRecordWriter(path, options="GZIP") as writer:
    for row in range(USERS * ROWS_PER_USER):
      example = tf.train.Example()
      example.features.feature[USER].int64_list.value.append(row // ROWS_PER_USER)
      example.features.feature[features.LABEL_VALID].int64_list.value.append(row % 2)
      writer.write(example.SerializeToString())


def _transform_output() -> types.SimpleNamespace:
  schema = schema_pb2.Schema()
  for name in (USER, features.LABEL_VALID):
    feature = schema.feature.add(name=name, type=schema_pb2.INT)
    feature.shape.dim.add(size=1)
    feature.presence.min_fraction = 1.0
  return types.SimpleNamespace(transformed_metadata=types.SimpleNamespace(schema=schema))


def _users_in_first_batch(tmp_path, shuffle_buffer) -> int:
  path = str(tmp_path / "train.gz")
  _write_user_grouped_split(path)
  dataset = trainer.input_fn([path], training.data_accessor(), _transform_output(), BATCH,
                             seed=0, shuffle_buffer=shuffle_buffer)
  batch, labels = next(iter(dataset))
  assert set(labels) == {features.LABEL_VALID}  # labels split off the features
  return len(set(batch[USER].numpy().ravel().tolist()))


def test_a_buffer_over_the_whole_split_mixes_users_from_all_of_it(tmp_path):
  # 200 draws from 2,000 rows of 100 users: nearly every batch touches 80+ users.
  assert _users_in_first_batch(tmp_path, USERS * ROWS_PER_USER) > 80


def test_a_small_buffer_sees_a_window_of_users_only(tmp_path):
  # A 100-row buffer over user-grouped rows holds about 5 users at a time.
  assert _users_in_first_batch(tmp_path, 100) < 25


def test_the_default_buffer_spans_a_100k_row_split():
  assert config_lib.TrainingConfig().shuffle_buffer >= 100_000
