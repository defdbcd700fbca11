"""Reads what the ingestion wrote back into Python, for the ingestion tests."""

import glob
import os

import tensorflow as tf

from duia.ingest import beam_ingest


def read_examples(out_dir):
  """{split: [example dict]} of an ingestion's output, values as Python lists
  (bytes decoded as UTF-8)."""
  by_split = {}
  for split in beam_ingest.SPLITS:
    files = glob.glob(os.path.join(out_dir, "examples", f"Split-{split}", "*.gz"))
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
      example = tf.train.Example.FromString(record.numpy())
      row = {}
      for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value)
        row[key] = [v.decode() for v in values] if kind == "bytes_list" else values
      rows.append(row)
    by_split[split] = rows
  return by_split
