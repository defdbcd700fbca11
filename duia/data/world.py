"""The latent world behind the synthetic logs: users, items and interests.

`build_world` draws, from `GeneratorConfig.seed` alone, what
`duia.data.generator` later samples exposures from:

- Hierarchical interests. Each user cares about 1-3 groups (item `cat1`) and,
  in each, 1-3 subgroups (`cat2`). Affinity to an item is high for one of the
  user's subgroups, medium for one of the user's groups, low otherwise, plus a
  per-item quality (`World.affinity`). Interests lean on (age, gender), so a
  bare profile says something about a user without history.
- Activity. `low_active_fraction` of users open the app rarely, for short
  sessions, and watch less; their profiles are sparse. Session rates are
  log-normal, so per-user exposure counts are long-tailed.
- Items. Subgroups of uneven size, Zipf-like popularity ranks, a quality that
  rises with popularity, log-normal durations, authors and tags.

The world also holds the rows of `users.jsonl.gz` and `items.jsonl.gz`.

Example:

  world = build_world(GeneratorConfig(num_users=100, num_items=500))
  world.affinity(np.array([0, 0]), np.array([3, 7]))  # oracle scores
"""

import dataclasses
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from duia.data.generator_config import GeneratorConfig

# Random streams of `config.seed`: the world draws from [seed, WORLD_STREAM],
# exposure chunk k from [seed, CHUNK_STREAM, k], so the number of chunks never
# changes the world.
WORLD_STREAM, CHUNK_STREAM = 0, 1
ACTIVITY_STREAM = 2  # the Zipf ranking of users (`activity_exponent`)

_AGE_BUCKETS = ("<18", "18-24", "25-34", "35-44", "45-54", "55+")
_AGE_P = (0.08, 0.27, 0.3, 0.18, 0.1, 0.07)
_GENDERS = ("f", "m")
_DEVICES = ("android", "ios", "web")
_DEVICE_P = (0.55, 0.37, 0.08)
_NUM_CITIES = 40
_MAX_GROUPS = 3  # interest groups per user
_MAX_SUBGROUPS = 3  # interest subgroups per interest group
_TAGS_PER_SUBGROUP = 4
_LOW_SESSION_LENGTH = 0.4  # low-active session length / high-active
_RATE_SIGMA = 0.7  # log-normal spread of how often users open the app

# affinity = _A_GROUP*[group match] + _A_SUB*[subgroup match]
#            + _A_WEIGHT*(user's weight on the item's group) + item quality.
_A_GROUP, _A_SUB, _A_WEIGHT = 0.6, 0.8, 0.6
# Hits are hits for everyone: quality rises with log popularity, so a
# popularity baseline is not a straw man.
_QUALITY_NOISE, _POP_QUALITY = 0.35, 0.3
_LOW_BIAS = -0.6  # low-active users watch less
_DURATION_MEDIAN_S, _DURATION_SIGMA = 30.0, 0.5


