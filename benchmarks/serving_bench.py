"""Serving latency and throughput: 1 user x N candidates over gRPC (serving issue).

Builds one `rank` request per sampled eval user (1 user, `--candidates`
candidates, from real eval examples), then measures:
  - bare: the same SavedModel's `rank` signature called in this process on the
    same tensors (no server, no serialization);
  - backend: the server's request path in this process, without gRPC
    (`ServingBackend.predict`: TensorProto decoding and checks, the call,
    the response protos), which splits the overhead into request handling and
    transport;
  - sequential: one client, one request at a time, against the server;
  - concurrent: 1, 2, 4, 8 client threads (one channel each) sending at once.
Reports p50/p99 latency, candidates per second, and the server's overhead over
the bare call (server p50 - bare p50). The server runs in a subprocess
(`python -m duia.serving.server`), as in production, so client and server do
not share a Python interpreter; on a 2-core machine they do share the cores.
Prints a table and saves benchmarks/results/serving.json.

    python -m benchmarks.serving_bench --model_base_path RUN/serving/duia --root RUN

`RUN` is a pipeline run folder, e.g. from `duia demo --variant duia --root runs/demo-duia`.
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List

from duia import keras_env  # noqa: F401  pylint: disable=unused-import
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from duia import demo_requests
from duia.models import features
from duia.pipeline import report
from duia.serving import client as client_lib
from duia.serving import model_loader
from duia.serving import model_store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _percentiles(latencies_s: List[float]) -> Dict[str, float]:
  ms = np.asarray(latencies_s) * 1e3
  return {"p50_ms": round(float(np.percentile(ms, 50)), 3),
          "p99_ms": round(float(np.percentile(ms, 99)), 3),
          "mean_ms": round(float(ms.mean()), 3)}


def build_requests(root: str, num_users: int, num_candidates: int, model_name: str):
  """Rank requests of real eval users, each with exactly `num_candidates` candidates."""
  uri = report.latest_output_uri(os.path.join(root, "metadata.sqlite"), "RawLogExampleGen",
                                 "examples")
  if uri is None:
    raise SystemExit(f"No Examples artifact under {root}; run the pipeline first "
                     "(e.g. duia demo --variant duia --root runs/demo-duia).")
  examples = demo_requests.read_examples(os.path.join(uri, "Split-eval"))
  sampled = demo_requests.sample_requests(examples, num_users, num_candidates)
  requests = [client_lib.build_rank_request(r.user, r.candidates, r.ts, model_name=model_name)
              for r in sampled if len(r.candidates) == num_candidates]
  if not requests:
    raise SystemExit(f"No eval user has {num_candidates} candidates available.")
  return requests


def time_bare(model_base_path: str, requests, repeats: int) -> Dict[str, float]:
  """In-process calls of the `rank` signature on the requests' tensors."""
  _, path = model_loader.latest_version(model_base_path)
  function = tf.saved_model.load(path).signatures[features.SERVING_RAW_SIGNATURE]
  inputs = [{k: tf.constant(tf.make_ndarray(v)) for k, v in r.inputs.items()} for r in requests]
  for x in inputs[:5]:
    function(**x)  # warm-up
  latencies = []
  for i in range(repeats):
    start = time.perf_counter()
    outputs = function(**inputs[i % len(inputs)])
    outputs[features.FUSED_SCORE].numpy()
    latencies.append(time.perf_counter() - start)
  return _percentiles(latencies)


def time_backend(model_base_path: str, model_name: str, requests, repeats: int):
  """The server's Predict path in-process: protos in, protos out, no gRPC."""
  from duia.serving import backend as backend_lib  # pylint: disable=g-import-not-at-top
  store = model_store.ModelStore(model_base_path, model_name)
  store.refresh()
  serving = backend_lib.ServingBackend({model_name: store})
  for r in requests[:5]:
    serving.predict(r)
  latencies = []
  for i in range(repeats):
    start = time.perf_counter()
    serving.predict(requests[i % len(requests)])
    latencies.append(time.perf_counter() - start)
  return _percentiles(latencies)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_server_process(model_base_path: str, model_name: str, extra_flags: List[str]):
  port = _free_port()
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
  process = subprocess.Popen(
      [sys.executable, "-m", "duia.serving.server", f"--model_base_path={model_base_path}",
       f"--model_name={model_name}", f"--port={port}", "--file_system_poll_wait_seconds=0"]
      + extra_flags, env=env, stderr=subprocess.PIPE, text=True)
  for line in process.stderr:
    if re.search(r"Serving model .* on ", line):
      break
  else:
    raise SystemExit(f"The server exited before serving (code {process.wait()}).")
  # Keep draining its log so the pipe never fills and stalls it.
  threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
  return process, f"127.0.0.1:{port}"


