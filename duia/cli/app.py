"""The `duia` argument parser and entry point; each subcommand lives in its own module."""

import argparse
from typing import List, Optional

from duia import cli
from duia import keras_env
from duia.cli import bench_cmds
from duia.cli import common
from duia.cli import demo_cmd
from duia.cli import pipeline_cmds
from duia.cli import serving_cmds


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="duia", description=cli.__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  pipeline_cmds.add_parsers(sub)
  serving_cmds.add_parsers(sub)
  demo_cmd.add_parser(sub)
  bench_cmds.add_parsers(sub)
  return parser


def main(argv: Optional[List[str]] = None) -> None:
  parser = build_parser()
  args, unknown = parser.parse_known_args(argv)
  if unknown and not getattr(args, "pass_unknown_flags", False):
    parser.error(f"unrecognized arguments: {' '.join(unknown)}")
  args.unknown_flags = unknown
  if getattr(args, "validate", None):
    args.validate(parser, args)
  common.quiet_logs()
  keras_env.check_keras2()
  args.func(args)
