"""What `duia bench quality` runs: the spec, its slices, sweeps and output names."""

import dataclasses
from typing import Any, List, Mapping, Optional, Tuple

from duia.models import config as model_config
from duia.models import features
from duia.quality import data as data_lib
from duia.quality import tfma_eval

RESULTS_JSON = "quality.json"
REPORT_MD = "quality.md"
AUC_PLOT = "auc_by_slice.png"
SWEEP_PLOT = "n1_sweep.png"
DECILE_PLOT = "auc_by_activity_decile.png"
TASK = features.TASK_VALID
METRIC = f"{TASK}/auc"
OVERALL = "overall"
# DUIA Table 5's columns (low/high-active users) plus the item-side slices.
SLICES = (
    ("low-active", f"{features.USER_ACTIVITY}=low"),
    ("high-active", f"{features.USER_ACTIVITY}=high"),
    ("tail items", f"{features.ITEM_POPULARITY}=tail"),
    ("head items", f"{features.ITEM_POPULARITY}=head"),
    ("overall", OVERALL),
)
# What TFMA slices by: just what the tables show (no cross slice), since the
# interval computation's cost grows with every slice.
TFMA_SLICES = ((), (features.USER_ACTIVITY,), (features.ITEM_POPULARITY,))


@dataclasses.dataclass(frozen=True)
class Sweep:
  """One N1 sweep: a variant and the config key holding its level-1 center count.

  Attributes:
    label: row label in the tables ("UIE", "UHSE").
    variant: the model variant trained at each N1.
    key: the `duia` config field set to N1.
    memory: the cluster-report memory whose level-1 hit rate is reported.
  """
  label: str
  variant: str
  key: str
  memory: str


SWEEPS = {
    # UIE as the "uie" variant builds it: UIE-KDD's flat memory of N centers.
    "uie": Sweep("UIE (flat)", "uie", "flat_clusters", "user_flat"),
    # DUIA's own UIE: the user GHCA's level-1 centers (UIE + UPBE variant).
    "uie_ghca": Sweep("UIE (GHCA)", "uie_upbe", "user_level1", "user_ghca"),
    # UHSE: the item GHCA's level-1 centers, in the full DUIA variant.
    "uhse": Sweep("UHSE", "duia", "item_level1", "item_ghca"),
}
CI_METHODS = tuple(tfma_eval.CI_METHODS)


@dataclasses.dataclass(frozen=True)
class QualitySpec:
  """What `duia bench quality` runs.

  Attributes:
    data: `movielens-100k`, `generated` or a mapping config `.json` path.
    data_root: folder of the raw logs (see `duia.quality.data`).
    out_dir: output folder; default runs/quality/<data name>/.
    rows: exposures to generate for `generated`.
    seeds: training seeds 0 .. seeds-1 (same for every variant).
    variants: variants of the main table; PLE is always trained (the baseline).
    n1_values: level-1 center counts of the sweep (empty: no sweep).
    sweeps: keys of SWEEPS.
    sweep_seed: the one seed of the sweep.
    epochs: training length in passes over the train split (ignored if `steps`).
    steps: training steps per model, instead of `epochs`.
    preset: training preset (default by mapping, as `duia run`).
    overrides: nested training overrides for every model (as `--set`).
    ci_method: TFMA interval method, "jackknife" or "bootstrap".
    eval_tasks: the tasks TFMA evaluates (all of each one's metrics); the
      tables need only the first task, and every further binary task about
      doubles TFMA's time.
    auc_thresholds: `num_thresholds` of TFMA's AUC (TFMA's default 10,000;
      smaller is faster and coarser, for tests).
    sparsify: keep only the first k (1-10) training interactions of a seeded
      `sparsify_share` of the users (the mapping's `sparsify`), their eval
      rows unchanged: long-tailed data from a dense log; None: as logged.
    sparsify_share: the share of users sparsified.
    activity_exponent: generated data only: 0 (log-normal activity) or the
      Zipf exponent of a long activity tail (`GeneratorConfig.activity_exponent`).
    activity_deciles: also slice by decile of user activity (history length
      at the exposure; `activity_deciles`), for the AUC-by-decile table and
      plot; each slice adds to TFMA's time.
  """
  data: str = data_lib.GENERATED
  data_root: Optional[str] = None
  out_dir: Optional[str] = None
  rows: int = 100_000
  seeds: int = 3
  variants: Tuple[str, ...] = model_config.VARIANTS
  n1_values: Tuple[int, ...] = (8, 16, 32, 64)
  sweeps: Tuple[str, ...] = ("uie", "uhse")
  sweep_seed: int = 0
  epochs: float = 1.0
  steps: Optional[int] = None
  preset: Optional[str] = None
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  ci_method: str = "jackknife"
  eval_tasks: Tuple[str, ...] = (TASK,)
  auc_thresholds: int = tfma_eval.AUC_THRESHOLDS
  sparsify: Optional[int] = None
  sparsify_share: float = 0.3
  activity_exponent: float = 0.0
  activity_deciles: bool = True

  def __post_init__(self):
    if self.seeds < 1:
      raise ValueError(f"seeds must be >= 1. Received: {self.seeds}")
    unknown = [v for v in self.variants if v not in model_config.VARIANTS]
    if unknown or not self.variants:
      raise ValueError(f"variants must be a non-empty subset of {model_config.VARIANTS}. "
                       f"Received: {list(self.variants)}")
    unknown = [s for s in self.sweeps if s not in SWEEPS]
    if unknown:
      raise ValueError(f"Unknown sweeps {unknown}; known: {sorted(SWEEPS)}")
    if any(n < 1 for n in self.n1_values):
      raise ValueError(f"n1 values must be >= 1. Received: {list(self.n1_values)}")
    if self.sweep_seed < 0:
      raise ValueError(f"sweep_seed must be >= 0. Received: {self.sweep_seed}")
    if self.steps is not None and self.steps < 1:
      raise ValueError(f"steps must be >= 1. Received: {self.steps}")
    if self.epochs <= 0:
      raise ValueError(f"epochs must be > 0. Received: {self.epochs}")
    if not self.eval_tasks or self.eval_tasks[0] != TASK:
      raise ValueError(f"eval_tasks must start with {TASK!r} (the tables' task). "
                       f"Received: {list(self.eval_tasks)}")
    if self.auc_thresholds < 2:
      raise ValueError(f"auc_thresholds must be >= 2. Received: {self.auc_thresholds}")
    if self.sparsify is not None and not 1 <= self.sparsify <= 10:
      raise ValueError(f"sparsify must be in [1, 10]. Received: {self.sparsify}")
    if not 0 < self.sparsify_share <= 1:
      raise ValueError(f"sparsify_share must be in (0, 1]. Received: {self.sparsify_share}")
    if self.activity_exponent < 0:
      raise ValueError(f"activity_exponent must be >= 0. Received: {self.activity_exponent}")
    if self.ci_method not in CI_METHODS:
      raise ValueError(f"ci_method must be one of {CI_METHODS}. Received: {self.ci_method!r}")

  def main_variants(self) -> List[str]:
    """PLE first (the baseline), then the requested variants in VARIANTS order."""
    return ["ple"] + [v for v in model_config.VARIANTS if v in self.variants and v != "ple"]
