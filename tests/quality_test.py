"""The quality harness's own arithmetic, tables, plots and data lookup, on hand-made numbers."""

import math
import os

import pytest

from duia.quality import data as data_lib
from duia.quality import plots
from duia.quality import tables
from duia.quality import uplift

AUC = "valid_consumption/auc"
LOW, HIGH, OVERALL = "user_activity=low", "user_activity=high", "overall"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run(variant, seed, values, diffs=None):
  """A run as the harness stores it: {slice: {metric: {"value", bounds...}}}."""
  return {"name": f"{variant}_s{seed}", "variant": variant, "seed": seed,
          "metrics": {s: {AUC: v} for s, v in values.items()},
          "diff_vs_ple": {s: {AUC: d} for s, d in (diffs or {}).items()}}


def test_mean_std_is_the_sample_std():
  out = uplift.mean_std([1.0, 2.0, 3.0, 4.0])
  assert out["mean"] == 2.5 and out["n"] == 4
  assert out["std"] == pytest.approx(math.sqrt(5 / 3))  # sum of squares 5, n - 1 = 3
  assert uplift.mean_std([0.7])["std"] is None
  with pytest.raises(ValueError, match="at least one value"):
    uplift.mean_std([])


def test_pooled_interval_averages_bounds_and_counts_seeds_excluding_zero():
  out = uplift.pooled_interval([
      {"value": 0.01, "lower": 0.002, "upper": 0.018},
      {"value": 0.02, "lower": -0.001, "upper": 0.041},
      {"value": -0.03, "lower": -0.05, "upper": -0.01},
      {"value": 0.0},  # no interval: not pooled, not counted
  ])
  assert out["lower"] == pytest.approx((0.002 - 0.001 - 0.05) / 3)
  assert out["upper"] == pytest.approx((0.018 + 0.041 - 0.01) / 3)
  assert (out["seeds_with_interval"], out["seeds_above_zero"], out["seeds_below_zero"]) == (3, 1, 1)
  assert uplift.pooled_interval([{"value": 1.0}])["lower"] is None


def test_summarize_variant_pairs_seeds_and_reads_tfma_diffs():
  ple = {0: _run("ple", 0, {LOW: {"value": 0.70, "lower": 0.68, "upper": 0.72}}),
         1: _run("ple", 1, {LOW: {"value": 0.74}})}
  duia = [
      # Seed 0: TFMA's diff (with its interval) is used as given.
      _run("duia", 0, {LOW: {"value": 0.71, "lower": 0.69, "upper": 0.73}},
           diffs={LOW: {"value": 0.0105, "lower": 0.004, "upper": 0.016}}),
      # Seed 1: no diff in the output, so the plain paired difference 0.77 - 0.74.
      _run("duia", 1, {LOW: {"value": 0.77}}),
  ]
  out = uplift.summarize_variant(duia, ple, [LOW, HIGH], AUC)
  assert HIGH not in out  # no values there
  low = out[LOW]
  assert low["mean"] == pytest.approx(0.74) and low["std"] == pytest.approx(0.03 * math.sqrt(2))
  assert low["per_seed"] == {"0": 0.71, "1": 0.77}
  assert low["interval"]["lower"] == pytest.approx(0.69)  # only seed 0 has bounds
  up = low["uplift"]
  assert up["per_seed"] == {"0": 0.0105, "1": pytest.approx(0.03)}
  assert up["mean"] == pytest.approx((0.0105 + 0.03) / 2)
  assert up["std"] == pytest.approx(abs(0.03 - 0.0105) / math.sqrt(2))
  assert up["interval"]["lower"] == 0.004 and up["interval"]["seeds_above_zero"] == 1
  assert uplift.summarize_variant(list(ple.values()), ple, [LOW], AUC)[LOW]["uplift"] is None


def test_summarize_variant_needs_the_same_seed_ple():
  with pytest.raises(ValueError, match="No PLE run for seed 2"):
    uplift.summarize_variant([_run("uie", 2, {LOW: {"value": 0.7}})], {0: _run("ple", 0, {})},
                             [LOW], AUC)


