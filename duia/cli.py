"""The `duia` command: generate, run, report, serve, predict, demo.

    duia generate --out data/generated --exposures 20000
    duia run --data generated --data-root data/generated --root runs/local
    duia serve --model-base-path runs/local/serving/duia
    duia predict --target 127.0.0.1:8500 --examples runs/local/...
    duia demo --root runs/local          # what `make run` does
"""

import argparse
import json
import logging
import os
import sys
import time
import warnings
from typing import List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # hide CUDA-plugin noise on CPU hosts
from duia import keras_env  # noqa: E402  pylint: disable=g-import-not-at-top
from duia.models import config as model_config  # noqa: E402  pylint: disable=g-import-not-at-top

_START = time.time()


def _say(message: str) -> None:
  print(f"[{time.time() - _START:6.1f}s] {message}", flush=True)


class _ProgressFilter(logging.Filter):
  """Lets through only the runner's component start/finish lines (and errors)."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= logging.ERROR:
      return True
    text = str(record.msg)
    if text.startswith("Component %s is"):
      _say(record.getMessage())
    return False


def _quiet_logs() -> None:
  for category in (DeprecationWarning, FutureWarning, UserWarning, PendingDeprecationWarning):
    warnings.filterwarnings("ignore", category=category)
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.INFO)
  absl_logger = logging.getLogger("absl")
  absl_logger.addFilter(_ProgressFilter())
  logging.getLogger("tensorflow").setLevel(logging.ERROR)
  logging.getLogger("apache_beam").setLevel(logging.ERROR)


def _parse_overrides(pairs: Sequence[str]) -> dict:
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


# --- generate -------------------------------------------------------------------


def cmd_generate(args) -> None:
  from duia.data import generator  # pylint: disable=g-import-not-at-top
  config = generator.GeneratorConfig(
      num_users=args.users, num_items=args.items, num_exposures=args.exposures,
      seed=args.seed, days=args.days)
  _say(f"generating {args.exposures} exposures into {args.out}")
  summary = generator.generate(args.out, config)
  _say("done: " + json.dumps({k: v for k, v in summary.items() if k != "files"}))


# --- run / report -----------------------------------------------------------------


def _pipeline_config(args):
  from duia.pipeline import configs  # pylint: disable=g-import-not-at-top
  mapping_path = args.data if args.data.endswith(".json") else configs.packaged_mapping(args.data)
  preset = args.preset or ("movielens" if "movielens" in args.data else "small")
  overrides = _parse_overrides(args.set or [])
  if getattr(args, "variant", None):
    overrides.setdefault("duia", {})["variant"] = args.variant
  training = model_config.preset(preset, overrides)
  return configs.PipelineConfig(
      root=os.path.abspath(args.root), data_root=os.path.abspath(args.data_root),
      mapping_path=mapping_path, training=training, enable_cache=args.cache)


def print_report(config) -> None:
  """Per-component times, blessing, pushed model and the TFMA metrics table."""
  from duia.pipeline import report  # pylint: disable=g-import-not-at-top
  times = report.component_seconds(config.metadata_path)
  print("\nComponent wall time (s), from ML Metadata:")
  for name, seconds in times:
    print(f"  {name:<18} {seconds:8.1f}")
  print(f"  {'total':<18} {sum(s for _, s in times):8.1f}")
  blessing = report.latest_artifact_uri(config.metadata_path, "ModelBlessing")
  print(f"\nBlessed: {report.is_blessed(blessing) if blessing else 'no evaluation'}")
  evaluation = report.latest_artifact_uri(config.metadata_path, "ModelEvaluation")
  if evaluation:
    print(f"TFMA metrics per slice (eval split; {evaluation}):")
    print(report.metrics_table(report.load_slice_metrics(evaluation), config.training.tasks))
  from duia.serving import model_loader  # pylint: disable=g-import-not-at-top
  try:
    version, path = model_loader.latest_version(config.serving_model_dir)
    print(f"\nPushed model: {path} (version {version})")
    from duia.models import cluster_report  # pylint: disable=g-import-not-at-top
    cluster_path = os.path.join(path, "assets.extra", cluster_report.REPORT_FILE)
    if os.path.exists(cluster_path):
      with open(cluster_path) as f:
        print("DUIA memories on eval data:\n" + cluster_report.format_report(json.load(f)))
  except FileNotFoundError:
    print(f"\nNo pushed model under {config.serving_model_dir}")


def cmd_run(args) -> None:
  from duia.pipeline import local_runner  # pylint: disable=g-import-not-at-top
  config = _pipeline_config(args)
  _say(f"pipeline root {config.root}; data {config.data_root}; mapping {config.mapping_path}")
  local_runner.run(config)
  _say("pipeline finished")
  print_report(config)


def cmd_report(args) -> None:
  print_report(_pipeline_config(args))


# --- serve / predict ----------------------------------------------------------------


def cmd_serve(args) -> None:
  from duia.serving import server  # pylint: disable=g-import-not-at-top
  server.main([f"--model_base_path={args.model_base_path}", f"--model_name={args.model_name}",
               f"--host={args.host}", f"--port={args.port}"]
              + ([f"--rest_api_port={args.rest_port}"] if args.rest_port is not None else [])
              + args.server_flags)


def print_rankings(client, requests) -> None:
  """Ranks each request over gRPC and prints the list with what the user did."""
  for request in requests:
    ranked = client.rank(request.user, request.candidates, request.ts)
    from duia.models import features  # pylint: disable=g-import-not-at-top
    user = request.user
    print(f"\nuser {user[features.USER_ID]} ({user[features.USER_ACTIVITY]}-active, "
          f"{len(user[features.HIST_ITEM_IDS])} items in history): "
          f"{len(ranked)} candidates ranked; 'consumed' is what the user did when shown it")
    tasks = sorted(ranked[0].task_scores) if ranked else []
    print(f"  {'rank':>4} {'item':>8} {'score':>8} " + " ".join(f"{t[:12]:>12}" for t in tasks)
          + "  consumed")
    for position, candidate in enumerate(ranked, 1):
      shown = request.consumed.get(candidate.item_id)
      mark = "not shown" if shown is None else ("yes" if shown else "no")
      print(f"  {position:>4} {candidate.item_id:>8} {candidate.score:8.4f} "
            + " ".join(f"{candidate.task_scores[t]:12.4f}" for t in tasks) + f"  {mark}")


def _eval_split_dir(metadata_path: str) -> str:
  from duia.pipeline import report  # pylint: disable=g-import-not-at-top
  uri = report.latest_output_uri(metadata_path, "RawLogExampleGen", "examples")
  if uri is None:
    raise SystemExit(f"No Examples artifact in {metadata_path}; run the pipeline first.")
  return os.path.join(uri, "Split-eval")


def cmd_predict(args) -> None:
  from duia import demo_requests  # pylint: disable=g-import-not-at-top
  from duia.serving import client as client_lib  # pylint: disable=g-import-not-at-top
  examples_dir = args.examples or _eval_split_dir(
      os.path.join(os.path.abspath(args.root), "metadata.sqlite"))
  requests = demo_requests.sample_requests(
      demo_requests.read_examples(examples_dir), args.users, args.candidates, args.seed)
  print_rankings(client_lib.RankingClient(args.target, model_name=args.model_name), requests)


# --- demo ------------------------------------------------------------------------------


def cmd_demo(args) -> None:
  """generate -> pipeline -> serve the pushed model -> rank over gRPC -> report."""
  from duia import demo_requests  # pylint: disable=g-import-not-at-top
  from duia.data import generator  # pylint: disable=g-import-not-at-top
  from duia.pipeline import local_runner  # pylint: disable=g-import-not-at-top
  from duia.serving import client as client_lib  # pylint: disable=g-import-not-at-top
  from duia.serving import server  # pylint: disable=g-import-not-at-top
  root = os.path.abspath(args.root)
  data_root = os.path.join(root, "data")
  _say(f"1/4 generating {args.exposures} synthetic exposures into {data_root}")
  summary = generator.generate(data_root, generator.GeneratorConfig(
      num_exposures=args.exposures, seed=args.seed))
  _say("    " + json.dumps({k: v for k, v in summary.items() if k != "files"}))
  args.data, args.data_root = "generated", data_root
  config = _pipeline_config(args)
  _say(f"2/4 running the TFX pipeline locally under {config.root}")
  local_runner.run(config)
  _say("3/4 starting the gRPC PredictionService on the pushed model")
  grpc_server, port = server.start_server(config.serving_model_dir, model_name=config.model_name)
  try:
    _say(f"    serving {config.model_name} on 127.0.0.1:{port}")
    _say(f"4/4 ranking eval candidates for {args.users} users over gRPC")
    requests = demo_requests.sample_requests(
        demo_requests.read_examples(_eval_split_dir(config.metadata_path)),
        args.users, args.candidates, args.seed)
    print_rankings(client_lib.RankingClient(f"127.0.0.1:{port}",
                                            model_name=config.model_name), requests)
  finally:
    grpc_server.stop(grace=1)
  print_report(config)
  _say("done")


# --- argument parsing -------------------------------------------------------------------


def _add_run_args(parser, data_required=True) -> None:
  parser.add_argument("--data", required=data_required, default="generated",
                      help="packaged mapping name (generated, movielens-100k) or a mapping "
                           "config .json path")
  parser.add_argument("--data-root", required=data_required,
                      help="folder or URI holding the raw logs")
  parser.add_argument("--root", default="runs/local",
                      help="folder for every output: pipeline_root, metadata, serving")
  parser.add_argument("--preset", default=None,
                      help="training preset (small, tiny, movielens); default by data")
  parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                      help="training config override, e.g. --set ple.num_levels=3")
  parser.add_argument("--variant", choices=model_config.VARIANTS, default=None,
                      help="model variant: ple (baseline) or a DUIA ablation row "
                           "(same as --set duia.variant=...)")
  parser.add_argument("--cache", action="store_true",
                      help="reuse unchanged component outputs from earlier runs")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="duia", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)

  p = sub.add_parser("generate", help="write synthetic exposure logs")
  p.add_argument("--out", required=True)
  p.add_argument("--exposures", type=int, default=20_000)
  p.add_argument("--users", type=int, default=2_000)
  p.add_argument("--items", type=int, default=3_000)
  p.add_argument("--days", type=int, default=14)
  p.add_argument("--seed", type=int, default=0)
  p.set_defaults(func=cmd_generate)

  p = sub.add_parser("run", help="run the TFX pipeline locally and print its report")
  _add_run_args(p)
  p.set_defaults(func=cmd_run)

  p = sub.add_parser("report", help="print the report of the latest run under --root")
  _add_run_args(p, data_required=False)
  p.set_defaults(func=cmd_report, data_root=".")

  p = sub.add_parser(
      "serve", help="serve pushed models over TF Serving's gRPC and REST APIs",
      description="Other flags of `python -m duia.serving.server` pass through, e.g. "
                  "--enable_batching --version_policy=latest:2 --file_system_poll_wait_seconds=5")
  p.add_argument("--model-base-path", required=True,
                 help="folder of numbered versions, e.g. runs/local/serving/duia")
  p.add_argument("--model-name", default="duia")
  p.add_argument("--host", default="127.0.0.1")
  p.add_argument("--port", type=int, default=8500)
  p.add_argument("--rest-port", type=int, default=None, help="REST API port (e.g. 8501)")
  p.set_defaults(func=cmd_serve)

  p = sub.add_parser("predict", help="rank eval candidates for a few users via gRPC")
  p.add_argument("--target", default="127.0.0.1:8500")
  p.add_argument("--model-name", default="duia")
  p.add_argument("--root", default="runs/local", help="run folder to take eval examples from")
  p.add_argument("--examples", default=None, help="an Examples split folder instead of --root")
  p.add_argument("--users", type=int, default=3)
  p.add_argument("--candidates", type=int, default=10)
  p.add_argument("--seed", type=int, default=0)
  p.set_defaults(func=cmd_predict)

  p = sub.add_parser("demo", help="generate -> pipeline -> serve -> rank (what `make run` does)")
  p.add_argument("--root", default="runs/local")
  p.add_argument("--exposures", type=int, default=20_000)
  p.add_argument("--users", type=int, default=3)
  p.add_argument("--candidates", type=int, default=10)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--preset", default="small")
  p.add_argument("--set", action="append", metavar="KEY=VALUE")
  p.add_argument("--variant", choices=model_config.VARIANTS, default=None)
  p.add_argument("--cache", action="store_true")
  p.set_defaults(func=cmd_demo)
  return parser


def main(argv: Optional[List[str]] = None) -> None:
  parser = build_parser()
  args, unknown = parser.parse_known_args(argv)
  if unknown and args.func is not cmd_serve:
    parser.error(f"unrecognized arguments: {' '.join(unknown)}")
  if args.func is cmd_serve:
    # Flags of the server itself (python -m duia.serving.server --help) pass through.
    args.server_flags = unknown
  _quiet_logs()
  keras_env.check_keras2()
  args.func(args)


if __name__ == "__main__":
  main(sys.argv[1:])