@dataclasses.dataclass(frozen=True)
class World:
  """The latent state behind the logs: who likes what, and what gets shown.

  Users and items are indexed 0..U-1 and 0..I-1; a subgroup's global index is
  `group * num_subgroups + subgroup`. Tests and analyses use it as the ground
  truth (e.g. `low_active`, or `affinity` as an oracle score).

  Attributes:
    config: The config the world was built from.
    user_ids: [U] user id strings (object array).
    low_active: [U] bool, the planted low-active users.
    user_bias: [U] additive watch logit of the user.
    session_length: [U] mean exposures per session.
    user_cdf: [U] cumulative share of sessions (who opens the app).
    interest_sub: [U, M] global subgroup of each interest slot, -1 if unused.
    interest_weight: [U, M] weight of each slot, 0 if unused; rows sum to 1.
    interest_cdf: [U, M] row-wise cumulative weights, last column exactly 1.
    group_weight: [U, G] the user's weight on each group.
    item_ids: [I] item id strings (object array).
    item_sub: [I] global subgroup of the item.
    item_quality: [I] additive affinity of the item.
    item_duration: [I] seconds.
    popularity_cdf: [I] cumulative distribution of the popularity feed.
    sub_items: [I] items ordered by subgroup.
    sub_cdf: [I] cumulative interest-feed weight along `sub_items`.
    sub_start: [G*S] where each subgroup starts in `sub_items`.
    sub_end: [G*S] one past where it ends.
    user_rows: Rows of `users.jsonl.gz`.
    item_rows: Rows of `items.jsonl.gz`.
  """

  config: GeneratorConfig
  user_ids: np.ndarray
  low_active: np.ndarray
  user_bias: np.ndarray
  session_length: np.ndarray
  user_cdf: np.ndarray
  interest_sub: np.ndarray
  interest_weight: np.ndarray
  interest_cdf: np.ndarray
  group_weight: np.ndarray
  item_ids: np.ndarray
  item_sub: np.ndarray
  item_quality: np.ndarray
  item_duration: np.ndarray
  popularity_cdf: np.ndarray
  sub_items: np.ndarray
  sub_cdf: np.ndarray
  sub_start: np.ndarray
  sub_end: np.ndarray
  user_rows: List[Dict[str, Any]]
  item_rows: List[Dict[str, Any]]

  def affinity(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Noise-free affinity of `users[k]` to `items[k]`, before user bias."""
    sub = self.item_sub[items]
    group_weight = self.group_weight[users, sub // self.config.num_subgroups]
    sub_match = (self.interest_sub[users] == sub[:, None]).any(axis=1)
    return (_A_GROUP * (group_weight > 0) + _A_SUB * sub_match
            + _A_WEIGHT * group_weight + self.item_quality[items])


def _ids(prefix: str, n: int) -> np.ndarray:
  width = max(5, len(str(n - 1)))
  return np.array([f"{prefix}{k:0{width}d}" for k in range(n)], dtype=object)


def _cat2(sub: int, num_subgroups: int) -> str:
  return f"g{sub // num_subgroups}_s{sub % num_subgroups}"


def _top_k(rng, logits: np.ndarray, k: int) -> np.ndarray:
  """Draws k distinct last-axis indices, proportional to exp(logits)."""
  # Gumbel top-k: sampling without replacement, vectorised over rows.
  return np.argsort(-(logits + rng.gumbel(size=logits.shape)), axis=-1)[..., :k]


def _sorted_weights(rng, used: np.ndarray, k: int, alpha: float,
                    shape: Tuple[int, ...]) -> np.ndarray:
  """Dirichlet weights over the first `used` of k slots, largest first."""
  mask = np.arange(k) < np.minimum(used, k)[..., None]
  weights = np.sort(rng.dirichlet(np.full(k, alpha), size=shape) * mask,
                    axis=-1)[..., ::-1]
  return weights / weights.sum(axis=-1, keepdims=True)


def _sample_interests(rng, config: GeneratorConfig, age, gender):
  """Returns [U, M] interest subgroups and weights, and [U, G] group weights.

  Slot 0 is the top subgroup of the top group.
  """
  users, groups, subs = (config.num_users, config.num_groups,
                         config.num_subgroups)
  k_groups, k_subs = min(_MAX_GROUPS, groups), min(_MAX_SUBGROUPS, subs)
  # Each (age, gender) cell favours a few groups: a profile without history
  # still points at interests.
  cell_taste = rng.dirichlet(np.full(groups, 0.3), size=len(_AGE_BUCKETS) * 2)
  prior = 0.6 * cell_taste[age * 2 + gender] + 0.4 / groups
  chosen_groups = _top_k(rng, np.log(prior), k_groups)
  used_groups = rng.choice([1, 2, 3], size=users, p=[0.35, 0.4, 0.25])
  group_w = _sorted_weights(rng, used_groups, k_groups, 1.5, (users,))
  chosen_subs = _top_k(rng, np.zeros((users, k_groups, subs)), k_subs)
  used_subs = rng.choice([1, 2, 3], size=(users, k_groups), p=[0.4, 0.4, 0.2])
  sub_w = _sorted_weights(rng, used_subs, k_subs, 1.0, (users, k_groups))

  weight = (group_w[:, :, None] * sub_w).reshape(users, -1)
  sub_ids = (chosen_groups[:, :, None] * subs + chosen_subs).reshape(users, -1)
  group_weight = np.zeros((users, groups))
  np.put_along_axis(group_weight, chosen_groups, group_w, axis=1)
  return np.where(weight > 0, sub_ids, -1), weight, group_weight


def _weights_text(names: Sequence[str], weights: Sequence[float]) -> List[str]:
  """Formats "name:weight" with weights normalised, largest first."""
  total = sum(weights)
  order = sorted(range(len(names)), key=lambda k: -weights[k])
  return [f"{names[k]}:{weights[k] / total:.2f}" for k in order]


def _user_rows(rng, config, low, attributes, sub_ids, weight, group_weight,
               sub_tags) -> List[Dict[str, Any]]:
  """Profiles: noisy views of true interests, sparse for low-active users."""
  subs = config.num_subgroups
  draws = rng.random((config.num_users, 8 + sub_ids.shape[1]))
  stray_group = rng.integers(config.num_groups, size=config.num_users)
  user_ids = _ids("u", config.num_users)
  rows = []
  for u in range(config.num_users):
    d = draws[u]
    missing = d[:4] < (0.3 if low[u] else 0.03)
    values = [a[u] for a in attributes]
    values = ["" if miss else value for miss, value in zip(missing, values)]
    groups = np.flatnonzero(group_weight[u])
    slots = np.flatnonzero(weight[u])
    slots = slots[np.argsort(-weight[u, slots], kind="stable")]
    if low[u]:
      # Most low-active users never declared preferences; the rest only their
      # main interest.
      cat1 = [] if d[4] < 0.55 else [f"g{sub_ids[u, 0] // subs}:1.00"]
      cat2 = [] if not cat1 or d[5] < 0.5 else [
          f"{_cat2(sub_ids[u, 0], subs)}:1.00"]
      tags = []
    else:
      # Declared preferences miss some true interests and add a stray one.
      top = group_weight[u, groups].argmax()
      keep = [g for k, g in enumerate(groups) if k == top or d[4 + k] < 0.85]
      names = [f"g{g}" for g in keep]
      values_w = [group_weight[u, g] for g in keep]
      if d[7] < 0.15 and stray_group[u] not in keep:
        names.append(f"g{stray_group[u]}")
        values_w.append(0.1)
      cat1 = _weights_text(names, values_w)
      kept = [s for k, s in enumerate(slots) if k == 0 or d[8 + k] < 0.8]
      cat2 = _weights_text([_cat2(sub_ids[u, s], subs) for s in kept],
                           [weight[u, s] for s in kept])
      tag_weights = {}
      for s in slots[:3]:
        for share, tag in zip((0.6, 0.4), sub_tags[sub_ids[u, s]][:2]):
          tag_weights.setdefault(tag, weight[u, s] * share)
      tags = _weights_text(list(tag_weights), list(tag_weights.values()))[:5]
    rows.append({"user_id": user_ids[u], "age_bucket": values[0],
                 "gender": values[1], "city": values[2], "device": values[3],
                 "pref_cat1": cat1, "pref_cat2": cat2, "pref_tag": tags})
  return rows


def _items(rng, config: GeneratorConfig):
  """Returns subgroups, popularity ranks, quality, durations, tags, rows."""
  num_items, subs = config.num_items, config.num_subgroups
  num_subs = config.num_groups * subs
  # Every subgroup gets an item; the rest fill subgroups of uneven size.
  item_sub = np.concatenate([
      np.arange(num_subs),
      rng.choice(num_subs, size=num_items - num_subs,
                 p=rng.dirichlet(np.full(num_subs, 5.0)))])
  rng.shuffle(item_sub)
  rank = rng.permutation(num_items)  # 0 = most popular
  log_rank = -np.log1p(rank)
  quality = (_QUALITY_NOISE * rng.standard_normal(num_items) + _POP_QUALITY
             * (log_rank - log_rank.mean()) / (log_rank.std() + 1e-9))
  duration = np.round(np.clip(
      rng.lognormal(np.log(_DURATION_MEDIAN_S), _DURATION_SIGMA, num_items),
      5.0, 600.0), 1)

  authors_per_group = max(1, num_items // (8 * config.num_groups))
  author_p = 1.0 / np.arange(1, authors_per_group + 1)
  author = (item_sub // subs) * authors_per_group + rng.choice(
      authors_per_group, size=num_items, p=author_p / author_p.sum())
  # Tags cut across subgroups: each subgroup draws its own from one vocabulary.
  vocab = _ids("t", 2 * num_subs)
  sub_tags = [list(vocab[rng.choice(len(vocab), _TAGS_PER_SUBGROUP,
                                    replace=False)]) for _ in range(num_subs)]
  num_tags = rng.integers(1, 4, size=num_items)
  tag_picks = rng.integers(_TAGS_PER_SUBGROUP, size=(num_items, 3))
  stray = np.where(rng.random(num_items) < 0.3,
                   rng.integers(len(vocab), size=num_items), -1)

  item_ids = _ids("i", num_items)
  rows = []
  for i in range(num_items):
    tags = [sub_tags[item_sub[i]][k] for k in tag_picks[i, :num_tags[i]]]
    if stray[i] >= 0:
      tags.append(vocab[stray[i]])
    rows.append({"item_id": item_ids[i], "cat1": f"g{item_sub[i] // subs}",
                 "cat2": _cat2(item_sub[i], subs),
                 "tags": list(dict.fromkeys(tags)),
                 "duration_s": float(duration[i]),
                 "author_id": f"a{author[i]:05d}"})
  return item_ids, item_sub, rank, quality, duration, sub_tags, rows


def build_world(config: GeneratorConfig) -> World:
  """Builds the users, items and latent interests of `config`.

  Deterministic: the same config gives the same world.
  """
  rng = np.random.default_rng([config.seed, WORLD_STREAM])
  users = config.num_users
  (item_ids, item_sub, rank, quality, duration, sub_tags,
   item_rows) = _items(rng, config)

  low = np.zeros(users, dtype=bool)
  low[rng.permutation(users)[:round(config.low_active_fraction * users)]] = True
  age = rng.choice(len(_AGE_BUCKETS), size=users, p=_AGE_P)
  gender = rng.integers(len(_GENDERS), size=users)
  city_p = 1.0 / np.arange(1, _NUM_CITIES + 1)
  city = rng.choice(_NUM_CITIES, size=users, p=city_p / city_p.sum())
  device = rng.choice(len(_DEVICES), size=users, p=_DEVICE_P)
  sub_ids, weight, group_weight = _sample_interests(rng, config, age, gender)
  user_bias = 0.3 * rng.standard_normal(users) + np.where(low, _LOW_BIAS, 0.0)

  # Low-active users open the app less often and leave sooner; together they
  # see `low_active_exposure_ratio` of a high-active user's exposures.
  high_length = config.mean_session_length
  low_length = max(1.0, _LOW_SESSION_LENGTH * high_length)
  rate = rng.lognormal(0.0, _RATE_SIGMA, users)
  if config.activity_exponent > 0:
    # Its own stream, so every other draw of the world stays what it was.
    ranks = np.random.default_rng([config.seed, ACTIVITY_STREAM]).permutation(users)
    rate = (ranks + 1.0) ** -config.activity_exponent
  rate = rate * np.where(low, config.low_active_exposure_ratio * high_length / low_length, 1.0)
  attributes = (np.array(_AGE_BUCKETS)[age], np.array(_GENDERS)[gender],
                np.char.add("c", np.char.zfill(city.astype(str), 2)),
                np.array(_DEVICES)[device])
  user_rows = _user_rows(rng, config, low, attributes, sub_ids, weight,
                         group_weight, sub_tags)

  interest_cdf = np.cumsum(weight, axis=1)
  interest_cdf /= interest_cdf[:, -1:]
  popularity = (rank + 1.0) ** -config.popularity_exponent
  within_sub = (rank + 1.0) ** -config.interest_popularity_exponent
  sub_items = np.argsort(item_sub, kind="stable")
  sub_end = np.searchsorted(
      item_sub[sub_items], np.arange(config.num_groups * config.num_subgroups),
      side="right")
  return World(
      config=config, user_ids=np.array([r["user_id"] for r in user_rows],
                                       dtype=object),
      low_active=low, user_bias=user_bias,
      session_length=np.where(low, low_length, high_length),
      user_cdf=np.cumsum(rate) / rate.sum(), interest_sub=sub_ids,
      interest_weight=weight, interest_cdf=interest_cdf,
      group_weight=group_weight, item_ids=item_ids, item_sub=item_sub,
      item_quality=quality, item_duration=duration,
      popularity_cdf=np.cumsum(popularity) / popularity.sum(),
      sub_items=sub_items, sub_cdf=np.cumsum(within_sub[sub_items]),
      sub_start=np.concatenate([[0], sub_end[:-1]]), sub_end=sub_end,
      user_rows=user_rows, item_rows=item_rows)
