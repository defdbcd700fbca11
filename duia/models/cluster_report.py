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
  parts = model.embedding(batch)
  v_user, v_item = model.aux(tf.concat([parts["user"], parts["behaviour"]], axis=-1),
                             parts["item_core"])
  normalize = model.duia_config.normalize
  out = {}
  for name in model.memories():
    vectors = v_user if name.startswith("user") else v_item
    out[name] = tf.math.l2_normalize(vectors, axis=-1) if normalize else vectors
  return out


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

