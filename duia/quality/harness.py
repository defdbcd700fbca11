"""The quality harness: every variant x seed, the N1 sweep, one TFMA run per seed.

1. The real pipeline runs up to Transform once per dataset (cache on), so all
   models see the same split and the same Transform graph.
2. For each seed, PLE and every other variant are trained with the Trainer's
   code (`training.train_and_export`) and exported with the serving signatures.
3. The N1 sweep (DUIA Table 7; level-1 hit rate, Table 9) trains one model per
   (sweep, N1) at `sweep_seed`. A sweep point whose config equals an already
   trained model (e.g. the default N1) reuses it.
4. One TFMA run per seed evaluates all of that seed's models (main table and
   sweep) on the raw eval split, that seed's PLE as the baseline: values,
   diffs vs PLE and 95% intervals for every metric and slice of the
   pipeline's EvalConfig (`tfma_eval`).
   With `activity_deciles`, TFMA also slices by decile of the history length
   at the exposure (`activity_deciles`), for the AUC-by-activity plot.
5. `quality.json`, `quality.md` (`tables`) and the PNG plots (`plots`) go to
   the output folder.
"""

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Set, Tuple

from duia.models import config as model_config
from duia.pipeline import configs
from duia.pipeline import local_runner
from duia.pipeline import runtime_config
from duia.quality import activity_deciles
from duia.quality import data as data_lib
from duia.quality import plots
from duia.quality import tables
from duia.quality import tfma_eval
from duia.quality import training
from duia.quality import uplift
from duia.quality.spec import (  # noqa: F401  (re-exported: harness.QualitySpec, ...)
    AUC_PLOT, CI_METHODS, DECILE_PLOT, METRIC, OVERALL, REPORT_MD, RESULTS_JSON, SLICES,
    SWEEP_PLOT,
    SWEEPS, TASK, TFMA_SLICES, QualitySpec, Sweep)


def run_name(variant: str, seed: int, sweep: Optional[str] = None, n1: Optional[int] = None) -> str:
  if sweep is None:
    return f"{variant}_s{seed}"
  return f"{sweep}_n{n1}_s{seed}"


class _Runs:
  """Trained models by name, reused when a later request has the same config."""

  def __init__(self, out_dir: str, data: training.TransformedData, say: Callable[[str], None],
               from_disk: bool = False, resume: bool = False,
               slices: Sequence[Any] = TFMA_SLICES):
    self.out_dir = out_dir
    self.slices = tuple(slices)
    self.data = data
    self.say = say
    # Rebuild the results from the models and TFMA outputs already on disk.
    self.from_disk = from_disk
    # Reuse the finished models and TFMA outputs on disk; compute the rest.
    self.resume = resume
    self.runs: Dict[str, Dict[str, Any]] = {}
    self.trained_now: Set[str] = set()
    self._by_config: Dict[str, str] = {}

  def train(self, name: str, config: model_config.TrainingConfig, **info) -> str:
    """Trains `config` as `name` unless an identical config was trained; returns the run name."""
    key = config.to_json()
    if key in self._by_config:
      return self._by_config[key]
    model_dir = os.path.join(self.out_dir, "models", name)
    trained = None
    if self.from_disk:
      trained = training.TrainedModel.from_disk(model_dir)
    elif self.resume:
      trained = training.finished_model(model_dir, config)
      if trained:
        self.say(f"reusing {name}: finished with the same config in {model_dir}")
    if trained is None:
      self.say(f"training {name} ({config.train_steps} steps)")
      trained = training.train_and_export(config, self.data, model_dir)
      self.trained_now.add(name)
      self.say(f"    {trained.train_s}s train, {trained.export_s}s export"
               + (f"; level-1 hit {trained.hit_rates()}" if trained.clusters else ""))
    self.runs[name] = dict(
        info, name=name, seed=config.seed, variant=config.duia.variant,
        model_dir=model_dir, train_s=trained.train_s, export_s=trained.export_s,
        hit_rate=trained.hit_rates(), clusters=trained.clusters,
        metrics={}, diff_vs_ple={}, tfma_run=None)
    self._by_config[key] = name
    return name

  def evaluate(self, tfma_run: str, names: Sequence[str], baseline: str,
               spec: QualitySpec) -> float:
    """One TFMA run over `names` (baseline included); stores metrics and diffs.

    Returns:
      The seconds TFMA ran here (0 when its output was reused or read).
    """
    output = os.path.join(self.out_dir, "tfma", tfma_run)
    models = {n: self.runs[n]["model_dir"] for n in names}
    args = (models, baseline if len(models) > 1 else None, spec.eval_tasks,
            self.data.raw_eval_pattern(), output, spec.ci_method, self.slices,
            spec.auc_thresholds)
    seconds = 0.0
    if self.from_disk:
      if not os.path.exists(output):
        raise FileNotFoundError(f"No TFMA output at {output}; run without --from-disk, or "
                                f"with fewer --seeds")
    elif (self.resume and not self.trained_now.intersection(names)
          and tfma_eval.finished(*args)):
      self.say(f"reusing TFMA {tfma_run}: finished for the same models and config in {output}")
    else:
      self.say(f"TFMA {tfma_run}: {', '.join(names)} (baseline {baseline}; {spec.ci_method})")
      started = time.time()
      tfma_eval.run(*args)
      seconds = time.time() - started
      self.say(f"    {seconds:.0f}s")
    results = tfma_eval.load(output)
    if len(names) == 1 and set(results) == {""}:
      results = {names[0]: results[""]}  # a lone model's keys may carry no name
    for name in names:
      if name not in results:
        raise RuntimeError(f"TFMA output {output} has no metrics for model {name!r}; "
                           f"it has {sorted(results)}")
      self.runs[name].update(metrics=results[name]["metrics"], tfma_run=tfma_run,
                             diff_vs_ple=results[name]["diff"])
    return seconds


