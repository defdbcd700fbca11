"""The quality harness end to end on tiny generated data: pipeline to Transform, two
variants trained with the Trainer's code, TFMA with PLE as the baseline, a
2-point N1 sweep, and the JSON, Markdown and PNG outputs agreeing.
"""

import dataclasses
import json
import os
import shutil

import pytest

from duia.models import config as model_config
from duia.models import trainer
from duia.quality import harness
from duia.quality import tables
from duia.quality import tfma_eval
from duia.quality import training

pytestmark = pytest.mark.e2e

AUC = "valid_consumption/auc"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("quality"))
  spec = harness.QualitySpec(
      data="generated", out_dir=out, rows=3000, seeds=1, variants=("ple", "duia"),
      # item_level1 = 8 makes the sweep's N1 = 8 point the main duia model (reused).
      n1_values=(4, 8), sweeps=("uhse",), steps=15, preset="tiny",
      # Coarser AUC histograms: TFMA's intervals then take ~1/10 of the time.
      auc_thresholds=1000,
      overrides={"duia": {"user_level1": 8, "user_children": 2, "item_level1": 8,
                          "item_children": 2, "memory_dim": 8}})
  results = harness.run(spec, say=lambda _: None,
                        generator_args={"num_users": 300, "num_items": 500})
  return out, results, spec


def test_writes_json_markdown_and_png_plots(outputs):
  out, results, _ = outputs
  for name in (harness.RESULTS_JSON, harness.REPORT_MD):
    assert os.path.getsize(os.path.join(out, name)) > 0
  for name in (harness.AUC_PLOT, harness.SWEEP_PLOT, harness.DECILE_PLOT):
    with open(os.path.join(out, name), "rb") as f:
      assert f.read(8) == PNG_SIGNATURE
  with open(os.path.join(out, harness.RESULTS_JSON)) as f:
    assert json.load(f)["runs"].keys() == results["runs"].keys()


def test_every_model_has_metrics_with_bounds_and_paired_diffs(outputs):
  _, results, _ = outputs
  runs = results["runs"]
  assert set(runs) == {"ple_s0", "duia_s0", "uhse_n4_s0"}
  # One TFMA run per seed, the sweep's models included.
  assert os.listdir(os.path.join(results["out_dir"], "tfma")) == ["seed0"]
  assert {r["tfma_run"] for r in runs.values()} == {"seed0"}
  # TFMA sliced by what the tables show, the task of the tables only.
  deciles = results["deciles"]["slices"]
  assert set(runs["ple_s0"]["metrics"]) == set(results["slices"].values()) | set(deciles)
  # The activity deciles (TFMA's SQL slices) cover every eval row once, in order.
  counts = {s: m["valid_consumption/example_count"]["value"]
            for s, m in runs["ple_s0"]["metrics"].items()}
  assert sum(counts[s] for s in deciles) == counts["overall"]
  ranges = results["deciles"]["ranges"]
  assert ranges[0][0] == 0 and all(a[1] + 1 == b[0] for a, b in zip(ranges, ranges[1:]))
  assert len(deciles) >= 3
  assert {m.split("/")[0] for m in runs["ple_s0"]["metrics"]["overall"]} == {
      "valid_consumption"}
  for name, run in runs.items():
    for slice_name in results["slices"].values():
      auc = run["metrics"][slice_name][AUC]
      assert 0.0 <= auc["value"] <= 1.0
      assert auc["lower"] <= auc["upper"], (name, slice_name)
    if name == "ple_s0":
      assert run["diff_vs_ple"] == {}
      continue
    ple = runs["ple_s0"]["metrics"]
    for slice_name, metrics in run["diff_vs_ple"].items():
      diff = metrics[AUC]
      # TFMA's diff is candidate - baseline on the same rows.
      assert diff["value"] == pytest.approx(
          run["metrics"][slice_name][AUC]["value"] - ple[slice_name][AUC]["value"], abs=1e-9)
      assert diff["lower"] <= diff["upper"]
  assert runs["duia_s0"]["hit_rate"].keys() == {"user_ghca", "item_ghca"}
  assert runs["ple_s0"]["hit_rate"] == {}


def test_sweep_reuses_the_matching_model_and_reports_hit_rates(outputs):
  _, results, _ = outputs
  points = results["sweeps"]["uhse"]["points"]
  assert [(p["n1"], p["run"]) for p in points] == [(4, "uhse_n4_s0"), (8, "duia_s0")]
  for point in points:
    assert 0.0 < point["hit_rate"] <= 1.0
    assert point["hit_rate"] == results["runs"][point["run"]]["hit_rate"]["item_ghca"]
    assert point["auc"]["overall"] == results["runs"][point["run"]]["metrics"]["overall"][AUC][
        "value"]


