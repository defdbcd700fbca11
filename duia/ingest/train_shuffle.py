"""The train split's shuffle: a user's examples leave the sweep together; this mixes them.

The point-in-time sweep writes each user's examples together, and a training
input's shuffle buffer (100k records) cannot undo that at 1M rows and up: it
would hold a few hundred users at a time. `ShuffleChunks` writes the split in
chunks of a few examples of one user, in an order mixed across all users.

A chunk crosses the shuffle as one zlib-compressed blob: a runner holds a
group-by's data in memory (the in-memory runner all of it), and a user's
neighbouring examples share most of their history, so they compress well.
"""

import random
import struct
import zlib
from typing import Iterable, Iterator, List, Sequence

import apache_beam as beam

# Groups, and consecutive records of one user kept together. The in-memory
# runner emits groups in the order their keys first appear, so the file is
# mixed only when each group is a sample of many users: few groups (each 1/16
# of the split, in one worker's memory on a distributed runner).
SHUFFLE_BUCKETS = 16
SHUFFLE_CHUNK = 16


def split_into_chunks(records: Sequence[bytes]) -> Iterator[List[bytes]]:
  """One user's train records, in order, as chunks of at most `SHUFFLE_CHUNK`."""
  for start in range(0, len(records), SHUFFLE_CHUNK):
    yield list(records[start:start + SHUFFLE_CHUNK])


# Fast compression: the blob only lives through the shuffle.
_ZLIB_LEVEL = 1
_LENGTH = struct.Struct("<I")


def pack(records: Sequence[bytes]) -> bytes:
  """A chunk's records as one compressed blob (each record length-prefixed)."""
  return zlib.compress(b"".join(_LENGTH.pack(len(r)) + r for r in records), _ZLIB_LEVEL)


def unpack(blob: bytes) -> Iterator[bytes]:
  """The records `pack` put into `blob`, in order."""
  data, offset = zlib.decompress(blob), 0
  while offset < len(data):
    (length,) = _LENGTH.unpack_from(data, offset)
    offset += _LENGTH.size
    yield data[offset:offset + length]
    offset += length


def _shuffled_group(bucket: int, blobs: Iterable[bytes]) -> Iterator[bytes]:
  # Sorted first: a runner may hand a group's chunks over in any order, and the
  # file should not depend on it.
  blobs = sorted(blobs)
  random.Random(bucket).shuffle(blobs)
  for blob in blobs:
    yield from unpack(blob)


@beam.ptransform_fn
def ShuffleChunks(chunks, buckets: int = SHUFFLE_BUCKETS):  # pylint: disable=invalid-name
  """The chunks' records, chunk by chunk in a pseudo-random order set by their bytes.

  Each chunk goes to one of `buckets` groups by a hash of its bytes, so every
  group is a sample of all users, and is written in a random order seeded by
  the bucket and independent of the order the runner delivers the group in
  (the order of the groups is the runner's). Unlike `beam.Reshuffle`, which only redistributes work (the
  in-memory runner keeps the input order), this changes the order in the
  file. A chunk's few records of one user stay together: the training
  input's buffer mixes them, and gzip compresses neighbours that share most
  of a history much faster than unrelated records (shuffled one by one,
  compression became the ingestion's largest single cost).
  """
  return (chunks
          | "PackAndHash" >> beam.Map(lambda c: (zlib.crc32(c[0]) % buckets, pack(c)))
          | "GroupBuckets" >> beam.GroupByKey()
          | "ShuffleBucket" >> beam.FlatMapTuple(_shuffled_group))