def _training_config(spec: QualitySpec, dataset: data_lib.Dataset) -> model_config.TrainingConfig:
  return runtime_config.TrainingSettings(spec.preset, dict(spec.overrides)).build(
      dataset.mapping_path)


def _steps(spec: QualitySpec, base: model_config.TrainingConfig, train_rows: int) -> int:
  if spec.steps is not None:
    return spec.steps
  return max(1, math.ceil(spec.epochs * train_rows / base.batch_size))


def _config(base: model_config.TrainingConfig, variant: str, seed: int, steps: int,
            extra: Optional[Mapping[str, Any]] = None) -> model_config.TrainingConfig:
  return base.override({"seed": seed, "train_steps": steps,
                        "duia": dict(extra or {}, variant=variant)})


def resolve_dataset(spec: QualitySpec) -> Tuple[data_lib.Dataset, str]:
  """(dataset, absolute output folder) of `spec`; raises as `data.resolve` does."""
  name = data_lib.name_of(spec.data)
  if spec.activity_exponent:
    name += f"-zipf{spec.activity_exponent:g}"
  if spec.sparsify is not None:
    name += f"-sparse{spec.sparsify}"
  out_dir = os.path.abspath(spec.out_dir or os.path.join("runs", "quality", name))
  dataset = data_lib.resolve(spec.data, spec.data_root, spec.rows, out_dir)
  return data_lib.sparsified(dataset, spec.sparsify, spec.sparsify_share, out_dir), out_dir


def check(spec: QualitySpec, from_disk: bool = False, resume: bool = False) -> None:
  """Raises (ValueError, DataNotFoundError) now what would otherwise fail mid-run.

  The data must be there, the overrides must be valid keys, every sweep point
  must be a valid config (e.g. UIE's N1 >= duia.flat_top_k), and at most one
  of `run`'s `from_disk` and `resume` may be set.
  """
  if from_disk and resume:
    raise ValueError("from_disk computes nothing and resume computes what is missing; "
                     "give one of them")
  dataset, _ = resolve_dataset(spec)
  base = _training_config(spec, dataset)
  untrained = [t for t in spec.eval_tasks if t not in base.tasks]
  if untrained:
    raise ValueError(f"eval_tasks {untrained} are not trained; tasks: {list(base.tasks)}")
  for key in spec.sweeps:
    for n1 in spec.n1_values:
      _config(base, SWEEPS[key].variant, spec.sweep_seed, 1, {SWEEPS[key].key: n1})


