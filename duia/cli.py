"""The `duia` command: generate, run, report, compile, serve, predict, demo.

    duia generate --out data/generated --exposures 20000
    duia run --data generated --data-root data/generated --root runs/local
    duia run --config deploy/pipeline/local.json
    duia compile --kubeflow pipeline.json --config deploy/pipeline/kubeflow-dataflow.json
    duia serve --model-base-path runs/local/serving/duia
    duia predict --target 127.0.0.1:8500 --examples runs/local/...
    duia demo --root runs/local          # what `make run` does
    duia bench quality --data movielens-100k   # the papers' ablation, N1 sweep, plots
"""

import argparse
import dataclasses
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
from duia.models import features  # noqa: E402  pylint: disable=g-import-not-at-top
from duia.pipeline import beam_presets  # noqa: E402  pylint: disable=g-import-not-at-top

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


def _deep_merge(base: dict, overrides: dict) -> dict:
  """`base` with nested `overrides` applied (--set on top of the config file's overrides)."""
  out = dict(base)
  for key, value in overrides.items():
    if isinstance(out.get(key), dict) and isinstance(value, dict):
      value = _deep_merge(out[key], value)
    out[key] = value
  return out


def _parse_options(pairs: Sequence[str], flag: str) -> dict:
  """["project=p", "region=r"] -> {"project": "p", "region": "r"} (values as strings)."""
  out = {}
  for pair in pairs:
    if "=" not in pair:
      raise SystemExit(f"{flag} expects key=value. Received: {pair!r}")
    key, value = pair.split("=", 1)
    out[key] = value
  return out


def _runtime_config(args):
  """The runtime config of --config (or the defaults), with the flags given on top."""
  try:
    return _apply_flags(args)
  except (OSError, ValueError) as e:
    raise SystemExit(f"duia: {e}") from e


def _apply_flags(args):
  """The flags that were given, applied to --config's runtime config (or the defaults)."""
  from duia.pipeline import runtime_config  # pylint: disable=g-import-not-at-top
  config_file = getattr(args, "config", None)
  base = runtime_config.load(config_file) if config_file else runtime_config.RuntimeConfig()
  changes = {}
  for flag, field in (("data", "mapping"), ("data_root", "data_root"), ("root", "root"),
                      ("distribution", "distribution")):
    if getattr(args, flag, None) is not None:
      changes[field] = getattr(args, flag)
  if getattr(args, "cache", False):
    changes["enable_cache"] = True
  overrides = _parse_overrides(getattr(args, "set", None) or [])
  if getattr(args, "variant", None):
    overrides.setdefault("duia", {})["variant"] = args.variant
  if getattr(args, "preset", None) or overrides:
    changes["training"] = runtime_config.TrainingSettings(
        preset=getattr(args, "preset", None) or base.training.preset,
        overrides=_deep_merge(dict(base.training.overrides), overrides))
  beam_preset = getattr(args, "beam_preset", None)
  beam_options = _parse_options(getattr(args, "beam_option", None) or [], "--beam-option")
  if beam_preset or beam_options:
    # Another preset's options (and extra args) do not carry over to a new one.
    same = beam_preset in (None, base.beam.preset)
    changes["beam"] = runtime_config.BeamSettings(
        preset=beam_preset or base.beam.preset,
        options=dict(base.beam.options if same else {}, **beam_options),
        extra_args=base.beam.extra_args if same else ())
  kubeflow = {k: v for k, v in (("image", getattr(args, "image", None)),
                                ("output", getattr(args, "kubeflow", None))) if v}
  if kubeflow:
    changes["kubeflow"] = dataclasses.replace(base.kubeflow, **kubeflow)
  return dataclasses.replace(base, **changes) if changes else base


def _pipeline_config(args, runtime=None):
  """The PipelineConfig of `args` (or of an already built runtime config)."""
  try:
    return (runtime or _runtime_config(args)).to_pipeline_config()
  except ValueError as e:
    raise SystemExit(f"duia: {e}") from e


def print_report(config) -> None:
  """Per-component times, blessing, pushed model and the TFMA metrics table."""
  from duia.pipeline import report  # pylint: disable=g-import-not-at-top
  times = report.component_seconds(config.metadata_source)
  print("\nComponent wall time (s), from ML Metadata:")
  for name, seconds in times:
    print(f"  {name:<18} {seconds:8.1f}")
  print(f"  {'total':<18} {sum(s for _, s in times):8.1f}")
  blessing = report.latest_artifact_uri(config.metadata_source, "ModelBlessing")
  print(f"\nBlessed: {report.is_blessed(blessing) if blessing else 'no evaluation'}")
  evaluation = report.latest_artifact_uri(config.metadata_source, "ModelEvaluation")
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


