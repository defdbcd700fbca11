"""The `duia` command: every subcommand has --help; overrides parse into nested config."""

import subprocess
import sys

import pytest

from duia import cli
from duia.cli import app as cli_app
from duia.cli import common

SUBCOMMANDS = ["generate", "run", "report", "compile", "serve", "predict", "demo", "bench"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli_app.build_parser().parse_args([command, "--help"])
  assert exit_info.value.code == 0
  assert f"usage: duia {command}" in capsys.readouterr().out


def test_console_script_is_installed():
  out = subprocess.run([sys.executable, "-m", "duia.cli", "--help"], capture_output=True,
                       text=True, check=True, timeout=120)
  for command in SUBCOMMANDS:
    assert command in out.stdout


def test_overrides_become_nested_typed_values():
  assert common.parse_overrides(["ple.num_levels=3", "tasks=[\"like\"]", "fusion=sum"]) == {
      "ple": {"num_levels": 3}, "tasks": ["like"], "fusion": "sum"}
  with pytest.raises(SystemExit, match="key=value"):
    common.parse_overrides(["oops"])


def test_generate_writes_logs(tmp_path, capsys):
  cli.main(["generate", "--out", str(tmp_path), "--exposures", "500", "--users", "50",
            "--items", "200"])
  assert (tmp_path / "users.jsonl.gz").exists() and (tmp_path / "items.jsonl.gz").exists()
  assert list((tmp_path / "exposures").glob("part-*.jsonl.gz"))
  assert '"num_exposures": 500' in capsys.readouterr().out


def test_bench_quality_has_help(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli_app.build_parser().parse_args(["bench", "quality", "--help"])
  assert exit_info.value.code == 0
  out = capsys.readouterr().out
  for flag in ("--data", "--data-root", "--seeds", "--variants", "--n1", "--out", "--rows"):
    assert flag in out


def test_bench_quality_without_movielens_says_where_and_how(tmp_path):
  missing = tmp_path / "ml-100k"
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["bench", "quality", "--data", "movielens-100k", "--data-root", str(missing),
              "--out", str(tmp_path / "out")])
  message = str(exit_info.value.code)
  assert str(missing) in message and "https://grouplens.org/datasets/movielens/100k/" in message
  assert not (tmp_path / "out").exists()


def test_bench_quality_rejects_bad_flags(tmp_path):
  with pytest.raises(SystemExit, match="variants must be a non-empty subset"):
    cli.main(["bench", "quality", "--variants", "ple,nope", "--out", str(tmp_path)])
  with pytest.raises(SystemExit, match="seeds must be >= 1"):
    cli.main(["bench", "quality", "--seeds", "0", "--out", str(tmp_path)])
  with pytest.raises(SystemExit, match="flat_top_k"):
    cli.main(["bench", "quality", "--n1", "2,8", "--sweeps", "uie", "--out", str(tmp_path)])
  with pytest.raises(SystemExit, match="eval_tasks must start with 'valid_consumption'"):
    cli.main(["bench", "quality", "--eval-tasks", "like", "--out", str(tmp_path)])
  with pytest.raises(SystemExit, match=r"eval_tasks \['dwell'\] are not trained"):
    cli.main(["bench", "quality", "--eval-tasks", "valid_consumption,dwell",
              "--out", str(tmp_path)])
  with pytest.raises(SystemExit, match="auc_thresholds must be >= 2"):
    cli.main(["bench", "quality", "--auc-thresholds", "1", "--out", str(tmp_path)])
  with pytest.raises(SystemExit, match="give one of them"):
    cli.main(["bench", "quality", "--from-disk", "--resume", "--data", "generated",
              "--out", str(tmp_path)])


def test_run_stopped_by_data_validation_exits_with_the_message(tmp_path, monkeypatch):
  from duia.pipeline import local_runner  # pylint: disable=g-import-not-at-top
  from duia.validation import findings  # pylint: disable=g-import-not-at-top

  def stopped(config):
    raise findings.DataValidationError("feature 'label_watch': drifted")

  monkeypatch.setattr(local_runner, "run", stopped)
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["run", "--data", "generated", "--data-root", str(tmp_path),
              "--root", str(tmp_path / "run")])
  assert exit_info.value.code == "duia run: feature 'label_watch': drifted"
