"""PNG plots of the harness's results (matplotlib, Agg: no display needed).

- `auc_by_slice`: AUC per slice, one marker per variant (mean over seeds),
  error bars from TFMA's 95% intervals (bounds averaged over seeds).
- `n1_sweep`: level-1 hit rate vs N1 (DUIA Table 9) and AUC on low- and
  high-active users vs N1 (Table 7), PLE of the same seed as reference lines.
- `auc_by_decile`: AUC by user-activity decile per variant (left) and each
  variant's paired difference to PLE with its 95% interval (right).
"""

from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window
from matplotlib import pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top


def auc_by_slice(results: Mapping[str, Any], path: str) -> None:
  """Writes the AUC-by-slice plot of every variant to `path`."""
  slices = results["slices"]
  variants = results["variants"]
  fig, ax = plt.subplots(figsize=(1.6 * len(slices) + 2, 4.2))
  width = 0.8 / max(len(variants), 1)
  for i, (variant, summary) in enumerate(variants.items()):
    xs, ys, low, high = [], [], [], []
    for j, name in enumerate(slices.values()):
      entry = summary.get(name)
      if not entry:
        continue
      interval = entry["interval"]
      xs.append(j - 0.4 + width * (i + 0.5))
      ys.append(entry["mean"])
      low.append(max(entry["mean"] - interval["lower"], 0) if interval["lower"] is not None else 0)
      high.append(max(interval["upper"] - entry["mean"], 0) if interval["upper"] is not None else 0)
    ax.errorbar(xs, ys, yerr=[low, high], fmt="o", capsize=3, label=variant)
  ax.set_xticks(range(len(slices)))
  ax.set_xticklabels(list(slices))
  ax.set_ylabel(results["metric"])
  ax.set_title(f"{results['dataset']['name']}: mean over {results['spec']['seeds']} seed(s), "
               f"TFMA 95% CI ({results['ci']['method']})")
  ax.grid(axis="y", alpha=0.3)
  ax.legend(fontsize="small", ncol=min(len(variants), 5))
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def n1_sweep(results: Mapping[str, Any], path: str) -> None:
  """Writes hit rate vs N1 and AUC (low/high-active) vs N1 to `path`."""
  slices = results["slices"]
  low, high = slices["low-active"], slices["high-active"]
  fig, (hit_ax, auc_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
  for key, sweep in results["sweeps"].items():
    points = sorted(sweep["points"], key=lambda p: p["n1"])
    n1 = [p["n1"] for p in points]
    hit_ax.plot(n1, [p["hit_rate"] if p["hit_rate"] is not None else float("nan")
                     for p in points], "o-", label=sweep["label"])
    line, = auc_ax.plot(n1, [p["auc"].get(low, float("nan")) for p in points], "o-",
                        label=f"{sweep['label']} low-active")
    auc_ax.plot(n1, [p["auc"].get(high, float("nan")) for p in points], "s--",
                color=line.get_color(), label=f"{sweep['label']} high-active")
  baseline = next(iter(results["sweeps"].values()))["baseline"]["auc"]
  for name, style in ((low, "-"), (high, "--")):
    if name in baseline:
      auc_ax.axhline(baseline[name], color="grey", linestyle=style, linewidth=1,
                     label=f"PLE {name.split('=')[-1]}")
  n1_values = sorted({p["n1"] for s in results["sweeps"].values() for p in s["points"]})
  for ax in (hit_ax, auc_ax):
    ax.set_xscale("log", base=2)
    ax.set_xticks(n1_values, [str(n) for n in n1_values])
    ax.minorticks_off()
    ax.set_xlabel("level-1 centers N1")
    ax.grid(alpha=0.3)
  hit_ax.set_ylabel("level-1 hit rate on eval data")
  hit_ax.set_ylim(0, 1.05)
  hit_ax.set_title("DUIA Table 9: hit rate vs N1")
  auc_ax.set_ylabel(results["metric"])
  auc_ax.set_title("DUIA Table 7: AUC vs N1")
  hit_ax.legend(fontsize="small")
  auc_ax.legend(fontsize="small")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def auc_by_decile(results: Mapping[str, Any], path: str) -> None:
  """Writes AUC, and AUC - PLE with intervals, by user-activity decile to `path`."""
  names = results["deciles"]["slices"]
  labels = [n.split("=", 1)[1] for n in names]
  xs = list(range(len(names)))
  fig, (auc_ax, diff_ax) = plt.subplots(1, 2, figsize=(13, 4.4))
  variants = results["variants"]
  width = 0.8 / max(len(variants) - 1, 1)
  for i, (variant, summary) in enumerate(variants.items()):
    auc_ax.plot(xs, [(summary.get(n) or {}).get("mean", float("nan")) for n in names],
                "o-", label=variant)
    if variant == "ple":
      continue
    offset = -0.4 + width * (i - 0.5)
    ys, low, high, at = [], [], [], []
    for x, name in zip(xs, names):
      up = (summary.get(name) or {}).get("uplift")
      if not up:
        continue
      interval = up["interval"]
      at.append(x + offset)
      ys.append(up["mean"])
      low.append(max(up["mean"] - interval["lower"], 0) if interval["lower"] is not None else 0)
      high.append(max(interval["upper"] - up["mean"], 0) if interval["upper"] is not None else 0)
    diff_ax.errorbar(at, ys, yerr=[low, high], fmt="o", capsize=3, label=variant,
                     color=auc_ax.lines[-1].get_color())
  diff_ax.axhline(0.0, color="grey", linewidth=1)
  for ax in (auc_ax, diff_ax):
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, rotation=30, fontsize="small")
    ax.set_xlabel("user-activity decile (history length at the exposure)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
  auc_ax.set_ylabel(results["metric"])
  auc_ax.set_title(f"{results['dataset']['name']}: AUC by activity decile")
  diff_ax.set_ylabel("variant - PLE (paired, mean over seeds)")
  diff_ax.set_title(f"TFMA 95% CI ({results['ci']['method']}), bounds averaged over seeds")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
