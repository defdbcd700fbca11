"""What every `duia` subcommand shares: progress lines, quiet logs, `--set` parsing."""

import argparse
import json
import logging
import time
import warnings
from typing import Sequence

_START = time.time()


def say(message: str) -> None:
  print(f"[{time.time() - _START:6.1f}s] {message}", flush=True)


# TFX's resolver node logs this, with a traceback, when a resolver finds no
# artifact (its strategy "returned None"): on a first run there is no earlier
# model, blessed model or validated statistics, and the run goes on without.
_RESOLUTION_ERROR = "[%s] Input resolution error"


def _nothing_to_resolve(record: logging.LogRecord) -> bool:
  return (str(record.msg).startswith(_RESOLUTION_ERROR)
          and "returned None" in record.getMessage())


class _ProgressFilter(logging.Filter):
  """Lets through only the runner's component start/finish lines (and errors).

  A resolver that finds nothing is said in one line, without TFX's traceback.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    if _nothing_to_resolve(record):
      say(f"{record.args[0]}: nothing to resolve yet (no earlier artifact: normal on a "
          "first run)")
      return False
    if record.levelno >= logging.ERROR:
      return True
    text = str(record.msg)
    if text.startswith("Component %s is"):
      say(record.getMessage())
    return False


def quiet_logs() -> None:
  for category in (DeprecationWarning, FutureWarning, UserWarning, PendingDeprecationWarning):
    warnings.filterwarnings("ignore", category=category)
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.INFO)
  absl_logger = logging.getLogger("absl")
  absl_logger.addFilter(_ProgressFilter())
  logging.getLogger("tensorflow").setLevel(logging.ERROR)
  logging.getLogger("apache_beam").setLevel(logging.ERROR)


def parse_overrides(pairs: Sequence[str]) -> dict:
  """["ple.num_levels=3", "tasks=[\\"like\\"]"] -> nested dict (values as JSON if they parse)."""
  out: dict = {}
  for pair in pairs:
    if "=" not in pair:
      raise SystemExit(f"--set expects key=value. Received: {pair!r}")
    key, raw = pair.split("=", 1)
    try:
      value = json.loads(raw)
    except ValueError:
      value = raw
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
      node = node.setdefault(part, {})
    node[parts[-1]] = value
  return out


def int_list(text: str) -> tuple:
  """"8,16,32" -> (8, 16, 32) (an argparse type; "" is the empty tuple)."""
  try:
    return tuple(int(v) for v in text.split(",") if v.strip())
  except ValueError as e:
    raise argparse.ArgumentTypeError(
        f"expected comma-separated integers. Received: {text!r}") from e


def name_list(text: str) -> tuple:
  """"ple, duia" -> ("ple", "duia") (an argparse type)."""
  return tuple(v.strip() for v in text.split(",") if v.strip())
