"""`duia serve` and `duia predict`: TF Serving's APIs on pushed models, and a gRPC client."""

import os

from duia.models import features


def cmd_serve(args) -> None:
  from duia.serving import server  # pylint: disable=g-import-not-at-top
  server.main([f"--model_base_path={args.model_base_path}", f"--model_name={args.model_name}",
               f"--host={args.host}", f"--port={args.port}"]
              + ([f"--rest_api_port={args.rest_api_port}"] if args.rest_api_port is not None
                 else [])
              + args.unknown_flags)


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


def eval_split_dir(metadata) -> str:
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
  examples_dir = args.examples or eval_split_dir(
      os.path.join(os.path.abspath(args.root), "metadata.sqlite"))
  requests = demo_requests.sample_requests(
      demo_requests.read_examples(examples_dir), args.users, args.candidates, args.seed)
  credentials = None
  if args.tls_ca_file:
    from duia.serving import tls  # pylint: disable=g-import-not-at-top
    credentials = tls.channel_credentials(args.tls_ca_file)
  print_rankings(client_lib.RankingClient(args.target, model_name=args.model_name,
                                          credentials=credentials), requests)


def add_parsers(sub) -> None:
  """Adds serve and predict to the `duia` subparsers."""
  # Flags named as tensorflow_model_server's (and the server's own), so a
  # command line moves between the two unchanged.
  p = sub.add_parser(
      "serve", help="serve pushed models over TF Serving's gRPC and REST APIs",
      description="Flags are named as tensorflow_model_server's. Every other flag of "
                  "`python -m duia.serving.server --help` passes through, e.g. "
                  "--enable_batching --version_policy=latest:2 --file_system_poll_wait_seconds=5 "
                  "--ssl_cert_file=server.pem --ssl_key_file=server.key")
  p.add_argument("--model_base_path", required=True,
                 help="folder of numbered versions, e.g. runs/local/serving/duia")
  p.add_argument("--model_name", default="duia",
                 help="the name requests address (ModelSpec.name); default duia")
  p.add_argument("--host", default="127.0.0.1",
                 help="interface to bind; 0.0.0.0 exposes the server (default 127.0.0.1)")
  p.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500)")
  p.add_argument("--rest_api_port", type=int, default=None,
                 help="REST API port (TF Serving uses 8501); no REST API if unset")
  # Flags of the server itself (python -m duia.serving.server --help) pass through.
  p.set_defaults(func=cmd_serve, pass_unknown_flags=True)

  p = sub.add_parser("predict", help="rank eval candidates for a few users via gRPC")
  p.add_argument("--target", default="127.0.0.1:8500", help="the server's host:port")
  p.add_argument("--model-name", default="duia", help="the served model's name")
  p.add_argument("--root", default="runs/local", help="run folder to take eval examples from")
  p.add_argument("--examples", default=None, help="an Examples split folder instead of --root")
  p.add_argument("--users", type=int, default=3, help="users to rank for (default 3)")
  p.add_argument("--candidates", type=int, default=10,
                 help="eval items ranked per user (default 10)")
  p.add_argument("--seed", type=int, default=0, help="seed of the user and candidate draw")
  p.add_argument("--tls-ca-file", default=None,
                 help="PEM CA of a server started with --ssl_cert_file: connect over TLS")
  p.set_defaults(func=cmd_predict)
