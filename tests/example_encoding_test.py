"""Batch encoding through Arrow + tfx_bsl equals the one-row reference."""

import tensorflow as tf

from duia.ingest import example_encoding
from duia.models import features


def _row(i: int, **changes):
  row = {}
  for key, kind in example_encoding.FEATURE_TYPES.items():
    if key in features.STRING_SEQUENCES:
      row[key] = [f"{key}-{i}-{j}" for j in range(i % 4)]  # includes empty lists
    elif key in features.INT_SEQUENCES:
      row[key] = [1_700_000_000 + i * 10 + j for j in range(i % 4)]  # int64 values
    elif kind == "bytes":
      row[key] = f"{key}-{i}"
    elif kind == "int":
      row[key] = i * 3
    else:
      row[key] = i / 7.0
  row.update(changes)
  return row


def test_reference_encoding_has_every_key_with_its_type():
  example = example_encoding.to_tf_example(_row(2, **{features.USER_ID: "ü-1"}))
  feature = example.features.feature
  assert set(feature) == set(example_encoding.FEATURE_TYPES)
  assert list(feature[features.USER_ID].bytes_list.value) == ["ü-1".encode("utf-8")]
  assert list(feature[features.HIST_ITEM_IDS].bytes_list.value) == [
      b"hist_item_ids-2-0", b"hist_item_ids-2-1"]
  assert list(feature[features.LABEL_VALID].int64_list.value) == [6]
  assert list(feature[features.HIST_TS].int64_list.value) == [1_700_000_020, 1_700_000_021]
  assert feature[features.LABEL_WATCH].float_list.value[0] == tf.constant(2 / 7.0).numpy()
  empty = example_encoding.to_tf_example(_row(0)).features.feature[features.HIST_ITEM_IDS]
  assert empty.WhichOneof("kind") == "bytes_list" and not empty.bytes_list.value
  empty = example_encoding.to_tf_example(_row(0)).features.feature[features.NEG_TS]
  assert empty.WhichOneof("kind") == "int64_list" and not empty.int64_list.value