def cmd_compile(args) -> None:
  from duia.pipeline import kubeflow_runner  # pylint: disable=g-import-not-at-top
  runtime = _runtime_config(args)
  config = _pipeline_config(args, runtime)
  output = kubeflow_runner.compile_pipeline(config, runtime.kubeflow.image,
                                            runtime.kubeflow.output)
  _say(f"wrote the Kubeflow V2 pipeline {output} (image {runtime.kubeflow.image}; "
       f"pipeline root {config.pipeline_root})")


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


def _eval_split_dir(metadata) -> str:
  """Eval split of the latest Examples; `metadata` as `report` takes it."""
  from duia.pipeline import report  # pylint: disable=g-import-not-at-top
  uri = report.latest_output_uri(metadata, "RawLogExampleGen", "examples")
  if uri is None:
    # Never print a connection config: a MySQL one holds the password.
    where = metadata if isinstance(metadata, str) else "ML Metadata"
    raise SystemExit(f"No Examples artifact in {where}; run the pipeline first.")
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
        demo_requests.read_examples(_eval_split_dir(config.metadata_source)),
        args.users, args.candidates, args.seed)
    print_rankings(client_lib.RankingClient(f"127.0.0.1:{port}",
                                            model_name=config.model_name), requests)
  finally:
    grpc_server.stop(grace=1)
  print_report(config)
  _say("done")


# --- bench ------------------------------------------------------------------------------


def _int_list(text: str) -> tuple:
  try:
    return tuple(int(v) for v in text.split(",") if v.strip())
  except ValueError as e:
    raise argparse.ArgumentTypeError(f"expected comma-separated integers. Received: {text!r}") from e


def _name_list(text: str) -> tuple:
  return tuple(v.strip() for v in text.split(",") if v.strip())


def cmd_bench_quality(args) -> None:
  from duia.quality import data as data_lib  # pylint: disable=g-import-not-at-top
  from duia.quality import harness  # pylint: disable=g-import-not-at-top
  # Bad flags and missing data stop here, before the pipeline starts.
  try:
    spec = harness.QualitySpec(
        data=args.data, data_root=args.data_root, out_dir=args.out, rows=args.rows,
        seeds=args.seeds, variants=args.variants, n1_values=args.n1, sweeps=args.sweeps,
        sweep_seed=args.sweep_seed, epochs=args.epochs, steps=args.steps, preset=args.preset,
        overrides=_parse_overrides(args.set or []), ci_method=args.ci_method,
        eval_tasks=args.eval_tasks, auc_thresholds=args.auc_thresholds)
    harness.check(spec)
  except (data_lib.DataNotFoundError, ValueError) as e:
    raise SystemExit(f"duia: {e}") from e
  if args.from_disk and args.resume:
    raise SystemExit("duia: --from-disk computes nothing and --resume computes what is "
                     "missing; give one of them")
  results = harness.run(spec, say=_say, from_disk=args.from_disk, resume=args.resume)
  with open(os.path.join(results["out_dir"], harness.REPORT_MD)) as f:
    print("\n" + f.read())


# --- argument parsing -------------------------------------------------------------------


def _add_run_args(parser) -> None:
  """Flags of a pipeline config; each one given overrides --config's value."""
  parser.add_argument("--config", default=None, metavar="FILE",
                      help="runtime config JSON (deploy/pipeline/*.json); flags override it")
  parser.add_argument("--data", default=None,
                      help="packaged mapping name (generated, movielens-100k) or a mapping "
                           "config .json path (default: generated)")
  parser.add_argument("--data-root", default=None,
                      help="folder or URI holding the raw logs")
  parser.add_argument("--root", default=None,
                      help="folder or URI for every output: pipeline_root, metadata, serving "
                           "(default: runs/local)")
  parser.add_argument("--preset", default=None,
                      help="training preset (small, tiny, movielens); default by data")
  parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                      help="training config override, e.g. --set ple.num_levels=3")
  parser.add_argument("--variant", choices=model_config.VARIANTS, default=None,
                      help="model variant: ple (baseline) or a DUIA ablation row "
                           "(same as --set duia.variant=...)")
  parser.add_argument("--cache", action="store_true",
                      help="reuse unchanged component outputs from earlier runs")
  parser.add_argument("--beam-preset", default=None, choices=tuple(beam_presets.PRESETS),
                      help="Beam preset (default: local); replaces --config's preset and "
                           "its options")
  parser.add_argument("--beam-option", action="append", metavar="KEY=VALUE",
                      help="option of the Beam preset, e.g. --beam-option direct_num_workers=4")
  parser.add_argument("--distribution", default=None,
                      help="Trainer's tf.distribute strategy: none (default), mirrored, "
                           "multi_worker_mirrored")