def run(spec: QualitySpec, say: Callable[[str], None] = print,
        generator_args: Optional[Mapping[str, Any]] = None,
        from_disk: bool = False, resume: bool = False) -> Dict[str, Any]:
  """Runs the whole harness and writes its outputs.

  Args:
    spec: what to run.
    say: progress printer.
    generator_args: extra `GeneratorConfig` fields for generated data (tests).
    from_disk: train and evaluate nothing; rebuild the outputs from the
      models and TFMA outputs an earlier run of the same spec left in the
      output folder (e.g. with fewer `seeds` when a run was stopped during a
      later seed's TFMA). Training times are those the models recorded.
    resume: reuse every model and TFMA output an earlier run finished with
      the same config (`training.finished_model`, `tfma_eval.finished`);
      train and evaluate the rest. A TFMA run is redone when any of its
      models was (re)trained.

  Returns:
    The results, as written to `<out_dir>/quality.json`.
  """
  started = time.time()
  timing: Dict[str, float] = {}
  check(spec, from_disk, resume)
  dataset, out_dir = resolve_dataset(spec)
  os.makedirs(out_dir, exist_ok=True)
  generator_args = dict(generator_args or {})
  if spec.activity_exponent:
    generator_args["activity_exponent"] = spec.activity_exponent
  data_lib.ensure_generated(dataset, **generator_args)
  base = _training_config(spec, dataset)
  pipeline = configs.PipelineConfig(
      root=os.path.join(out_dir, "pipeline"), data_root=dataset.data_root,
      mapping_path=dataset.mapping_path, training=base, enable_cache=True)
  if not from_disk:
    say(f"pipeline up to Transform on {dataset.data_root} ({dataset.name})")
    local_runner.run(pipeline, to_node="Transform")
  data = training.TransformedData.from_metadata(pipeline.metadata_path)
  train_rows = data.count_rows("train")
  steps = _steps(spec, base, train_rows)
  timing["prepare_s"] = round(time.time() - started, 1)

  slices = TFMA_SLICES
  deciles = None
  if spec.activity_deciles:
    ranges = activity_deciles.bins(activity_deciles.history_lengths(data.raw_eval_pattern()))
    deciles = {"ranges": ranges, "slices": activity_deciles.slice_names(ranges),
               "sql": activity_deciles.slice_sql(ranges),
               "measure": "valid history length at the exposure"}
    slices = TFMA_SLICES + (deciles["sql"],)
  runs = _Runs(out_dir, data, say, from_disk, resume, slices)
  for seed in range(spec.seeds):
    for variant in spec.main_variants():
      runs.train(run_name(variant, seed), _config(base, variant, seed, steps), table=True)
  sweep_points = []
  if spec.sweeps and spec.n1_values:
    runs.train(run_name("ple", spec.sweep_seed), _config(base, "ple", spec.sweep_seed, steps),
               table=False)  # the sweep's baseline; reused if it is a main-table model
    for key in spec.sweeps:
      sweep = SWEEPS[key]
      for n1 in spec.n1_values:
        name = runs.train(run_name(sweep.variant, spec.sweep_seed, key, n1),
                          _config(base, sweep.variant, spec.sweep_seed, steps, {sweep.key: n1}),
                          table=False)
        sweep_points.append((key, n1, name))
  # One TFMA run per seed, over every model of that seed (main table and sweep):
  # each run's cost is mostly per model, so fewer, larger runs are cheaper.
  tfma_s = 0.0
  for seed in sorted({r["seed"] for r in runs.runs.values()}):
    names = [n for n, r in runs.runs.items() if r["seed"] == seed]
    baseline = run_name("ple", seed)
    names.remove(baseline)
    tfma_s += runs.evaluate(f"seed{seed}", [baseline] + names, baseline, spec)
  if from_disk:
    timing = {}  # nothing was computed; each model keeps the times it recorded
  else:
    # This invocation's work only: with `resume`, reused models and TFMA
    # outputs cost nothing here.
    timing["tfma_s"] = round(tfma_s, 1)
    timing["train_export_s"] = round(sum(
        runs.runs[n]["train_s"] + runs.runs[n]["export_s"] for n in runs.trained_now), 1)
    timing["total_s"] = round(time.time() - started, 1)

  results = assemble(spec, dataset, base, steps, train_rows, runs.runs, sweep_points, timing,
                     deciles)
  results["out_dir"] = out_dir
  results["eval_data"] = data.raw_eval_pattern()  # the raw examples TFMA read
  write_outputs(results, out_dir)
  say(f"wrote {os.path.join(out_dir, RESULTS_JSON)}, {REPORT_MD}, {AUC_PLOT}"
      + (f", {SWEEP_PLOT}" if results["sweeps"] else "")
      + (f", {DECILE_PLOT}" if results["deciles"] else ""))
  return results