def test_markdown_numbers_equal_the_json(outputs):
  out, results, _ = outputs
  with open(os.path.join(out, harness.REPORT_MD)) as f:
    auc_rows, uplift_rows, _, sweep_rows, decile_rows = tables.parse_tables(f.read())
  assert [r["variant"] for r in auc_rows] == ["ple", "duia"]
  for row in auc_rows:
    for label, slice_name in results["slices"].items():
      # One seed: the cell is the value alone, which is that run's TFMA value.
      value = results["runs"][f"{row['variant']}_s0"]["metrics"][slice_name][AUC]["value"]
      assert float(row[label]) == round(value, 4)
  (duia,) = uplift_rows
  for label, slice_name in results["slices"].items():
    diff = results["runs"]["duia_s0"]["diff_vs_ple"][slice_name][AUC]
    numbers = [float(x) for x in duia[label].replace("[", " ").replace("]", " ")
               .replace(",", " ").split()]
    assert numbers == [round(diff["value"], 4), round(diff["lower"], 4), round(diff["upper"], 4)]
  ple_row, duia_row = decile_rows
  for name in results["deciles"]["slices"]:
    label = name.split("=", 1)[1]
    assert float(ple_row[label]) == round(
        results["runs"]["ple_s0"]["metrics"][name][AUC]["value"], 4)
    assert float(duia_row[label].split()[0]) == round(
        results["runs"]["duia_s0"]["diff_vs_ple"][name][AUC]["value"], 4)
  for row, point in zip(sweep_rows, results["sweeps"]["uhse"]["points"]):
    assert int(row["N1"]) == point["n1"]
    assert float(row["low-active"]) == round(point["auc"]["user_activity=low"], 4)
    assert float(row["level-1 hit rate"]) == round(point["hit_rate"], 2)


def test_from_disk_rebuilds_the_same_results_without_training(outputs):
  out, results, spec = outputs
  with open(os.path.join(out, harness.REPORT_MD)) as f:
    report = f.read()
  rebuilt = harness.run(spec, say=lambda _: None, from_disk=True)
  assert rebuilt["variants"] == results["variants"]
  assert rebuilt["sweeps"] == results["sweeps"]
  for name, run in results["runs"].items():
    assert rebuilt["runs"][name]["metrics"] == run["metrics"]
    assert rebuilt["runs"][name]["hit_rate"] == run["hit_rate"]
    assert rebuilt["runs"][name]["train_s"] == run["train_s"]  # as the model recorded it
  with open(os.path.join(out, harness.REPORT_MD)) as f:
    rebuilt_report = f.read()
  # The same report, without the wall-time line: nothing was trained or evaluated.
  assert "Wall time" in report and "Wall time" not in rebuilt_report
  assert rebuilt_report.rstrip() == report.split("Wall time")[0].rstrip()


def test_resume_reuses_finished_models_and_tfma_outputs(outputs):
  out, results, spec = outputs
  said = []
  resumed = harness.run(spec, say=said.append, resume=True)
  assert not any(line.startswith(("training", "TFMA")) for line in said), said
  assert sum(line.startswith("reusing") for line in said) == len(results["runs"]) + 1
  for name, run in results["runs"].items():
    assert resumed["runs"][name]["metrics"] == run["metrics"]
  assert resumed["timing"]["train_export_s"] == 0


def test_resume_redoes_what_is_unfinished_or_configured_differently(outputs, tmp_path):
  out, results, spec = outputs
  run = results["runs"]["duia_s0"]
  assert training.finished_model(run["model_dir"], _config_of(run["model_dir"])) is not None
  other = dataclasses.replace(_config_of(run["model_dir"]), seed=7)
  assert training.finished_model(run["model_dir"], other) is None
  # A TFMA output still holding Beam's temporary folder was stopped midway.
  copied = shutil.copytree(os.path.join(out, "tfma", "seed0"), str(tmp_path / "seed0"))
  models = {n: r["model_dir"] for n, r in results["runs"].items()}
  names = ["ple_s0"] + [n for n in models if n != "ple_s0"]
  args = ({n: models[n] for n in names}, "ple_s0", spec.eval_tasks,
          results["eval_data"], copied, spec.ci_method,
          harness.TFMA_SLICES + (results["deciles"]["sql"],),
          spec.auc_thresholds)
  assert tfma_eval.finished(*args)
  assert not tfma_eval.finished(*args[:-1], 10_000)  # another AUC histogram
  os.makedirs(os.path.join(copied, "beam-temp-metrics-0"))
  assert not tfma_eval.finished(*args)


def _config_of(model_dir):
  with open(os.path.join(model_dir, "assets.extra", trainer.CONFIG_FILE)) as f:
    return model_config.TrainingConfig.from_json(f.read())
