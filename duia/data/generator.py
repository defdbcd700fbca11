"""Deterministic, streaming synthetic exposure logs with planted structure.

Writes the three raw inputs of the data contract (docs/design.md §3) as gzip JSON
Lines: `users.jsonl.gz`, `items.jsonl.gz`, `exposures/part-NNNNN.jsonl.gz`.

The logs hide structure that a ranker using ids, categories and history can
find and a popularity baseline cannot. The latent part (hierarchical interests
that lean on the profile, low-active users, item quality) is drawn by
`duia.data.world.build_world`; this module shows the world's items to its
users:

- Exposure. Half the feed (by default) is drawn from a Zipf-like popularity
  over items, the other half from the user's interests (within a subgroup its
  hits first), so the top 10% of items take about 90% of exposures. A session
  leans on one focus subgroup, so recent history predicts the next item.
- Outcomes. The watched fraction is a sigmoid of affinity plus noise, times the
  item's duration; likes and shares follow affinity and the watched fraction.

Exposures are simulated in chunks of `chunk_size` rows, each from its own
generator `default_rng([seed, 1, chunk])`, then written and dropped: memory
stays flat however many rows are asked for, and the rows do not depend on
`shard_size` (shards only cut the stream into files). Rows are not in time
order (real logs are not either); the same config gives byte-identical files.

`GeneratorConfig`, `World` and `build_world` are re-exported here, so
`duia.data.generator` stays the one import for callers.

Example:

  summary = generate("/tmp/raw", GeneratorConfig(num_exposures=100_000))
  summary["top10pct_item_exposure_share"]  # about 0.9
"""

import dataclasses
import gzip
import itertools
import json
import math
import os
from typing import Any, Dict, List

import numpy as np

from duia.data.generator_config import GeneratorConfig
from duia.data.world import CHUNK_STREAM
from duia.data.world import World
from duia.data.world import build_world

__all__ = ["GeneratorConfig", "World", "build_world", "generate"]

_PAGE_SIZE = 6  # exposures per feed request
_SESSION_FOCUS = 0.5  # share of interest-feed items from the session's focus
# Session starts by hour of day: quiet nights, an evening peak.
_HOURLY = np.array([2, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 6, 7, 6, 6, 6, 6, 7, 8,
                    10, 11, 10, 7, 4], dtype=np.float64)

# watched fraction = sigmoid(_W_SLOPE*(affinity - _W_MID) + user bias + noise);
# _W_MID puts about 46% of exposures at >= 10 s.
_W_SLOPE, _W_MID, _W_NOISE = 2.0, 2.2, 1.0
_SKIP_P = 0.08  # scrolled past at once, whatever the item

_GZIP_LEVEL = 3  # several times faster than the default 9, files ~10% larger
_EXPOSURE_LINE = (
    '{"ts":%d,"user_id":"%s","item_id":"%s","watch_time_s":%.2f,"like":%d,'
    '"share":%d,"request_id":"r%05d-%06d","position":%d}\n')


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return 1.0 / (1.0 + np.exp(-x))


def _draw(cdf: np.ndarray, rng, n: int) -> np.ndarray:
  """Inverse-CDF sampling of n indices; the clip guards float round-off."""
  u = rng.random(n) * cdf[-1]
  return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


def _sessions(world: World, rng, n: int):
  """Returns per-session users and lengths summing to exactly n exposures."""
  mean_length = float(np.dot(np.diff(world.user_cdf, prepend=0.0),
                             world.session_length))
  users, lengths, total = [], [], 0
  while total < n:
    count = int((n - total) / mean_length * 1.2) + 16
    users.append(_draw(world.user_cdf, rng, count))
    lengths.append(rng.geometric(1.0 / world.session_length[users[-1]]))
    total += int(lengths[-1].sum())
  users, lengths = np.concatenate(users), np.concatenate(lengths)
  ends = np.cumsum(lengths)
  last = int(np.searchsorted(ends, n))  # the session holding exposure n-1
  lengths = lengths[:last + 1].copy()
  lengths[-1] -= ends[last] - n
  return users[:last + 1], lengths