def _require_data(parser, args) -> None:
  """`duia run` needs --data and --data-root unless a --config gives them."""
  if args.config is None and (args.data is None or args.data_root is None):
    parser.error("the following arguments are required without --config: --data, --data-root")


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
  p.set_defaults(func=cmd_run, validate=_require_data)

  p = sub.add_parser("report", help="print the report of the latest run under --root")
  _add_run_args(p)
  p.set_defaults(func=cmd_report, data_root=".")

  p = sub.add_parser(
      "compile", help="compile the pipeline for Kubeflow Pipelines v2 / Vertex AI",
      description="Compiles the same pipeline `duia run` runs with KubeflowV2DagRunner. "
                  "Roots should be URIs the cluster reaches (gs://...); every step runs "
                  "--image, which must have this project installed (see the Dockerfile).")
  p.add_argument("--kubeflow", default=None, metavar="OUT",
                 help="output file: .json (PipelineJob, for Vertex AI) or .yaml "
                      "(PipelineSpec, for kfp.Client); default: the config's "
                      "kubeflow.output, duia_pipeline.json")
  p.add_argument("--image", default=None,
                 help="container image of every step (default: the config's kubeflow.image, "
                      "duia-ranking:0.1.0)")
  _add_run_args(p)
  p.set_defaults(func=cmd_compile, validate=_require_data)

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

  p = sub.add_parser("bench", help="benchmarks: `duia bench quality`")
  bench = p.add_subparsers(dest="bench", required=True)
  p = bench.add_parser(
      "quality", help="every variant x seed through Transform and TFMA: tables, N1 sweep, plots",
      description="Runs the pipeline up to Transform once (cache on), trains every variant "
                  "for every seed with the Trainer's code, evaluates each seed's models in one "
                  "TFMA run against that seed's PLE (diffs and 95%% intervals per slice), "
                  "sweeps N1 for UIE/UHSE with the level-1 hit rate, and writes quality.json, "
                  "quality.md and PNG plots to --out.")
  p.add_argument("--data", default="generated",
                 help="movielens-100k, generated, or a mapping config .json (default: generated)")
  p.add_argument("--data-root", default=None,
                 help="raw logs; MovieLens: the folder holding u.data (default: "
                      "$DUIA_MOVIELENS_DIR or ../shared/data/movielens-100k); generated: "
                      "where to write them (default: <out>/data)")
  p.add_argument("--out", default=None, help="output folder (default: runs/quality/<data>)")
  p.add_argument("--rows", type=int, default=100_000, help="exposures to generate (generated)")
  p.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (default 3)")
  p.add_argument("--variants", type=_name_list, default=model_config.VARIANTS,
                 help=f"comma-separated, from {','.join(model_config.VARIANTS)} (default: all); "
                      "ple is always trained as the baseline")
  p.add_argument("--n1", type=_int_list, default=(8, 16, 32, 64),
                 help="level-1 center counts of the sweep (default 8,16,32,64; empty: none)")
  p.add_argument("--sweeps", type=_name_list, default=("uie", "uhse"),
                 help="uie (flat UIE memory), uie_ghca (user GHCA), uhse (item GHCA); "
                      "default uie,uhse")
  p.add_argument("--sweep-seed", type=int, default=0)
  p.add_argument("--epochs", type=float, default=1.0,
                 help="training passes over the train split per model (default 1)")
  p.add_argument("--steps", type=int, default=None, help="training steps per model (overrides --epochs)")
  p.add_argument("--preset", default=None, help="training preset (default by data)")
  p.add_argument("--set", action="append", metavar="KEY=VALUE",
                 help="training override for every model, as in `duia run`")
  p.add_argument("--ci-method", default="jackknife", choices=("jackknife", "bootstrap"),
                 help="TFMA confidence intervals: jackknife (TFMA's default, one pass) or "
                      "bootstrap (Poisson, ~21 passes of the metrics); default jackknife")
  p.add_argument("--eval-tasks", type=_name_list, default=(features.TASK_VALID,),
                 help=f"tasks TFMA evaluates, {features.TASK_VALID} first (default: only it; "
                      "each further binary task about doubles TFMA's time)")
  p.add_argument("--auc-thresholds", type=int, default=10_000,
                 help="num_thresholds of TFMA's AUC (default 10000, TFMA's own)")
  p.add_argument("--from-disk", action="store_true",
                 help="train and evaluate nothing: rebuild the outputs from the models and TFMA "
                      "outputs an earlier run left in --out (e.g. --seeds 1 after a run was "
                      "stopped during seed 1's TFMA)")
  p.add_argument("--resume", action="store_true",
                 help="reuse every model and TFMA output an earlier run in --out finished with "
                      "the same config; train and evaluate the rest (e.g. after a stop)")
  p.set_defaults(func=cmd_bench_quality)
  return parser


def main(argv: Optional[List[str]] = None) -> None:
  parser = build_parser()
  args, unknown = parser.parse_known_args(argv)
  if unknown and args.func is not cmd_serve:
    parser.error(f"unrecognized arguments: {' '.join(unknown)}")
  if args.func is cmd_serve:
    # Flags of the server itself (python -m duia.serving.server --help) pass through.
    args.server_flags = unknown
  if getattr(args, "validate", None):
    args.validate(parser, args)
  _quiet_logs()
  keras_env.check_keras2()
  args.func(args)


if __name__ == "__main__":
  main(sys.argv[1:])