def _results(seeds=2):
  """A small results document as `harness.assemble` writes it."""
  slices = {"low-active": LOW, "high-active": HIGH, "tail items": "item_popularity=tail",
            "head items": "item_popularity=head", "overall": OVERALL}
  ple = {s: _run("ple", s, {name: {"value": 0.70 + 0.01 * i + 0.001 * s, "lower": 0.69,
                                   "upper": 0.72}
                            for i, name in enumerate(slices.values())}) for s in range(seeds)}
  duia = [_run("duia", s, {name: {"value": 0.705 + 0.01 * i + 0.002 * s}
                           for i, name in enumerate(slices.values())},
               diffs={name: {"value": 0.005 + 0.001 * s, "lower": -0.001, "upper": 0.011}
                      for name in slices.values()}) for s in range(seeds)]
  variants = {"ple": uplift.summarize_variant(list(ple.values()), ple, list(slices.values()), AUC),
              "duia": uplift.summarize_variant(duia, ple, list(slices.values()), AUC)}
  points = [{"n1": n1, "run": f"uhse_n{n1}_s0", "hit_rate": hit,
             "auc": {LOW: 0.70 + n1 / 1000, HIGH: 0.72, OVERALL: 0.71},
             "uplift": {LOW: {"value": n1 / 1000, "lower": -0.01, "upper": 0.02},
                        HIGH: {"value": -0.001, "lower": -0.004, "upper": 0.002}}}
            for n1, hit in ((4, 1.0), (8, 0.875))]
  return {
      "dataset": {"name": "toy"}, "metric": AUC, "slices": slices,
      "slice_rows": {name: 100 * (i + 1) for i, name in enumerate(slices.values())},
      "spec": {"seeds": seeds, "auc_thresholds": 10000},
      "training": {"train_rows": 1000, "steps": 10, "batch_size": 100, "epochs": 1.0},
      "ci": {"method": "jackknife", "replicates": 20},
      "variants": variants,
      "sweeps": {"uhse": {"label": "UHSE", "variant": "duia", "key": "item_level1",
                          "memory": "item_ghca", "seed": 0, "points": points,
                          "baseline": {"run": "ple_s0", "auc": {LOW: 0.70, HIGH: 0.72}}}},
  }


def _numbers(cell):
  return [float(x) for x in cell.replace("±", " ").replace("[", " ").replace("]", " ")
          .replace(",", " ").split()]


def test_markdown_tables_carry_the_json_numbers():
  results = _results()
  auc, up, counts, sweep = tables.parse_tables(tables.to_markdown(results))
  assert [r["variant"] for r in auc] == ["ple", "duia"]
  for row in auc:
    for label, name in results["slices"].items():
      summary = results["variants"][row["variant"]][name]
      assert _numbers(row[label]) == [round(summary["mean"], 4), round(summary["std"], 4)]
  (duia,) = up
  for label, name in results["slices"].items():
    u = results["variants"]["duia"][name]["uplift"]
    assert _numbers(duia[label]) == [round(u["mean"], 4), round(u["std"], 4),
                                     round(u["interval"]["lower"], 4),
                                     round(u["interval"]["upper"], 4)]
  assert counts[0]["low-active"] == "0 / 0 of 2"
  assert [int(r["N1"]) for r in sweep] == [4, 8]
  for row, point in zip(sweep, results["sweeps"]["uhse"]["points"]):
    assert float(row["low-active"]) == round(point["auc"][LOW], 4)
    assert float(row["level-1 hit rate"]) == round(point["hit_rate"], 2)
    assert _numbers(row["low - PLE [95% CI]"]) == [round(point["uplift"][LOW]["value"], 4),
                                                   -0.01, 0.02]


def test_one_seed_prints_no_std():
  auc = tables.parse_tables(tables.to_markdown(_results(seeds=1)))[0]
  assert "±" not in auc[0]["overall"] and _numbers(auc[0]["overall"]) == [0.74]


def test_plots_are_png_files(tmp_path):
  results = _results()
  plots.auc_by_slice(results, str(tmp_path / "auc.png"))
  plots.n1_sweep(results, str(tmp_path / "sweep.png"))
  for name in ("auc.png", "sweep.png"):
    with open(tmp_path / name, "rb") as f:
      assert f.read(8) == PNG_SIGNATURE