def assemble(spec: QualitySpec, dataset: data_lib.Dataset, base: model_config.TrainingConfig,
             steps: int, train_rows: int, runs: Mapping[str, Dict[str, Any]],
             sweep_points: Sequence[Tuple[str, int, str]],
             timing: Mapping[str, float],
             deciles: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
  """The results document: setup, every run, the summaries of the tables."""
  slice_names = [s for _, s in SLICES] + list((deciles or {}).get("slices", []))
  baselines = {r["seed"]: r for r in runs.values() if r["variant"] == "ple"}
  variants = {}
  for variant in spec.main_variants():
    table_runs = [r for r in runs.values() if r.get("table") and r["variant"] == variant]
    variants[variant] = uplift.summarize_variant(table_runs, baselines, slice_names, METRIC)
  sweeps = {}
  for key, n1, name in sweep_points:
    sweep = SWEEPS[key]
    run = runs[name]
    summary = uplift.summarize_variant([run], baselines, slice_names, METRIC)
    baseline = baselines[spec.sweep_seed]
    entry = sweeps.setdefault(key, dict(
        dataclasses.asdict(sweep), seed=spec.sweep_seed, points=[],
        baseline={"run": baseline["name"], "auc": {
            s: m[METRIC]["value"] for s, m in baseline["metrics"].items() if METRIC in m}}))
    entry["points"].append({
        "n1": n1, "run": name,
        "hit_rate": run["hit_rate"].get(sweep.memory),
        "auc": {s: v["mean"] for s, v in summary.items()},
        "uplift": {s: dict(value=v["uplift"]["mean"], **_bounds(v["uplift"]["interval"]))
                   for s, v in summary.items() if v["uplift"]}})
  first_ple = baselines[min(baselines)]
  slice_rows = {s: int(m[f"{TASK}/example_count"]["value"])
                for s, m in first_ple["metrics"].items() if f"{TASK}/example_count" in m}
  spec_dict = dataclasses.asdict(spec)
  return {
      "spec": spec_dict,
      "dataset": dataclasses.asdict(dataset),
      "task": TASK, "metric": METRIC,
      "slices": dict(SLICES),
      "slice_rows": slice_rows,
      "training": {"preset": spec.preset, "steps": steps, "batch_size": base.batch_size,
                   "train_rows": train_rows, "epochs": round(steps * base.batch_size /
                                                             max(train_rows, 1), 2),
                   "base_config": json.loads(base.to_json())},
      "ci": {"method": spec.ci_method, "level": 0.95, "replicates": 20,
             "pooled": "mean of the per-seed bounds"},
      "runs": dict(runs),
      "variants": variants,
      "sweeps": sweeps,
      "deciles": dict(deciles) if deciles else None,
      "timing": dict(timing),
  }


def _bounds(interval: Mapping[str, Any]) -> Dict[str, Any]:
  return {"lower": interval["lower"], "upper": interval["upper"]}


def write_outputs(results: Mapping[str, Any], out_dir: str) -> None:
  """quality.json, quality.md and the plots."""
  with open(os.path.join(out_dir, RESULTS_JSON), "w") as f:
    json.dump(results, f, indent=1, sort_keys=False)
  with open(os.path.join(out_dir, REPORT_MD), "w") as f:
    f.write(tables.to_markdown(results))
  plots.auc_by_slice(results, os.path.join(out_dir, AUC_PLOT))
  if results["sweeps"]:
    plots.n1_sweep(results, os.path.join(out_dir, SWEEP_PLOT))
  if results.get("deciles"):
    plots.auc_by_decile(results, os.path.join(out_dir, DECILE_PLOT))
