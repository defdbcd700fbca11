"""The harness's results as Markdown: DUIA Table 5, the uplift over PLE, Table 7/9.

Every number printed comes from the results JSON (`harness.assemble`), rounded
for display: AUC and uplifts to 4 decimals, hit rates to 2.
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence


def fmt_value(value: Optional[float], std: Optional[float] = None) -> str:
  """"0.7841", "0.7841 ± 0.0022", or "-" when missing."""
  if value is None:
    return "-"
  return f"{value:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def fmt_diff(value: Optional[float], std: Optional[float] = None,
             lower: Optional[float] = None, upper: Optional[float] = None) -> str:
  """"+0.0025 ± 0.0008 [+0.0010, +0.0040]" with the parts that exist, or "-"."""
  if value is None:
    return "-"
  text = f"{value:+.4f}"
  if std is not None:
    text += f" ± {std:.4f}"
  if lower is not None and upper is not None:
    text += f" [{lower:+.4f}, {upper:+.4f}]"
  return text


def fmt_rate(value: Optional[float]) -> str:
  return "-" if value is None else f"{value:.2f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
  """A Markdown table's lines (header, rule, one line per row)."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return lines


def _seed_count(results: Mapping[str, Any]) -> int:
  return results["spec"]["seeds"]


def auc_table(results: Mapping[str, Any]) -> List[str]:
  """DUIA Table 5's shape: one row per variant, AUC mean ± std per slice."""
  slices = results["slices"]
  rows = []
  for variant, summary in results["variants"].items():
    rows.append([variant] + [fmt_value(summary.get(s, {}).get("mean"), summary.get(s, {}).get("std"))
                             for s in slices.values()])
  return markdown_table(["variant"] + list(slices), rows)


def _uplift_rows(results: Mapping[str, Any], cell) -> List[str]:
  """One row per non-PLE variant, `cell(uplift summary)` per slice ("-" when absent)."""
  slices = results["slices"]
  rows = []
  for variant, summary in results["variants"].items():
    if variant == "ple":
      continue
    ups = [(summary.get(s) or {}).get("uplift") for s in slices.values()]
    rows.append([variant] + [cell(up) if up else "-" for up in ups])
  return markdown_table(["variant"] + list(slices), rows)


def uplift_table(results: Mapping[str, Any]) -> List[str]:
  """Variant - PLE of the same seed: mean ± std over seeds [pooled 95% interval]."""
  return _uplift_rows(results, lambda up: fmt_diff(
      up["mean"], up["std"], up["interval"]["lower"], up["interval"]["upper"]))


def significance_table(results: Mapping[str, Any]) -> List[str]:
  """Per variant and slice: seeds whose own interval is above / below zero."""
  return _uplift_rows(results, lambda up: (
      f"{up['interval']['seeds_above_zero']} / {up['interval']['seeds_below_zero']} of "
      f"{up['interval']['seeds_with_interval']}"))


def sweep_table(results: Mapping[str, Any]) -> List[str]:
  """DUIA Table 7 (AUC by N1) with Table 9's level-1 hit rate, one seed."""
  slices = results["slices"]
  low, high = slices["low-active"], slices["high-active"]
  overall = slices["overall"]
  rows = []
  for sweep in results["sweeps"].values():
    for point in sweep["points"]:
      up = point["uplift"]
      rows.append([sweep["label"], str(point["n1"]),
                   fmt_value(point["auc"].get(low)), fmt_value(point["auc"].get(high)),
                   fmt_value(point["auc"].get(overall)),
                   _fmt_point_diff(up.get(low)), _fmt_point_diff(up.get(high)),
                   fmt_rate(point["hit_rate"])])
  return markdown_table(["sweep", "N1", "low-active", "high-active", "overall", "low - PLE [95% CI]",
                 "high - PLE [95% CI]", "level-1 hit rate"], rows)