def test_missing_movielens_says_where_and_how(tmp_path, monkeypatch):
  monkeypatch.delenv(data_lib.MOVIELENS_ENV, raising=False)
  with pytest.raises(data_lib.DataNotFoundError) as info:
    data_lib.resolve("movielens-100k", str(tmp_path / "nowhere"), 0, str(tmp_path))
  message = str(info.value)
  assert str(tmp_path / "nowhere") in message and "--data-root" in message
  assert data_lib.MOVIELENS_URL in message and "u.data" in message
  monkeypatch.setenv(data_lib.MOVIELENS_ENV, str(tmp_path / "env"))
  with pytest.raises(data_lib.DataNotFoundError) as info:
    data_lib.resolve("movielens-100k", None, 0, str(tmp_path))
  assert f"{tmp_path / 'env'} (from $DUIA_MOVIELENS_DIR)" in str(info.value)


def test_data_names_resolve(tmp_path):
  generated = data_lib.resolve("generated", None, 500, str(tmp_path))
  assert generated.data_root == os.path.join(str(tmp_path), "data")
  assert generated.generate_rows == 500
  mapping = tmp_path / "mine.json"
  mapping.write_text("{}")
  assert data_lib.resolve(str(mapping), str(tmp_path), 0, str(tmp_path)).name == "mine"
  with pytest.raises(ValueError, match="--data-root is required"):
    data_lib.resolve(str(mapping), None, 0, str(tmp_path))
  with pytest.raises(ValueError, match="Received: 'imdb'"):
    data_lib.resolve("imdb", None, 0, str(tmp_path))


def test_sparsify_writes_the_derived_mapping_and_names_the_run(tmp_path, monkeypatch):
  from duia.ingest import mapping as mapping_lib  # pylint: disable=g-import-not-at-top
  from duia.quality import harness  # pylint: disable=g-import-not-at-top
  spec = harness.QualitySpec(data="generated", out_dir=str(tmp_path), sparsify=3,
                             sparsify_share=0.5)
  dataset, out_dir = harness.resolve_dataset(spec)
  assert dataset.name == "generated-sparse3-share0.5" and out_dir == str(tmp_path)
  assert dataset.mapping_path == str(tmp_path / "mapping" / "generated-sparse3-share0.5.json")
  written = mapping_lib.load_mapping(dataset.mapping_path)
  assert written.sparsify == mapping_lib.SparsifyConfig(share=0.5, keep=3, seed=0)
  monkeypatch.chdir(tmp_path)  # the default output folder is under the working directory
  assert harness.resolve_dataset(harness.QualitySpec(sparsify=10))[1].endswith(
      os.path.join("runs", "quality", "generated-sparse10"))
  with pytest.raises(ValueError, match=r"sparsify must be in \[1, 10\]. Received: 11"):
    harness.QualitySpec(sparsify=11)


def test_decile_table_and_plot(tmp_path):
  results = _results()
  names = ["activity_decile=d0 0-0", "activity_decile=d1 1-5"]
  for variant, seed_value in (("ple", 0.6), ("duia", 0.61)):
    for i, name in enumerate(names):
      results["variants"][variant][name] = {
          "mean": seed_value + i / 10, "std": None,
          "uplift": None if variant == "ple" else {
              "mean": 0.01, "std": None, "interval": {"lower": -0.002, "upper": 0.02}}}
  results["deciles"] = {"slices": names, "ranges": [[0, 0], [1, 5]]}
  results["slice_rows"].update({names[0]: 30, names[1]: 70})
  *_, deciles = tables.parse_tables(tables.to_markdown(results))
  assert [r["variant"] for r in deciles] == ["ple (AUC)", "duia"]
  assert _numbers(deciles[0]["d1 1-5"]) == [0.7]
  assert _numbers(deciles[1]["d0 0-0"]) == [0.01, -0.002, 0.02]
  plots.auc_by_decile(results, str(tmp_path / "deciles.png"))
  with open(tmp_path / "deciles.png", "rb") as f:
    assert f.read(8) == PNG_SIGNATURE