def _interest_items(world: World, rng, user, session_user, session):
  """Items from the users' interests: a subgroup, then its hits first."""
  slots = world.interest_cdf.shape[1]

  def slot_of(who):
    u = rng.random(len(who))[:, None]
    return np.minimum((u >= world.interest_cdf[who]).sum(axis=1), slots - 1)

  focus = slot_of(session_user)[session]
  slot = np.where(rng.random(len(user)) < _SESSION_FOCUS, focus, slot_of(user))
  sub = world.interest_sub[user, slot]
  start, end = world.sub_start[sub], world.sub_end[sub]
  low = np.where(start > 0, world.sub_cdf[start - 1], 0.0)
  high = world.sub_cdf[end - 1]
  target = low + rng.random(len(user)) * (high - low)
  pos = np.searchsorted(world.sub_cdf, target, side="right")
  return world.sub_items[np.clip(pos, start, end - 1)]


def _simulate_chunk(world: World, chunk: int, n: int) -> Dict[str, Any]:
  """Simulates `n` exposures of chunk number `chunk` as columns."""
  config = world.config
  rng = np.random.default_rng([config.seed, CHUNK_STREAM, chunk])
  session_user, lengths = _sessions(world, rng, n)
  session = np.repeat(np.arange(len(lengths)), lengths)
  first = np.cumsum(lengths) - lengths
  in_session = np.arange(n) - first[session]
  user = session_user[session]
  interest_item = _interest_items(world, rng, user, session_user, session)
  popular_item = _draw(world.popularity_cdf, rng, n)
  item = np.where(rng.random(n) < config.interest_feed_fraction, interest_item,
                  popular_item)

  affinity = world.affinity(user, item)
  fraction = _sigmoid(_W_SLOPE * (affinity - _W_MID) + world.user_bias[user]
                      + _W_NOISE * rng.standard_normal(n))
  skip = rng.random(n) < _SKIP_P
  watch = np.round(np.where(skip, 3.0 * rng.random(n),
                            fraction * world.item_duration[item]), 2)
  engaged = np.where(skip, 0.0, fraction)
  like = rng.random(n) < _sigmoid(-7.0 + 1.2 * affinity + 2.5 * engaged)
  share = rng.random(n) < _sigmoid(-9.0 + 1.2 * affinity + 2.0 * engaged)

  # Sessions start at diurnal hours; within one, each exposure follows the
  # previous one's watch time and a short scroll.
  start = (rng.integers(config.days, size=len(lengths)) * 86400.0
           + _draw(np.cumsum(_HOURLY), rng, len(lengths)) * 3600.0
           + rng.random(len(lengths)) * 3600.0)
  step = watch + rng.exponential(2.0, n)
  elapsed = np.cumsum(step) - step
  offset = start[session] + elapsed - elapsed[first][session]
  ts = config.start_ts + np.minimum(offset, config.days * 86400 - 1).astype(
      np.int64)
  pages = -(-lengths // _PAGE_SIZE)
  request = (np.cumsum(pages) - pages)[session] + in_session // _PAGE_SIZE
  return {"ts": ts, "user": user, "item": item, "watch": watch,
          "like": like.astype(np.int64), "share": share.astype(np.int64),
          "request": request, "position": in_session % _PAGE_SIZE,
          "chunk": chunk}


def _exposure_lines(world: World, cols: Dict[str, Any]) -> List[str]:
  # %-formatting a fixed template is several times faster than json.dumps;
  # every id is [a-z0-9-], so nothing needs escaping.
  rows = zip(cols["ts"].tolist(), world.user_ids[cols["user"]].tolist(),
             world.item_ids[cols["item"]].tolist(), cols["watch"].tolist(),
             cols["like"].tolist(), cols["share"].tolist(),
             itertools.repeat(cols["chunk"]), cols["request"].tolist(),
             cols["position"].tolist())
  return [_EXPOSURE_LINE % row for row in rows]


class _GzipWriter:
  """A gzip file whose header (mtime 0, no name) keeps output byte-identical."""

  def __init__(self, path: str):
    self._raw = open(path, "wb")
    self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw,
                               compresslevel=_GZIP_LEVEL, mtime=0)

  def write(self, text: str) -> None:
    self._gzip.write(text.encode("utf-8"))

  def close(self) -> None:
    self._gzip.close()
    self._raw.close()


def _write_table(path: str, rows: List[Dict[str, Any]]) -> None:
  writer = _GzipWriter(path)
  writer.write("".join(json.dumps(row, separators=(",", ":")) + "\n"
                       for row in rows))
  writer.close()


