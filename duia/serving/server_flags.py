"""The model server's command-line flags, named after `tensorflow_model_server`'s.

`build_parser` defines them, `config_from_args` turns them into a
`server.ServerConfig`, and `set_tensorflow_threads` applies the two
TensorFlow thread-pool flags, which must be set before the first op runs.
"""

import argparse

import tensorflow as tf

from duia.serving import batching as batching_lib
from duia.serving import rest
from duia.serving import server
from duia.serving import tls as tls_lib
from duia.serving import version_policy


def build_parser() -> argparse.ArgumentParser:
  """The flags; named after `tensorflow_model_server`'s where one exists."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model_base_path", required=True,
                      help="Folder of numbered model versions, e.g. runs/local/serving/duia.")
  parser.add_argument("--model_name", default=server.DEFAULT_MODEL_NAME,
                      help="The name requests address (ModelSpec.name).")
  parser.add_argument("--host", default="127.0.0.1",
                      help="Interface to bind (0.0.0.0 exposes the server).")
  parser.add_argument("--port", type=int, default=server.DEFAULT_PORT,
                      help="gRPC port; 0 picks a free port (logged at start).")
  parser.add_argument("--rest_api_port", type=int, default=None,
                      help=f"REST port (TF Serving uses {rest.DEFAULT_REST_PORT}); off if unset.")
  parser.add_argument("--max_workers", type=int, default=4,
                      help="Threads of the gRPC server.")
  parser.add_argument("--max_concurrent_requests", type=int, default=None,
                      help="gRPC requests held at once; more get RESOURCE_EXHAUSTED "
                           "(default 8 x max_workers).")
  parser.add_argument("--max_message_bytes", type=int, default=server.DEFAULT_MAX_MESSAGE_BYTES,
                      help="Largest gRPC request or response accepted.")
  parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                      help="Seconds between looks for new versions; 0 turns polling off.")
  parser.add_argument("--version_policy", default="latest:1", type=version_policy.VersionPolicy.parse,
                      help="'latest:N' or 'specific:V1,V2'.")
  parser.add_argument("--enable_batching", action="store_true",
                      help="Merge concurrent `rank` requests into `rank_users` calls.")
  defaults = batching_lib.BatchingConfig()
  for name in ("max_batch_size", "batch_timeout_micros", "num_batch_threads",
               "max_enqueued_batches"):
    parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name),
                        help="Batching knob (with --enable_batching).")
  parser.add_argument("--no_warmup", action="store_true",
                      help="Do not replay assets.extra/tf_serving_warmup_requests.")
  parser.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0,
                      help="Threads one op may use; 0 lets TensorFlow choose. The rank "
                           "graph's ops are small, see benchmarks/serving_bench.py.")
  parser.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0,
                      help="Threads running independent ops of one call; 0 lets "
                           "TensorFlow choose.")
  parser.add_argument("--grace_s", type=float, default=5.0,
                      help="Seconds in-flight requests get to finish on SIGTERM/SIGINT.")
  parser.add_argument("--ssl_cert_file", default=None,
                      help="PEM server certificate: serve gRPC over TLS (with --ssl_key_file).")
  parser.add_argument("--ssl_key_file", default=None, help="PEM private key of the certificate.")
  parser.add_argument("--ssl_client_ca_file", default=None,
                      help="PEM CA: clients must present a certificate it signed (mutual TLS).")
  return parser


def config_from_args(args: argparse.Namespace) -> server.ServerConfig:
  """The ServerConfig of parsed flags; raises ValueError on inconsistent TLS flags."""
  tls = None
  if args.ssl_cert_file or args.ssl_key_file or args.ssl_client_ca_file:
    if not (args.ssl_cert_file and args.ssl_key_file):
      raise ValueError("TLS needs both --ssl_cert_file and --ssl_key_file.")
    tls = tls_lib.TlsConfig(args.ssl_cert_file, args.ssl_key_file, args.ssl_client_ca_file)
  batching_config = None
  if args.enable_batching:
    batching_config = batching_lib.BatchingConfig(
        max_batch_size=args.max_batch_size, batch_timeout_micros=args.batch_timeout_micros,
        num_batch_threads=args.num_batch_threads, max_enqueued_batches=args.max_enqueued_batches)
  return server.ServerConfig(
      model_base_path=args.model_base_path, model_name=args.model_name, host=args.host,
      port=args.port, rest_api_port=args.rest_api_port, max_workers=args.max_workers,
      max_concurrent_requests=args.max_concurrent_requests,
      max_message_bytes=args.max_message_bytes,
      poll_interval_s=args.file_system_poll_wait_seconds, policy=args.version_policy,
      batching=batching_config, warmup=not args.no_warmup, tls=tls)


def set_tensorflow_threads(intra_op: int, inter_op: int) -> None:
  """TensorFlow's thread pools, as `tensorflow_model_server`'s flags of the same
  names set them; 0 keeps TensorFlow's choice. Only effective before the first
  op runs in this process."""
  if intra_op:
    tf.config.threading.set_intra_op_parallelism_threads(intra_op)
  if inter_op:
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)
