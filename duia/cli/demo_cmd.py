"""`duia demo`: what `make run` does, from generated logs to a ranking over gRPC."""

import json
import os

from duia.cli import common
from duia.cli import pipeline_cmds
from duia.cli import serving_cmds
from duia.models import config as model_config

# What the demo shows: DUIA's user-side enhancement, beside PLE (`compare`).
DEFAULT_VARIANT = "duia"


def cmd_demo(args) -> None:
  """generate -> pipeline -> serve the pushed model -> rank over gRPC -> report."""
  from duia import demo_requests  # pylint: disable=g-import-not-at-top
  from duia.data import generator  # pylint: disable=g-import-not-at-top
  from duia.pipeline import local_runner  # pylint: disable=g-import-not-at-top
  from duia.serving import client as client_lib  # pylint: disable=g-import-not-at-top
  from duia.serving import server  # pylint: disable=g-import-not-at-top
  root = os.path.abspath(args.root)
  data_root = os.path.join(root, "data")
  common.say(f"1/4 generating {args.exposures} synthetic exposures into {data_root}")
  summary = generator.generate(data_root, generator.GeneratorConfig(
      num_exposures=args.exposures, seed=args.seed))
  common.say("    " + json.dumps({k: v for k, v in summary.items() if k != "files"}))
  args.data, args.data_root = "generated", data_root
  if args.variant is None and not any(o.startswith("duia.variant=") for o in args.set or ()):
    args.variant = DEFAULT_VARIANT
  config = pipeline_cmds.pipeline_config(args)
  common.say(f"2/4 running the TFX pipeline locally under {config.root}")
  local_runner.run(config)
  common.say("3/4 starting the gRPC PredictionService on the pushed model")
  grpc_server, port = server.start_server(config.serving_model_dir, model_name=config.model_name)
  try:
    common.say(f"    serving {config.model_name} on 127.0.0.1:{port}")
    common.say(f"4/4 ranking eval candidates for {args.users} users over gRPC")
    requests = demo_requests.sample_requests(
        demo_requests.read_examples(serving_cmds.eval_split_dir(config.metadata_source)),
        args.users, args.candidates, args.seed)
    client = client_lib.RankingClient(f"127.0.0.1:{port}", model_name=config.model_name)
    serving_cmds.print_rankings(client, requests)
  finally:
    grpc_server.stop(grace=1)
  pipeline_cmds.print_report(config)
  if args.compare and config.training.duia.variant != "ple":
    compare(config)
  common.say("done")


def compare(config) -> None:
  """PLE trained on the same data beside the pushed model, with paired TFMA intervals."""
  from duia.quality import baseline_comparison  # pylint: disable=g-import-not-at-top
  variant = config.training.duia.variant
  common.say(f"training PLE on the same Transform output and evaluating it beside {variant} "
             "(one TFMA run, paired jackknife intervals)")
  rows = baseline_comparison.compare_with_ple(config, os.path.join(config.root, "compare"))
  print(f"\nvalid_consumption AUC on the eval split, {variant} against PLE trained on the "
        "same data:\n" + baseline_comparison.format_rows(rows, variant))


def add_parser(sub) -> None:
  """Adds demo to the `duia` subparsers."""
  p = sub.add_parser("demo", help="generate -> pipeline -> serve -> rank (what `make run` does)")
  p.add_argument("--root", default="runs/local",
                 help="run folder: logs, pipeline outputs, ML Metadata, pushed models "
                      "(default runs/local)")
  p.add_argument("--exposures", type=int, default=20_000,
                 help="generated exposure rows (default 20,000)")
  p.add_argument("--users", type=int, default=3,
                 help="users ranked over gRPC at the end (default 3)")
  p.add_argument("--candidates", type=int, default=10,
                 help="eval items ranked per user (default 10)")
  p.add_argument("--seed", type=int, default=0, help="seed of the generated logs and the draw")
  p.add_argument("--preset", default="small",
                 help="model size preset (duia.models.config: tiny, small, ...; default small)")
  p.add_argument("--set", action="append", metavar="KEY=VALUE",
                 help="override a training config value, e.g. duia.user_level1=16 (repeatable)")
  p.add_argument("--variant", choices=model_config.VARIANTS, default=None,
                 help=f"the ranker: a DUIA variant (default {DEFAULT_VARIANT}), him, or ple")
  p.add_argument("--no-compare", dest="compare", action="store_false",
                 help="skip training PLE on the same data and the side-by-side TFMA table")
  p.add_argument("--cache", action="store_true",
                 help="reuse unchanged component outputs of an earlier run in --root")
  p.set_defaults(func=cmd_demo)
