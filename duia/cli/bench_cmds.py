"""`duia bench quality`: the papers' ablation through Transform and TFMA (duia.quality)."""

import os

from duia.cli import common
from duia.models import config as model_config
from duia.models import features


def cmd_bench_quality(args) -> None:
  from duia.quality import data as data_lib  # pylint: disable=g-import-not-at-top
  from duia.quality import harness  # pylint: disable=g-import-not-at-top
  # Bad flags and missing data stop here, before the pipeline starts.
  try:
    spec = harness.QualitySpec(
        data=args.data, data_root=args.data_root, out_dir=args.out, rows=args.rows,
        seeds=args.seeds, variants=args.variants, n1_values=args.n1, sweeps=args.sweeps,
        sweep_seed=args.sweep_seed, epochs=args.epochs, steps=args.steps, preset=args.preset,
        overrides=common.parse_overrides(args.set or []), ci_method=args.ci_method,
        eval_tasks=args.eval_tasks, auc_thresholds=args.auc_thresholds,
        sparsify=args.sparsify, sparsify_share=args.sparsify_share,
        activity_exponent=args.activity_exponent,
        activity_deciles=not args.no_activity_deciles)
    harness.check(spec, args.from_disk, args.resume)
  except (data_lib.DataNotFoundError, ValueError) as e:
    raise SystemExit(f"duia: {e}") from e
  results = harness.run(spec, say=common.say, from_disk=args.from_disk, resume=args.resume)
  with open(os.path.join(results["out_dir"], harness.REPORT_MD)) as f:
    print("\n" + f.read())


def add_parsers(sub) -> None:
  """Adds `bench` and its `quality` subcommand to the `duia` subparsers."""
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
  p.add_argument("--variants", type=common.name_list, default=model_config.VARIANTS,
                 help=f"comma-separated, from {','.join(model_config.VARIANTS)} (default: all); "
                      "ple is always trained as the baseline")
  p.add_argument("--n1", type=common.int_list, default=(8, 16, 32, 64),
                 help="level-1 center counts of the sweep (default 8,16,32,64; empty: none)")
  p.add_argument("--sweeps", type=common.name_list, default=("uie", "uhse"),
                 help="uie (flat UIE memory), uie_ghca (user GHCA), uhse (item GHCA); "
                      "default uie,uhse")
  p.add_argument("--sweep-seed", type=int, default=0,
                 help="training seed of the center-count sweep's models (default 0)")
  p.add_argument("--epochs", type=float, default=1.0,
                 help="training passes over the train split per model (default 1)")
  p.add_argument("--steps", type=int, default=None,
                 help="training steps per model (overrides --epochs)")
  p.add_argument("--preset", default=None, help="training preset (default by data)")
  p.add_argument("--set", action="append", metavar="KEY=VALUE",
                 help="training override for every model, as in `duia run`")
  p.add_argument("--ci-method", default="jackknife", choices=("jackknife", "bootstrap"),
                 help="TFMA confidence intervals: jackknife (TFMA's default, one pass) or "
                      "bootstrap (Poisson, ~21 passes of the metrics); default jackknife")
  p.add_argument("--eval-tasks", type=common.name_list, default=(features.TASK_VALID,),
                 help=f"tasks TFMA evaluates, {features.TASK_VALID} first (default: only it; "
                      "each further binary task about doubles TFMA's time)")
  p.add_argument("--auc-thresholds", type=int, default=10_000,
                 help="num_thresholds of TFMA's AUC (default 10000, TFMA's own)")
  p.add_argument("--sparsify", type=int, default=None, metavar="K",
                 help="keep only the first K (1-10) training interactions of a seeded share of "
                      "the users, their eval rows unchanged (long-tailed data from a dense "
                      "log, as cold-start studies do); default: the data as logged")
  p.add_argument("--sparsify-share", type=float, default=0.3,
                 help="share of users --sparsify cuts (default 0.3)")
  p.add_argument("--activity-exponent", type=float, default=0.0,
                 help="generated data: Zipf exponent of the users' activity (a long tail of "
                      "users seen a few times); default 0, log-normal")
  p.add_argument("--no-activity-deciles", action="store_true",
                 help="leave out the TFMA slices by user-activity decile (history length at "
                      "the exposure) and their table and plot; TFMA is then faster")
  p.add_argument("--from-disk", action="store_true",
                 help="train and evaluate nothing: rebuild the outputs from the models and TFMA "
                      "outputs an earlier run left in --out (e.g. --seeds 1 after a run was "
                      "stopped during seed 1's TFMA)")
  p.add_argument("--resume", action="store_true",
                 help="reuse every model and TFMA output an earlier run in --out finished with "
                      "the same config; train and evaluate the rest (e.g. after a stop)")
  p.set_defaults(func=cmd_bench_quality)
