"""The pushed model beside a PLE baseline trained on the same data, with paired intervals.

What `duia demo` (and so `make run`) ends with: PLE is trained with the
quality harness's code (`training.train_and_export`: the Trainer's steps, no
warm start) on the run's own Transform output, and one TFMA run evaluates
both models on the same raw eval examples with the pushed model as the
candidate and PLE as the baseline, so each slice's `candidate - PLE` AUC
comes with TFMA's paired confidence interval (jackknife by default).
"""

import os
from typing import Any, Dict, List, Sequence

from duia.models import features
from duia.pipeline import configs
from duia.quality import tables
from duia.quality import tfma_eval
from duia.quality import training
from duia.serving import model_loader

BASELINE = "ple"
TASK = features.TASK_VALID
METRIC = f"{TASK}/auc"
# (label, TFMA slice name), in the order the table shows them.
SLICES = (
    ("overall", "overall"),
    ("low-active users", f"{features.USER_ACTIVITY}={features.LOW_ACTIVE}"),
    ("high-active users", f"{features.USER_ACTIVITY}={features.HIGH_ACTIVE}"),
    ("tail items", f"{features.ITEM_POPULARITY}={features.TAIL_ITEM}"),
    ("head items", f"{features.ITEM_POPULARITY}={features.HEAD_ITEM}"),
)


def compare_with_ple(config: configs.PipelineConfig, work_dir: str,
                     ci_method: str = "jackknife") -> List[Dict[str, Any]]:
  """Trains PLE on the run's Transform output and evaluates it beside the pushed model.

  Args:
    config: the finished run's config (its pushed model is the candidate).
    work_dir: where the PLE model and TFMA's output go.
    ci_method: a key of `tfma_eval.CI_METHODS`.

  Returns:
    One row per slice of `SLICES`: {"slice", "rows", "baseline", "candidate",
    "diff", "lower", "upper"} (AUC of `TASK`; bounds None without an interval).

  Raises:
    ValueError: the pushed model is PLE itself (nothing to compare).
  """
  if config.training.duia.variant == BASELINE:
    raise ValueError("The run trained PLE; compare a DUIA variant with it "
                     "(e.g. --variant duia).")
  data = training.TransformedData.from_metadata(config.metadata_path)
  baseline = training.train_and_export(
      config.training.override({"duia": {"variant": BASELINE}}), data,
      os.path.join(work_dir, BASELINE))
  _, pushed = model_loader.latest_version(config.serving_model_dir)
  candidate = config.training.duia.variant
  output = os.path.join(work_dir, "tfma")
  tfma_eval.run({BASELINE: baseline.model_dir, candidate: pushed}, baseline=BASELINE,
                tasks=[TASK], data_location=data.raw_eval_pattern(), output_path=output,
                ci_method=ci_method, beam_args=config.beam_pipeline_args)
  results = tfma_eval.load(output)
  return [_row(label, name, results[BASELINE], results[candidate]) for label, name in SLICES
          if name in results[BASELINE]["metrics"]]


def _row(label: str, name: str, baseline: Dict[str, Any], candidate: Dict[str, Any]):
  diff = candidate["diff"].get(name, {}).get(METRIC, {})
  return {"slice": label,
          "rows": int(baseline["metrics"][name][f"{TASK}/example_count"]["value"]),
          "baseline": baseline["metrics"][name][METRIC]["value"],
          "candidate": candidate["metrics"][name][METRIC]["value"],
          "diff": diff.get("value"), "lower": diff.get("lower"), "upper": diff.get("upper")}


def format_rows(rows: Sequence[Dict[str, Any]], candidate: str) -> str:
  """A fixed-width table of `compare_with_ple`'s rows."""
  return "\n".join(tables.markdown_table(
      ["slice", "eval rows", f"{BASELINE} AUC", f"{candidate} AUC",
       f"{candidate} - {BASELINE} [95% CI]"],
      [[r["slice"], f"{r['rows']:,}", tables.fmt_value(r["baseline"]),
        tables.fmt_value(r["candidate"]),
        tables.fmt_diff(r["diff"], None, r["lower"], r["upper"])
        if r["diff"] is not None else "-"] for r in rows]))
