"""`duia generate`, `duia run`, `duia report`, `duia compile`: the pipeline's subcommands."""

import dataclasses
import json
import os
from typing import Sequence

from duia.cli import common
from duia.models import config as model_config
from duia.pipeline import beam_presets


def cmd_generate(args) -> None:
  from duia.data import generator  # pylint: disable=g-import-not-at-top
  config = generator.GeneratorConfig(
      num_users=args.users, num_items=args.items, num_exposures=args.exposures,
      seed=args.seed, days=args.days)
  common.say(f"generating {args.exposures} exposures into {args.out}")
  summary = generator.generate(args.out, config)
  common.say("done: " + json.dumps({k: v for k, v in summary.items() if k != "files"}))


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


def runtime_config_of(args):
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
  overrides = common.parse_overrides(getattr(args, "set", None) or [])
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


def pipeline_config(args, runtime=None):
  """The PipelineConfig of `args` (or of an already built runtime config)."""
  try:
    return (runtime or runtime_config_of(args)).to_pipeline_config()
  except ValueError as e:
    raise SystemExit(f"duia: {e}") from e


def print_report(config) -> None:
  """Per-component times, blessing, pushed model and the TFMA metrics table."""
  from duia.pipeline import report  # pylint: disable=g-import-not-at-top
  times = report.component_seconds(config.metadata_source)
  width = max([len(name) for name, _ in times] + [len("total")])
  print("\nComponent wall time (s), from ML Metadata:")
  for name, seconds in times:
    print(f"  {name:<{width}} {seconds:8.1f}")
  print(f"  {'total':<{width}} {sum(s for _, s in times):8.1f}")
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
  from duia.validation import findings  # pylint: disable=g-import-not-at-top
  config = pipeline_config(args)
  common.say(f"pipeline root {config.root}; data {config.data_root}; mapping {config.mapping_path}")
  try:
    local_runner.run(config)
  except findings.DataValidationError as e:
    # The message names every anomaly and how to let it through; the
    # traceback through TFX's launcher would only bury it.
    raise SystemExit(f"duia run: {e}") from e
  common.say("pipeline finished")
  print_report(config)


def cmd_report(args) -> None:
  print_report(pipeline_config(args))


def cmd_compile(args) -> None:
  from duia.pipeline import kubeflow_runner  # pylint: disable=g-import-not-at-top
  runtime = runtime_config_of(args)
  config = pipeline_config(args, runtime)
  output = kubeflow_runner.compile_pipeline(config, runtime.kubeflow.image,
                                            runtime.kubeflow.output)
  common.say(f"wrote the Kubeflow V2 pipeline {output} (image {runtime.kubeflow.image}; "
       f"pipeline root {config.pipeline_root})")


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
                      help="model variant: ple (baseline), a DUIA ablation row or him "
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


def add_parsers(sub) -> None:
  """Adds generate, run, report and compile to the `duia` subparsers."""
  p = sub.add_parser("generate", help="write synthetic exposure logs")
  p.add_argument("--out", required=True, help="folder to write exposures/, users/, items/ to")
  p.add_argument("--exposures", type=int, default=20_000, help="exposure rows (default 20,000)")
  p.add_argument("--users", type=int, default=2_000, help="users (default 2,000)")
  p.add_argument("--items", type=int, default=3_000, help="items (default 3,000)")
  p.add_argument("--days", type=int, default=14, help="days the exposures span (default 14)")
  p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
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