class _ShardWriter:
  """Cuts a stream of lines into `part-NNNNN.jsonl.gz` of `shard_size` lines."""

  def __init__(self, directory: str, shard_size: int):
    self._directory = directory
    self._shard_size = shard_size
    self._file = None
    self._lines_in_file = 0
    self.paths: List[str] = []

  def write(self, lines: List[str]) -> None:
    while lines:
      if self._file is None:
        self.paths.append(os.path.join(
            self._directory, f"part-{len(self.paths):05d}.jsonl.gz"))
        self._file = _GzipWriter(self.paths[-1])
        self._lines_in_file = 0
      take = min(len(lines), self._shard_size - self._lines_in_file)
      self._file.write("".join(lines[:take]))
      self._lines_in_file += take
      lines = lines[take:]
      if self._lines_in_file == self._shard_size:
        self.close()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None


def generate(out_dir: str, config: GeneratorConfig) -> dict:
  """Writes a synthetic raw dataset under `out_dir` and summarises it.

  Writes `users.jsonl.gz`, `items.jsonl.gz`, `ceil(num_exposures /
  shard_size)` shards `exposures/part-00000.jsonl.gz`, ... and `summary.json`.
  Older `part-*.jsonl.gz` files in `exposures/` are removed first, so a reader
  never mixes two runs.

  Args:
    out_dir: A local directory; created if missing.
    config: What to generate.

  Returns:
    The summary also written to `summary.json`: counts; the planted low-active
    share of users and their share of exposures; the exposure share of the top
    10% (`ceil(0.1 * num_items)`) most exposed items; valid (watch time >=
    `valid_watch_s`), like and share rates; quantiles of valid consumptions per
    user (all users, zeros included); the files written, relative to
    `out_dir`; and the config.
  """
  world = build_world(config)
  exposure_dir = os.path.join(out_dir, "exposures")
  os.makedirs(exposure_dir, exist_ok=True)
  for name in sorted(os.listdir(exposure_dir)):
    if name.startswith("part-") and name.endswith(".jsonl.gz"):
      os.remove(os.path.join(exposure_dir, name))
  _write_table(os.path.join(out_dir, "users.jsonl.gz"), world.user_rows)
  _write_table(os.path.join(out_dir, "items.jsonl.gz"), world.item_rows)

  tally = {"item": np.zeros(config.num_items, dtype=np.int64),
           "user": np.zeros(config.num_users, dtype=np.int64),
           "user_valid": np.zeros(config.num_users, dtype=np.int64),
           "like": 0, "share": 0}
  writer = _ShardWriter(exposure_dir, config.shard_size)
  for chunk in range(-(-config.num_exposures // config.chunk_size)):
    n = min(config.chunk_size, config.num_exposures - chunk * config.chunk_size)
    cols = _simulate_chunk(world, chunk, n)
    writer.write(_exposure_lines(world, cols))
    valid = cols["watch"] >= config.valid_watch_s
    tally["item"] += np.bincount(cols["item"], minlength=config.num_items)
    tally["user"] += np.bincount(cols["user"], minlength=config.num_users)
    tally["user_valid"] += np.bincount(cols["user"][valid],
                                       minlength=config.num_users)
    tally["like"] += int(cols["like"].sum())
    tally["share"] += int(cols["share"].sum())
  writer.close()
  files = ["users.jsonl.gz", "items.jsonl.gz"] + [
      os.path.relpath(path, out_dir) for path in writer.paths]
  summary = _summary(config, world, tally, files)
  with open(os.path.join(out_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  return summary


def _summary(config, world, tally, files) -> Dict[str, Any]:
  n = config.num_exposures
  top = int(math.ceil(0.1 * config.num_items))
  quantiles = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9)
  return {
      "num_users": config.num_users,
      "num_items": config.num_items,
      "num_exposures": n,
      "num_low_active_users": int(world.low_active.sum()),
      "low_active_user_share": float(world.low_active.mean()),
      "low_active_exposure_share": float(
          tally["user"][world.low_active].sum() / n),
      "users_with_exposures": int((tally["user"] > 0).sum()),
      "top10pct_item_exposure_share": float(
          np.sort(tally["item"])[::-1][:top].sum() / n),
      "valid_watch_s": config.valid_watch_s,
      "valid_rate": float(tally["user_valid"].sum() / n),
      "like_rate": tally["like"] / n,
      "share_rate": tally["share"] / n,
      "valid_per_user_quantiles": {
          f"p{round(q * 100)}": float(np.quantile(tally["user_valid"], q))
          for q in quantiles},
      "files": files,
      "config": dataclasses.asdict(config),
  }
