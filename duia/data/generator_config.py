"""The validated config of the synthetic exposure-log generator.

`GeneratorConfig` says what `duia.data.generator.generate` writes: how many
users, items and exposures, the shape of the interest hierarchy, and the knobs
of the planted structure. It is checked on construction, so a bad value fails
before any file is written.

Example:

  config = GeneratorConfig(num_exposures=100_000, seed=3)
"""

import dataclasses
import math
from typing import Any


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
  """What to generate; validated on construction.

  Attributes:
    num_users: Users in `users.jsonl.gz`.
    num_items: Items in `items.jsonl.gz`; at least `num_groups*num_subgroups`
      so that every subgroup has an item.
    num_exposures: Exposure rows, exactly.
    num_groups: Top-level interest groups (item `cat1`, "g{g}").
    num_subgroups: Subgroups per group (item `cat2`, "g{g}_s{s}").
    low_active_fraction: Share of users planted as low-active.
    popularity_exponent: Zipf exponent of the popularity feed over item ranks.
    days: Days the timestamps span.
    start_ts: Unix seconds of the earliest possible exposure.
    shard_size: Exposures per shard file.
    seed: Seed of everything.
    interest_feed_fraction: Share of exposures drawn from the user's interests
      rather than from global popularity.
    interest_popularity_exponent: Zipf exponent over item ranks within a
      subgroup, for the interest feed (a feed shows a subgroup's hits first).
    low_active_exposure_ratio: Expected exposures of a low-active user over
      those of a high-active one.
    mean_session_length: Mean exposures per session of a high-active user.
    chunk_size: Exposures simulated at once (bounds memory). Unlike
      `shard_size` it changes the rows.
    valid_watch_s: Watch time that counts as a valid consumption (summary).
    activity_exponent: 0 draws how often users open the app log-normally;
      above 0, Zipf over a random ranking of the users (rank r opens it in
      proportion to r ** -activity_exponent), a long activity tail with many
      users seen only a few times. The low/high-active split applies on top.
  """

  num_users: int = 2000
  num_items: int = 3000
  num_exposures: int = 20000
  num_groups: int = 16
  num_subgroups: int = 8
  low_active_fraction: float = 0.3
  popularity_exponent: float = 1.4
  days: int = 14
  start_ts: int = 1_700_000_000
  shard_size: int = 100_000
  seed: int = 0
  interest_feed_fraction: float = 0.5
  interest_popularity_exponent: float = 2.0
  low_active_exposure_ratio: float = 0.15
  mean_session_length: float = 5.0
  chunk_size: int = 50_000
  valid_watch_s: float = 10.0
  activity_exponent: float = 0.0

  def __post_init__(self):
    int_minimums = {
        "num_users": 1, "num_exposures": 1, "num_groups": 1,
        "num_subgroups": 1, "days": 1, "start_ts": 0, "shard_size": 1,
        "seed": 0, "chunk_size": 1}
    for name, minimum in int_minimums.items():
      _check_int(name, getattr(self, name), minimum)
    _check_int("num_items", self.num_items,
               self.num_groups * self.num_subgroups)
    # (low, high, whether low itself is allowed)
    number_ranges = {
        "low_active_fraction": (0.0, 1.0, True),
        "interest_feed_fraction": (0.0, 1.0, True),
        "low_active_exposure_ratio": (0.0, 1.0, False),
        "popularity_exponent": (0.0, math.inf, True),
        "interest_popularity_exponent": (0.0, math.inf, True),
        "mean_session_length": (1.0, math.inf, True),
        "valid_watch_s": (0.0, math.inf, False),
        "activity_exponent": (0.0, math.inf, True)}
    for name, (low, high, low_closed) in number_ranges.items():
      value = getattr(self, name)
      ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value <= high
            and (value >= low if low_closed else value > low))
      if not ok:
        raise ValueError(
            f"GeneratorConfig.{name} must be a finite number in "
            f"{'[' if low_closed else '('}{low}, {high}]. "
            f"Received: {name}={value!r}")


def _check_int(name: str, value: Any, minimum: int) -> None:
  if isinstance(value, bool) or not isinstance(value, int):
    raise ValueError(f"GeneratorConfig.{name} must be an int. "
                     f"Received: {name}={value!r}")
  if value < minimum:
    raise ValueError(f"GeneratorConfig.{name} must be >= {minimum}. "
                     f"Received: {name}={value!r}")
