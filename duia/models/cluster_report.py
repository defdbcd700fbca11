"""Cluster report: how the DUIA memories are used, measured on eval data.

Per memory (user GHCA or flat memory, item GHCA): the fraction of level-1
centers hit by eval queries (DUIA Table 9), the distribution of eval cluster
sizes, the centers that no training query ever reached (dead), and the
updates training skipped for NaN/Inf values. Saved as JSON next to the model
and printed as a table.
"""

import json
from typing import Any, Dict, Iterable

import numpy as np
import tensorflow as tf

REPORT_FILE = "cluster_report.json"


def _queries(model, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """Each memory's eval queries for one transformed batch."""
  return model.queries(model.embedding(batch))


def build_report(model, batches: Iterable[Dict[str, tf.Tensor]]) -> Dict[str, Any]:
  """Assigns the eval queries of `batches` to every memory and summarises.

  Args:
    model: a `DUIARanker`.
    batches: transformed feature dicts (labels may be present; they are ignored).

  Returns:
    {memory name: {level1_centers, eval_rows, level1_hit_fraction,
     cluster_size_percentiles, dead_centers_after_training,
     nonfinite_updates_skipped}}.
  """
  memories = model.memories()
  counts = {name: np.zeros(layer.num_level1, np.int64) for name, layer in memories.items()}
  for batch in batches:
    for name, queries in _queries(model, batch).items():
      level1 = memories[name].assign(queries)[0].numpy()
      counts[name] += np.bincount(level1, minlength=memories[name].num_level1)
  report = {}
  for name, layer in memories.items():
    sizes = counts[name]
    report[name] = {
        "level1_centers": int(layer.num_level1),
        "children_per_center": int(layer.num_children) if layer.hierarchical else 0,
        "eval_rows": int(sizes.sum()),
        "level1_hit_fraction": float((sizes > 0).mean()),
        "cluster_size_percentiles": {
            f"p{p}": float(np.percentile(sizes, p)) for p in (0, 25, 50, 75, 90, 100)},
        "largest_cluster_share": float(sizes.max() / max(sizes.sum(), 1)),
        "dead_centers_after_training": int(layer.dead_centers().numpy().sum()),
        "nonfinite_updates_skipped": int(layer.nonfinite_skipped.numpy()),
    }
  return report


def format_report(report: Dict[str, Any]) -> str:
  """A fixed-width table of the report."""
  lines = [f"{'memory':<10} {'N1':>5} {'eval rows':>9} {'L1 hit':>7} {'median':>7} "
           f"{'largest':>8} {'dead':>5} {'NaN/Inf skipped':>15}"]
  for name, r in report.items():
    lines.append(f"{name:<10} {r['level1_centers']:>5} {r['eval_rows']:>9} "
                 f"{r['level1_hit_fraction']:>7.2f} "
                 f"{r['cluster_size_percentiles']['p50']:>7.1f} "
                 f"{r['largest_cluster_share']:>8.2f} {r['dead_centers_after_training']:>5} "
                 f"{r.get('nonfinite_updates_skipped', 0):>15}")
  return "\n".join(lines)


def write_report(report: Dict[str, Any], path: str) -> None:
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(json.dumps(report, indent=1, sort_keys=True))



class UsageTrace(tf.keras.callbacks.Callback):
  """Records how the memories are used while training (every `every` batches).

  Per memory and level: the fraction of centres that sampled training queries
  reached since the previous record (the hit rate over the window), and how far
  the centres moved over it (mean L2 norm of the change), so one can see
  whether the memories are still settling when training ends.

  Args:
    memories: name -> `GHCAMemory` (e.g. `DUIARanker.memories()`).
    every: batches between records.

  Attributes:
    records: list of {"step", memory name: {"level1_hit", "level1_moved", ...}}.
  """

  def __init__(self, memories: Dict[str, Any], every: int = 25):
    super().__init__()
    self.memories = memories
    self.every = int(every)
    self.records = []
    self._last = None
    self._step = 0

  def _snapshot(self):
    out = {}
    for name, memory in self.memories.items():
      levels = [(memory.level1_centers, memory.level1_hits)]
      if memory.hierarchical:
        levels.append((memory.level2_centers, memory.level2_hits))
      out[name] = [(c.numpy().copy(), h.numpy().copy()) for c, h in levels]
    return out

  def on_train_batch_end(self, batch, logs=None):
    self._step += 1
    if self._step % self.every and self._step != 1:
      return
    now = self._snapshot()
    if self._last is not None:
      record = {"step": self._step}
      for name, levels in now.items():
        entry = {}
        for level, ((centers, hits), (old_centers, old_hits)) in enumerate(
            zip(levels, self._last[name]), start=1):
          entry[f"level{level}_hit"] = round(float(((hits - old_hits) > 0).mean()), 3)
          entry[f"level{level}_moved"] = round(float(
              np.linalg.norm(centers - old_centers, axis=-1).mean()), 4)
        record[name] = entry
      self.records.append(record)
    self._last = now
