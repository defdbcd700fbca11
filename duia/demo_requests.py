"""Ranking requests built from real eval examples, for the demo and `duia predict`.

For a user with several eval exposures, the user's features are taken from their
latest exposure (point-in-time history included) and the candidates are the
items they were actually shown, so a ranked list can be checked against what
the user went on to consume.
"""

import collections
import dataclasses
import os
import random
from typing import Any, Dict, List, Optional, Sequence, Union

import tensorflow as tf

from duia.models import features

USER_KEYS = (features.USER_SCALAR_STRING + features.USER_SEQUENCE_STRING
             + features.USER_SCALAR_INT + features.USER_SEQUENCE_INT)
ITEM_KEYS = (features.ITEM_SCALAR_STRING + features.ITEM_SEQUENCE_STRING
             + features.ITEM_SCALAR_INT + features.ITEM_SCALAR_FLOAT)
SEQUENCES = set(features.STRING_SEQUENCES + features.INT_SEQUENCES)


@dataclasses.dataclass
class RankingRequest:
  user: Dict[str, Any]
  candidates: List[Dict[str, Any]]
  ts: int
  consumed: Dict[str, int]  # item_id -> label_valid of items the user was shown


def _decode(example: tf.train.Example) -> Dict[str, Any]:
  row = {}
  for key, feature in example.features.feature.items():
    kind = feature.WhichOneof("kind")
    values = list(getattr(feature, kind).value) if kind else []
    if kind == "bytes_list":
      values = [v.decode("utf-8") for v in values]
    row[key] = values if key in SEQUENCES else (values[0] if values else None)
  return row


def read_serialized(file_patterns: Union[str, Sequence[str]],
                    limit: int = 50_000) -> List[bytes]:
  """Up to `limit` serialized tf.Examples from gzipped TFRecord files.

  Args:
    file_patterns: A glob or globs of the files, in any file system
      tf.io.gfile knows (gs:// included); files are read in sorted order.
    limit: Records to read at most.

  Raises:
    FileNotFoundError: if no file matches.
  """
  if isinstance(file_patterns, str):
    # Iterating a string would glob its characters one by one.
    file_patterns = [file_patterns]
  files = sorted(f for p in file_patterns for f in tf.io.gfile.glob(p))
  if not files:
    raise FileNotFoundError(f"No TFRecord files match {list(file_patterns)}")
  dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)
  return [r.numpy() for r in dataset]


def decode_examples(serialized: Sequence[bytes]) -> List[Dict[str, Any]]:
  """Rows (feature key -> value, lists for sequences) of serialized tf.Examples."""
  return [_decode(tf.train.Example.FromString(s)) for s in serialized]


def read_examples(split_dir: str, limit: int = 50_000) -> List[Dict[str, Any]]:
  """Decoded examples from an Examples split folder (gzipped TFRecords)."""
  return decode_examples(read_serialized([os.path.join(split_dir, "*.gz")], limit))


def sample_requests(examples: List[Dict[str, Any]], num_users: int, num_candidates: int,
                    seed: int = 0,
                    pool_examples: Optional[List[Dict[str, Any]]] = None) -> List[RankingRequest]:
  """Up to `num_users` requests of users with >= 2 eval exposures, mixed activity.

  Candidates the user was not shown come from `pool_examples` (default:
  `examples`), e.g. every split's rows when one split has too few items.
  """
  by_user = collections.defaultdict(list)
  for row in examples:
    by_user[row[features.USER_ID]].append(row)
  eligible = sorted(u for u, rows in by_user.items()
                    if len(rows) >= 2 and any(r[features.LABEL_VALID] for r in rows))
  random.Random(seed).shuffle(eligible)
  # Alternate low- and high-active users, so the demo shows both.
  queues = {level: [u for u in eligible
                    if by_user[u][0][features.USER_ACTIVITY] == level]
            for level in (features.LOW_ACTIVE, features.HIGH_ACTIVE)}
  picked = []
  while len(picked) < num_users and any(queues.values()):
    for queue in queues.values():
      if queue and len(picked) < num_users:
        picked.append(queue.pop(0))
  # Other eval items fill a request up to `num_candidates`, as a retrieval
  # stage would; the user was not shown them, so nothing is known of them.
  pool = {}
  for row in examples if pool_examples is None else pool_examples:
    pool.setdefault(row[features.ITEM_ID], row)
  pool_rows = sorted(pool.values(), key=lambda r: r[features.ITEM_ID])
  rng = random.Random(seed + 1)
  requests = []
  for user_id in picked:
    rows = sorted(by_user[user_id], key=lambda r: r[features.TIMESTAMP])
    first = rows[0]
    shown = {}
    for row in rows:
      shown.setdefault(row[features.ITEM_ID], row)
    chosen = list(shown.values())[:num_candidates]
    fillers = [r for r in rng.sample(pool_rows, min(len(pool_rows), 3 * num_candidates))
               if r[features.ITEM_ID] not in shown]
    chosen += fillers[: num_candidates - len(chosen)]
    requests.append(RankingRequest(
        user={k: first[k] for k in USER_KEYS},
        candidates=[{k: row[k] for k in ITEM_KEYS} for row in chosen],
        ts=int(first[features.TIMESTAMP]),
        consumed={item: int(row[features.LABEL_VALID]) for item, row in shown.items()}))
  return requests
