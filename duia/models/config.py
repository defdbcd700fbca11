"""Typed, validated configuration of preprocessing, the ranker and training.

Nested frozen dataclasses with named presets, in the manner of Model Garden's
`hyperparams`: an unknown override key is an error, every value is checked in
`__post_init__`, and the resolved config is saved as JSON next to the model.
Transform and Trainer receive it through TFX `custom_config` and parse it back
with `TrainingConfig.from_json`.
"""

import dataclasses
import json
from typing import Any, Dict, Mapping, Tuple, Type, TypeVar

from duia.models import features

T = TypeVar("T")


def _check_positive(owner: str, **values: float) -> None:
  for name, value in values.items():
    if value <= 0:
      raise ValueError(f"{owner}.{name} must be > 0. Received: {value}")


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
  """What Transform builds: hash sizes and fixed sequence lengths.

  Attributes:
    user_id_buckets: hash buckets for user ids (0 is reserved for padding).
    item_id_buckets: hash buckets shared by item_id, history and negatives.
    author_id_buckets: hash buckets for author ids.
    history_length: fixed length of hist_* sequences (ingestion keeps <= 100).
    negatives_length: fixed length of neg_item_ids.
    list_length: fixed length of preference lists and tags.
  """
  user_id_buckets: int = 20_000
  item_id_buckets: int = 20_000
  author_id_buckets: int = 5_000
  history_length: int = 50
  negatives_length: int = 20
  list_length: int = 5

  def __post_init__(self):
    _check_positive("features", **dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class PLEConfig:
  """Progressive Layered Extraction (Tang et al., RecSys 2020).

  Attributes:
    num_levels: CGC extraction levels.
    num_task_experts: experts owned by each task, per level.
    num_shared_experts: shared experts per level.
    expert_units: hidden sizes of each expert MLP (last one is its output).
    tower_units: hidden sizes of each task tower (a 1-unit head follows).
  """
  num_levels: int = 2
  num_task_experts: int = 2
  num_shared_experts: int = 2
  expert_units: Tuple[int, ...] = (64, 32)
  tower_units: Tuple[int, ...] = (32,)

  def __post_init__(self):
    _check_positive("ple", num_levels=self.num_levels,
                    num_task_experts=self.num_task_experts,
                    num_shared_experts=self.num_shared_experts)
    if not self.expert_units or not self.tower_units:
      raise ValueError("ple.expert_units and ple.tower_units must be non-empty.")
    _check_positive("ple", **{f"expert_units[{i}]": u for i, u in enumerate(self.expert_units)})
    _check_positive("ple", **{f"tower_units[{i}]": u for i, u in enumerate(self.tower_units)})


FUSIONS = ("product", "sum")
VARIANTS = ("ple", "uie", "uie_upbe", "duia", "duia_items", "him")
UPDATE_RULES = ("gradient", "weighted_pull", "ema")
UPBE_READOUTS = ("raw", "unit")


@dataclasses.dataclass(frozen=True)
class DUIAConfig:
  """User-interest enhancement (DUIA, Liu et al. CIKM 2024; UIE, KDD).

  The variant names the papers' ablation rows; each is a set of component
  switches over one model:

    ple         no enhancement (the baseline)
    uie         flat stream clustering, EMA update, top-k attention (UIE-KDD eq. 1-2)
    uie_upbe    GHCA user memory (UIE, DUIA eq. 2-6) + personalized memory (UPBE, eq. 7-10)
    duia        uie_upbe + history enhancement over an item GHCA (UHSE, eq. 11-14)
    duia_items  duia + the same enhancement for the target item (section 4.5)
    him         HIM instead of DUIA (Deng et al.; `HIMConfig`): another answer
                to long-tailed users, on the same PLE

  Paper defaults (industrial scale) are in brackets; the defaults here fit
  small data on 2 cores (a center should see enough users, docs/design.md §4.6).

  Attributes:
    variant: one of VARIANTS.
    memory_dim: width of tower outputs and centers [64].
    tower_units: hidden sizes of the auxiliary towers [256, 128]; a
      `memory_dim` output layer follows.
    user_level1, user_children: user GHCA sizes N1, K [512, 10].
    item_level1, item_children: item GHCA sizes [2048, 10].
    flat_clusters, flat_top_k: UIE-KDD's flat memory N and top-K1 [256, 3].
    update_rule: "gradient" (DUIA eq. 4-5 literally), "weighted_pull" (sigmoid
      as a confidence weight under stop_gradient; docs/design.md §4.3) or "ema".
    normalize: L2-normalise tower outputs, the fix docs/design.md §4.3 suggests for the
      runaway of the literal gradient rule.
    rate: rho = lambda = eta, the center update rates [0.05; UIE-KDD 0.01].
    sample_rate: share of rows that update the memories [0.3].
    personal_dim: trainable per-user personal vector [4]; 0 leaves it out.
    upbe_readout: how UPBE reads the personalized vectors: "raw" (as stored)
      or "unit" (L2-normalised, zeros stay zeros). A vector that a few
      positives pulled from zero is short, and it grows while training runs,
      so its length tells the ranker how far training has got for that user
      rather than what the user likes; "unit" keeps only the direction.
    enhancement_dim: output width of each generalization layer.
    reseed_dead_every: re-seed dead level-1 centers every n steps (0: off;
      beyond the papers). On by default: without it, 2 of 32 user centers and
      2 of 64 item centers took every eval row on generated and MovieLens data
      (`benchmarks/variant_quality_bench.py`, hit fractions 0.06 / 0.03);
      with re-seeding every 20 steps, 1.0 / 0.97-1.0.
    user_tower_target_attention: the user tower also reads the history
      attended by the target item (the ranker's behaviour vector whole); off,
      it reads the profile and the candidate-independent behaviour only.
  """
  variant: str = "ple"
  memory_dim: int = 32
  tower_units: Tuple[int, ...] = (64,)
  user_level1: int = 32
  user_children: int = 4
  item_level1: int = 64
  item_children: int = 4
  flat_clusters: int = 64
  flat_top_k: int = 3
  update_rule: str = "weighted_pull"
  normalize: bool = True
  rate: float = 0.05
  sample_rate: float = 0.3
  personal_dim: int = 4
  upbe_readout: str = "raw"
  enhancement_dim: int = 16
  reseed_dead_every: int = 20
  user_tower_target_attention: bool = True

  def __post_init__(self):
    if self.variant not in VARIANTS:
      raise ValueError(f"duia.variant must be one of {VARIANTS}. Received: {self.variant!r}")
    if self.update_rule not in UPDATE_RULES:
      raise ValueError(f"duia.update_rule must be one of {UPDATE_RULES}. "
                       f"Received: {self.update_rule!r}")
    _check_positive("duia", memory_dim=self.memory_dim, user_level1=self.user_level1,
                    user_children=self.user_children, item_level1=self.item_level1,
                    item_children=self.item_children, flat_clusters=self.flat_clusters,
                    flat_top_k=self.flat_top_k, rate=self.rate,
                    enhancement_dim=self.enhancement_dim)
    if self.personal_dim < 0:
      raise ValueError(f"duia.personal_dim must be >= 0. Received: {self.personal_dim}")
    if self.upbe_readout not in UPBE_READOUTS:
      raise ValueError(f"duia.upbe_readout must be one of {UPBE_READOUTS}. "
                       f"Received: {self.upbe_readout!r}")
    if not 0.0 < self.sample_rate <= 1.0:
      raise ValueError(f"duia.sample_rate must be in (0, 1]. Received: {self.sample_rate}")
    if self.flat_top_k > self.flat_clusters:
      raise ValueError(f"duia.flat_top_k ({self.flat_top_k}) exceeds flat_clusters "
                       f"({self.flat_clusters})")
    if self.reseed_dead_every < 0:
      raise ValueError("duia.reseed_dead_every must be >= 0. "
                       f"Received: {self.reseed_dead_every}")

  @property
  def uie(self) -> str:
    """"flat", "ghca" or "" (off)."""
    return {"ple": "", "uie": "flat", "him": ""}.get(self.variant, "ghca")

  @property
  def upbe(self) -> bool:
    return self.variant in ("uie_upbe", "duia", "duia_items")

  @property
  def uhse(self) -> bool:
    return self.variant in ("duia", "duia_items")

  @property
  def items(self) -> bool:
    return self.variant == "duia_items"


@dataclasses.dataclass(frozen=True)
class HIMConfig:
  """Hybrid Interest Modeling (Deng et al., "Hybrid Interest Modeling for
  Long-tailed Users"), used when `duia.variant` is "him".

  Paper values in brackets (public datasets; industrial where it differs).

  Attributes:
    session_days: session boundaries as ages in days at the exposure,
      ascending; T = len + 1 sessions, the last holding everything older
      (section 3.1; Musical Instruments {14d, 6m, 12m, all}, industrial {3d,
      7d, 14d, 30d}: the boundaries sit near the 10/30/50% quantiles of the
      interval distribution, Figure 4).
    top_n: items per session after frequency re-ranking, n of section 3.2.
    gru_units: hidden size of UBP's GRU; eq. 4 flattens all n hidden states.
    num_groups: user groups k of UBC [5, best of 5-30, Figure 6].
    group_dim: group embedding width d_g [16; industrial 128].
    num_negative_users: p, users sampled from the batch as eq. 8's negatives
      (the paper does not give p).
    group_loss_weight: alpha of eq. 12 [1e-4 public, 0.1 industrial].
  """
  session_days: Tuple[float, ...] = (1.0, 7.0, 30.0)
  top_n: int = 8
  gru_units: int = 8
  num_groups: int = 5
  group_dim: int = 16
  num_negative_users: int = 4
  group_loss_weight: float = 1e-4

  def __post_init__(self):
    _check_positive("him", top_n=self.top_n, gru_units=self.gru_units,
                    num_groups=self.num_groups, group_dim=self.group_dim,
                    num_negative_users=self.num_negative_users)
    if self.group_loss_weight < 0:
      raise ValueError(f"him.group_loss_weight must be >= 0. Received: {self.group_loss_weight}")
    days = list(self.session_days)
    if any(d <= 0 for d in days) or days != sorted(set(days)):
      raise ValueError("him.session_days must be positive and strictly ascending. "
                       f"Received: {days}")

  @property
  def num_sessions(self) -> int:
    """T: one session per boundary, plus one for everything older."""
    return len(self.session_days) + 1


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """Everything a Trainer run needs, validated.

  Attributes:
    tasks: task names (keys of `features.TASK_LABELS`).
    task_loss_weights: loss weight per task (missing tasks weigh 1).
    fusion: how task outputs become the ranking score: "product" multiplies
      `out_k ** w_k`, "sum" adds `w_k * out_k` (watch time enters as log1p s).
    fusion_weights: exponent/weight per task in the fusion (missing: 1).
    embedding_dim: width of every embedding table.
    batch_size, train_steps, eval_steps, learning_rate, seed: training loop.
    shuffle_buffer: records in the training input's shuffle buffer. The
      ingestion writes each user's rows together, in time order; TFXIO's
      default buffer (10,000 rows, ~118 MovieLens users at a time) then
      trains on a sliding window of users, and one epoch ends on the last
      users of the file. 100,000 holds all of MovieLens' or 100k generated
      rows' train split (~1 kB each).
  """
  tasks: Tuple[str, ...] = (features.TASK_VALID, features.TASK_WATCH, features.TASK_LIKE)
  task_loss_weights: Mapping[str, float] = dataclasses.field(default_factory=dict)
  fusion: str = "product"
  fusion_weights: Mapping[str, float] = dataclasses.field(default_factory=dict)
  embedding_dim: int = 16
  batch_size: int = 256
  train_steps: int = 300
  eval_steps: int = 50
  learning_rate: float = 1e-3
  seed: int = 42
  shuffle_buffer: int = 100_000
  features: FeatureConfig = FeatureConfig()
  ple: PLEConfig = PLEConfig()
  duia: DUIAConfig = DUIAConfig()
  him: HIMConfig = HIMConfig()

  def __post_init__(self):
    if not self.tasks:
      raise ValueError("tasks must name at least one task.")
    features.task_names(list(self.tasks))
    for name, weights in (("task_loss_weights", self.task_loss_weights),
                          ("fusion_weights", self.fusion_weights)):
      for task in weights:
        if task not in self.tasks:
          raise ValueError(f"{name} names {task!r}, which is not in tasks {list(self.tasks)}")
    if self.fusion not in FUSIONS:
      raise ValueError(f"fusion must be one of {FUSIONS}. Received: {self.fusion!r}")
    _check_positive("training", embedding_dim=self.embedding_dim, batch_size=self.batch_size,
                    train_steps=self.train_steps, eval_steps=self.eval_steps,
                    learning_rate=self.learning_rate, shuffle_buffer=self.shuffle_buffer)

  def loss_weight(self, task: str) -> float:
    return float(self.task_loss_weights.get(task, 1.0))

  def fusion_weight(self, task: str) -> float:
    return float(self.fusion_weights.get(task, 1.0))

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> "TrainingConfig":
    return from_dict(cls, json.loads(text))

  def override(self, overrides: Mapping[str, Any]) -> "TrainingConfig":
    """Returns a copy with nested overrides applied ({"ple": {"num_levels": 1}})."""
    merged = _deep_merge(dataclasses.asdict(self), overrides, "training")
    return from_dict(TrainingConfig, merged)


def _deep_merge(base: Dict[str, Any], overrides: Mapping[str, Any], where: str) -> Dict[str, Any]:
  out = dict(base)
  for key, value in overrides.items():
    if key not in base:
      raise ValueError(f"Unknown config key {where}.{key}; known: {sorted(base)}")
    if isinstance(base[key], dict) and isinstance(value, Mapping) and key not in (
        "task_loss_weights", "fusion_weights"):
      out[key] = _deep_merge(base[key], value, f"{where}.{key}")
    else:
      out[key] = value
  return out


def from_dict(cls: Type[T], raw: Mapping[str, Any]) -> T:
  """Builds a config dataclass from a dict, rejecting unknown keys."""
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = set(raw) - set(fields)
  if unknown:
    raise ValueError(f"Unknown {cls.__name__} keys {sorted(unknown)}; known: {sorted(fields)}")
  kwargs = {}
  for name, value in raw.items():
    field_type = fields[name].type
    if dataclasses.is_dataclass(field_type):
      value = from_dict(field_type, value)
    elif isinstance(value, list):
      value = tuple(value)
    kwargs[name] = value
  return cls(**kwargs)


PRESETS: Dict[str, TrainingConfig] = {
    # Small-data defaults that train in seconds on 2 cores.
    "small": TrainingConfig(),
    # Tiny sizes for smoke tests and the end-to-end test.
    "tiny": TrainingConfig(
        embedding_dim=8, batch_size=128, train_steps=60, eval_steps=10,
        features=FeatureConfig(user_id_buckets=2000, item_id_buckets=2000,
                               author_id_buckets=500, history_length=20),
        ple=PLEConfig(expert_units=(16,), tower_units=(8,))),
    # Rating data has no watch time: the task list is configuration.
    "movielens": TrainingConfig(tasks=(features.TASK_VALID, features.TASK_LIKE)),
}


def preset(name: str, overrides: Mapping[str, Any] = None) -> TrainingConfig:
  """A named preset, optionally with nested overrides."""
  if name not in PRESETS:
    raise ValueError(f"Unknown preset {name!r}; known: {sorted(PRESETS)}")
  config = PRESETS[name]
  return config.override(overrides) if overrides else config