def time_clients(target: str, requests, num_clients: int, per_client: int):
  """`num_clients` threads, one channel each, `per_client` requests each."""
  latencies: List[float] = []
  failures: List[str] = []
  barrier = threading.Barrier(num_clients + 1)

  def client(offset: int):
    with grpc.insecure_channel(target) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      for r in requests[:3]:
        stub.Predict(r, timeout=30)  # connect and warm up before the clock starts
      barrier.wait()
      mine = []
      for i in range(per_client):
        start = time.perf_counter()
        try:
          stub.Predict(requests[(offset + i) % len(requests)], timeout=30)
        except grpc.RpcError as e:
          failures.append(e.code().name)
        mine.append(time.perf_counter() - start)
      latencies.extend(mine)

  threads = [threading.Thread(target=client, args=(c * 7,)) for c in range(num_clients)]
  for t in threads:
    t.start()
  barrier.wait()
  start = time.perf_counter()
  for t in threads:
    t.join()
  wall = time.perf_counter() - start
  candidates = num_clients * per_client * int(
      tf.make_ndarray(requests[0].inputs[features.ITEM_ID]).shape[0])
  result = _percentiles(latencies)
  result.update(clients=num_clients, requests=num_clients * per_client,
                failed=len(failures), candidates_per_s=round(candidates / wall))
  return result


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model_base_path", required=True)
  parser.add_argument("--root", required=True, help="pipeline run folder (eval examples)")
  parser.add_argument("--model_name", default="duia")
  parser.add_argument("--candidates", type=int, default=100)
  parser.add_argument("--users", type=int, default=50)
  parser.add_argument("--requests", type=int, default=400, help="per measurement")
  parser.add_argument("--clients", default="1,2,4,8")
  parser.add_argument("--server_flags", default="", help="extra server flags, space-separated")
  args = parser.parse_args()

  requests = build_requests(args.root, args.users, args.candidates, args.model_name)
  bare = time_bare(args.model_base_path, requests, args.requests)
  print(f"bare in-process call: p50 {bare['p50_ms']:.2f} ms, p99 {bare['p99_ms']:.2f} ms",
        flush=True)
  in_process = time_backend(args.model_base_path, args.model_name, requests, args.requests)
  process, target = start_server_process(args.model_base_path, args.model_name,
                                         args.server_flags.split())
  try:
    sequential = time_clients(target, requests, 1, args.requests)
    concurrent = [time_clients(target, requests, c, max(50, args.requests // c))
                  for c in (int(c) for c in args.clients.split(","))]
  finally:
    process.terminate()
    process.wait(30)
  overhead = round(sequential["p50_ms"] - bare["p50_ms"], 3)
  print(f"\n1 user x {args.candidates} candidates, {len(requests)} distinct requests, "
        f"{os.cpu_count()} CPUs; server overhead (p50 - bare p50): {overhead:.2f} ms")
  print(f"{'case':<14} {'p50 ms':>8} {'p99 ms':>8} {'cand/s':>9} {'failed':>7}")
  print(f"{'bare':<14} {bare['p50_ms']:>8.2f} {bare['p99_ms']:>8.2f} {'':>9} {'':>7}")
  print(f"{'backend':<14} {in_process['p50_ms']:>8.2f} {in_process['p99_ms']:>8.2f} "
        f"{'':>9} {'':>7}")
  for name, r in [("sequential", sequential)] + [(f"{r['clients']} clients", r)
                                                 for r in concurrent]:
    print(f"{name:<14} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['candidates_per_s']:>9,} "
          f"{r['failed']:>7}")
  os.makedirs(os.path.join(REPO, "benchmarks", "results"), exist_ok=True)
  path = os.path.join(REPO, "benchmarks", "results", "serving.json")
  with open(path, "w") as f:
    json.dump({"candidates": args.candidates, "model_base_path": args.model_base_path,
               "bare": bare, "backend_in_process": in_process, "sequential": sequential, "concurrent": concurrent,
               "overhead_p50_ms": overhead, "server_flags": args.server_flags}, f, indent=1)
  print(f"saved {path}")


if __name__ == "__main__":
  main()
