"""The `duia` command: every subcommand has --help; overrides parse into nested config."""

import argparse
import logging
import re
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


def _flags(parser: argparse.ArgumentParser, command: str = ""):
  """(command, option strings, help) of every flag of `parser` and its subcommands."""
  for action in parser._actions:  # pylint: disable=protected-access
    if isinstance(action, argparse._SubParsersAction):  # pylint: disable=protected-access
      for name, sub in action.choices.items():
        yield from _flags(sub, f"{command} {name}".strip())
    elif (action.option_strings
          and not isinstance(action, argparse._HelpAction)):  # pylint: disable=protected-access
      yield command, action.option_strings, action.help


def test_every_flag_says_what_it_does():
  from duia.serving import server_flags  # pylint: disable=g-import-not-at-top
  flags = list(_flags(cli_app.build_parser())) + [
      ("python -m duia.serving.server", options, text)
      for _, options, text in _flags(server_flags.build_parser())]
  assert len(flags) > 80
  silent = [f"{command} {options[0]}" for command, options, text in flags if not text]
  assert not silent, silent


def test_serve_flags_are_named_as_the_model_servers():
  # `duia serve` passes the other server flags through, so it uses their style.
  from duia.serving import server_flags  # pylint: disable=g-import-not-at-top
  serve = [o for c, options, _ in _flags(cli_app.build_parser()) if c == "serve" for o in options]
  server = {o for _, options, _ in _flags(server_flags.build_parser()) for o in options}
  assert serve and set(serve) <= server, set(serve) - server
  assert all(re.fullmatch(r"--[a-z0-9_]+", o) for o in server), sorted(server)


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


def test_a_resolver_finding_nothing_is_one_line_not_a_traceback(capsys):
  progress = common._ProgressFilter()  # pylint: disable=protected-access
  try:
    raise RuntimeError("LatestArtifactStrategy returned None.")
  except RuntimeError as e:
    # As TFX's resolver_node_handler logs it (logging.exception).
    record = logging.LogRecord("absl", logging.ERROR, __file__, 1,
                               "[%s] Input resolution error: %s",
                               ("latest_model_resolver", e), sys.exc_info())
  assert not progress.filter(record)
  out = capsys.readouterr().out
  assert "latest_model_resolver: nothing to resolve yet" in out
  assert len(out.strip().splitlines()) == 1
  # Other errors still reach the log, whole.
  other = logging.LogRecord("absl", logging.ERROR, __file__, 1, "Transform failed: %s",
                            ("boom",), None)
  assert progress.filter(other)