def decile_table(results: Mapping[str, Any]) -> List[str]:
  """AUC minus PLE by user-activity decile: mean over seeds [pooled 95% interval]."""
  deciles = results["deciles"]
  header = ["variant"] + [name.split("=", 1)[1] for name in deciles["slices"]]
  rows = [["ple (AUC)"] + [fmt_value((results["variants"]["ple"].get(s) or {}).get("mean"))
                           for s in deciles["slices"]]]
  for variant, summary in results["variants"].items():
    if variant == "ple":
      continue
    ups = [(summary.get(s) or {}).get("uplift") for s in deciles["slices"]]
    rows.append([variant] + [fmt_diff(up["mean"], None, up["interval"]["lower"],
                                      up["interval"]["upper"]) if up else "-" for up in ups])
  return markdown_table(header, rows)


def _fmt_point_diff(diff: Optional[Mapping[str, Any]]) -> str:
  if not diff:
    return "-"
  return fmt_diff(diff["value"], None, diff.get("lower"), diff.get("upper"))


def to_markdown(results: Mapping[str, Any]) -> str:
  """The whole report."""
  training = results["training"]
  rows = results["slice_rows"]
  seeds = _seed_count(results)
  ci = results["ci"]
  metric = results["metric"]
  lines = [
      f"# DUIA ablation on {results['dataset']['name']}",
      "",
      f"`{metric}` on the eval split, evaluated with TFMA (AUC over "
      f"{results['spec']['auc_thresholds']:,} thresholds). {training['train_rows']:,} train "
      f"rows; every model trained {training['steps']} steps of {training['batch_size']} "
      f"(~{training['epochs']} epochs) with seeds 0..{seeds - 1}; eval rows: "
      + ", ".join(f"{label} {rows[name]:,}" for label, name in results["slices"].items()
                  if name in rows) + ".",
      "",
      f"## AUC, mean ± std over {seeds} seed(s) (DUIA Table 5)",
      "",
      *auc_table(results),
      "",
      "## Uplift over PLE of the same seed: mean ± std over seeds [95% CI]",
      "",
      *uplift_table(results),
      "",
      f"The interval is TFMA's ({ci['method']}, {ci['replicates']} replicates over the eval "
      "rows, paired: both models score the same resampled rows) for each seed's diff, its "
      "bounds averaged over seeds. Seeds whose own interval lies above / below zero:",
      "",
      *significance_table(results),
  ]
  if results["sweeps"]:
    seed = next(iter(results["sweeps"].values()))["seed"]
    lines += [
        "",
        f"## Level-1 centers N1 (DUIA Table 7) and their hit rate on eval data (Table 9), "
        f"seed {seed}",
        "",
        *sweep_table(results),
        "",
        "Hit rate: share of the memory's level-1 centers that at least one eval row is "
        "assigned to. " + "; ".join(
            f"{s['label']}: variant `{s['variant']}`, `duia.{s['key']}`, memory `{s['memory']}`"
            for s in results["sweeps"].values()) + ".",
    ]
  if results.get("deciles"):
    rows_by_slice = results["slice_rows"]
    lines += [
        "",
        "## By user-activity decile: AUC of PLE, and variant - PLE [95% CI]",
        "",
        *decile_table(results),
        "",
        "Deciles of the eval rows' history length at the exposure (valid consumptions "
        "before it; columns are `d<k> <lo>-<hi>` lengths, equal deciles merged). Eval rows: "
        + ", ".join(f"{name.split('=', 1)[1]} {rows_by_slice.get(name, 0):,}"
                    for name in results["deciles"]["slices"]) + ".",
    ]
  timing = results.get("timing")
  if timing:
    lines += ["", "Wall time (s): " + ", ".join(f"{k[:-2].replace('_', ' ')} {v:,.0f}"
                                                for k, v in timing.items()) + "."]
  return "\n".join(lines) + "\n"


def parse_tables(markdown: str) -> List[List[Dict[str, str]]]:
  """The Markdown's pipe tables as lists of {header: cell} rows (for checks)."""
  tables, current, header = [], None, None
  for line in markdown.splitlines():
    if not line.startswith("|"):
      current = header = None
      continue
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if header is None:
      header, current = cells, []
      tables.append(current)
    elif all(set(c) <= set("-:") for c in cells):
      continue
    else:
      current.append(dict(zip(header, cells)))
  return tables
