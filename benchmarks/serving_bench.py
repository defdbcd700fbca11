"""Serving latency and throughput: 1 user x N candidates over gRPC (serving issue).

Builds one `rank` request per sampled eval user (1 user, N candidates, from
real eval examples; N from `--candidates`, default 100 and 1,000), then
measures, for the pushed model's weights saved with this code's `rank` graph
and with the old per-candidate one (`rank_graphs`; --no_compare times the
pushed model as it is):
  - bare: the SavedModel's `rank` signature called in this process on the
    same tensors, the way the server calls it (no serialization, no gRPC);
  - backend: the server's request path in this process, without gRPC
    (`ServingBackend.predict`: the checks, the call with the request's
    TensorProtos decoded in the graph, the response protos), which splits the
    overhead into request handling and transport;
  - merged: U requests of different users in one `rank_users` call in this
    process (what the server's batcher makes of concurrent `rank` requests),
    p50 per call divided by U: a request's share;
  - sequential: one client, one request at a time, against the server;
  - concurrent: 1, 2, 4, 8 client threads (one channel each) sending at once.
Reports p50/p99 latency, candidates per second, and the server's overhead over
the bare call (server p50 - bare p50), and the old graph's figures over the
current one's, measured in the same run. The server runs in a subprocess
(`python -m duia.serving.server`), as in production, so client and server do
not share a Python interpreter; on a 2-core machine they do share the cores.
Prints a table and saves benchmarks/results/serving_threads_<intra>_<inter>.json
(`_batching` added with --enable_batching in --server_flags).

    python -m benchmarks.serving_bench --model_base_path RUN/serving/duia --root RUN

`RUN` is a pipeline run folder, e.g. from `duia demo --variant duia --root runs/demo-duia`.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List

from duia import keras_env  # noqa: F401  pylint: disable=unused-import
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from benchmarks import rank_graphs
from duia import demo_requests
from duia.models import features
from duia.pipeline import report
from duia.serving import client as client_lib
from duia.serving import model_loader
from duia.serving import model_store
from duia.serving import server_flags

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
  # Candidates beyond the eval split's items (1,000 need more than a small
  # run's eval items) come from the training split too.
  pool = examples + demo_requests.read_examples(os.path.join(uri, "Split-train"))
  sampled = demo_requests.sample_requests(examples, num_users, num_candidates,
                                          pool_examples=pool)
  requests = [client_lib.build_rank_request(r.user, r.candidates, r.ts, model_name=model_name)
              for r in sampled if len(r.candidates) == num_candidates]
  if not requests:
    raise SystemExit(f"No eval user has {num_candidates} candidates available.")
  return requests


def time_bare(model_base_path: str, requests, repeats: int) -> Dict[str, float]:
  """In-process calls of the `rank` signature on the requests' tensors."""
  # The signature as the server calls it (model_loader's flat call).
  version, _ = model_loader.latest_version(model_base_path)
  loaded = model_loader.load_version(model_base_path, version, "bench")
  function = loaded.signatures[features.SERVING_RAW_SIGNATURE].function
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


def time_merged(model_base_path: str, requests, repeats: int) -> Dict[str, float]:
  """U requests of different users as one `rank_users` call, in process, as the
  batcher merges concurrent ones (`merged_users`); per request and per call.

  Empty for a model without `rank_users` (the old graph).
  """
  from duia.serving import merged_users  # pylint: disable=g-import-not-at-top
  version, _ = model_loader.latest_version(model_base_path)
  loaded = model_loader.load_version(model_base_path, version, "bench")
  rank = loaded.signatures[features.SERVING_RAW_SIGNATURE]
  if not merged_users.available(loaded, rank):
    return {}
  merger = merged_users.for_model(loaded)
  # Checked and serialized beforehand, as the server's request threads do.
  checked = [merger.checked(r.inputs) for r in requests]
  users = merger.users_per_call

  def call(i):
    chosen = [checked[(i * users + j) % len(checked)] for j in range(users)]
    merger.run([c[0] for c in chosen], [c[1] for c in chosen], rank.outputs)

  for i in range(5):
    call(i)  # tracing for k = U, and warm-up
  latencies = []
  for i in range(max(50, repeats // users)):
    start = time.perf_counter()
    call(i)
    latencies.append(time.perf_counter() - start)
  per_call = _percentiles(latencies)
  return {"users_per_call": users, "p50_ms_per_call": per_call["p50_ms"],
          "p50_ms_per_request": round(per_call["p50_ms"] / users, 3)}


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


def measure(model_base_path: str, model_name: str, requests, args) -> Dict:
  """Every measurement of one model and one candidate count."""
  bare = time_bare(model_base_path, requests, args.requests)
  in_process = time_backend(model_base_path, model_name, requests, args.requests)
  merged = time_merged(model_base_path, requests, args.requests)
  process, target = start_server_process(model_base_path, model_name, args.server_flags.split())
  try:
    sequential = time_clients(target, requests, 1, args.requests)
    concurrent = [time_clients(target, requests, c, max(50, args.requests // c))
                  for c in (int(c) for c in args.clients.split(","))]
  finally:
    process.terminate()
    process.wait(30)
  return {"bare": bare, "backend_in_process": in_process, "merged_in_process": merged,
          "sequential": sequential,
          "concurrent": concurrent,
          "overhead_p50_ms": round(sequential["p50_ms"] - bare["p50_ms"], 3)}


def _history_lengths(requests) -> float:
  ids = [tf.make_ndarray(r.inputs[features.HIST_ITEM_IDS]) for r in requests]
  return float(np.mean([(i != b"").sum() for i in ids]))


def print_table(results: List[Dict]) -> None:
  clients = [c["clients"] for c in results[0]["measured"]["concurrent"]]
  header = (f"{'graph':<10} {'cands':>5} {'bare p50':>9} {'bare p99':>9} {'backend':>8} "
            f"{'merged/req':>10} "
            f"{'seq p50':>8} {'seq p99':>8} {'overhead':>9} "
            + " ".join(f"{f'{c} cl cand/s':>13}" for c in clients))
  print(header)
  for r in results:
    m = r["measured"]
    print(f"{r['graph']:<10} {r['candidates']:>5} {m['bare']['p50_ms']:>9.2f} "
          f"{m['bare']['p99_ms']:>9.2f} {m['backend_in_process']['p50_ms']:>8.2f} "
          f"{m['merged_in_process'].get('p50_ms_per_request', float('nan')):>10.2f} "
          f"{m['sequential']['p50_ms']:>8.2f} {m['sequential']['p99_ms']:>8.2f} "
          f"{m['overhead_p50_ms']:>9.2f} "
          + " ".join(f"{c['candidates_per_s']:>13,}" for c in m["concurrent"]))
  by_key = {(r["graph"], r["candidates"]): r["measured"] for r in results}
  for (graph, n), m in by_key.items():
    old = by_key.get((BROADCAST, n))
    if graph == BROADCAST or old is None:
      continue
    four = {c["clients"]: c["candidates_per_s"] for c in m["concurrent"]}
    four_old = {c["clients"]: c["candidates_per_s"] for c in old["concurrent"]}
    print(f"{n} candidates, speed-up of this graph over the old one (latency old / new, "
          f"throughput new / old): bare p50 "
          f"{old['bare']['p50_ms'] / m['bare']['p50_ms']:.2f}x, server p50 "
          f"{old['sequential']['p50_ms'] / m['sequential']['p50_ms']:.2f}x"
          + "".join(f", {c} clients throughput {four[c] / four_old[c]:.2f}x"
                    for c in four if c in four_old and four_old[c]))


BROADCAST = rank_graphs.BROADCAST


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model_base_path", required=True)
  parser.add_argument("--root", required=True, help="pipeline run folder (eval examples)")
  parser.add_argument("--model_name", default="duia")
  parser.add_argument("--candidates", default="100,1000", help="comma-separated counts")
  parser.add_argument("--users", type=int, default=50)
  parser.add_argument("--requests", type=int, default=400, help="per measurement")
  parser.add_argument("--clients", default="1,2,4,8")
  parser.add_argument("--server_flags", default="", help="extra server flags, space-separated")
  parser.add_argument("--no_compare", action="store_true",
                      help="time the pushed model as it is, instead of its weights saved "
                           "with this code's rank graph and with the old one (rank_graphs)")
  parser.add_argument("--tensorflow_threads", default="0,0", metavar="INTRA,INTER",
                      help="TensorFlow's intra- and inter-op threads, in this process (the "
                           "bare and backend calls) and in the server; 0 lets it choose")
  parser.add_argument("--results_name", default=None,
                      help="JSON file name in benchmarks/results (default "
                           "serving_threads_<intra>_<inter>[_batching].json)")
  args = parser.parse_args()
  intra, inter = (int(v) for v in args.tensorflow_threads.split(","))
  server_flags.set_tensorflow_threads(intra, inter)
  args.server_flags = " ".join([args.server_flags, f"--tensorflow_intra_op_parallelism={intra}",
                                f"--tensorflow_inter_op_parallelism={inter}"]).strip()

  graphs = {"pushed": args.model_base_path}
  scratch = None
  if not args.no_compare:
    scratch = tempfile.mkdtemp(prefix="rank_graphs_")
    _, path = model_loader.latest_version(args.model_base_path)
    graphs = rank_graphs.export_graphs(args.root, path, scratch)
  results = []
  try:
    for n in (int(c) for c in args.candidates.split(",")):
      requests = build_requests(args.root, args.users, n, args.model_name)
      for graph, base_path in graphs.items():
        measured = measure(base_path, args.model_name, requests, args)
        results.append({"graph": graph, "candidates": n, "requests": len(requests),
                        "mean_history_length": _history_lengths(requests),
                        "measured": measured})
        print(f"{graph} graph, {n} candidates: bare p50 {measured['bare']['p50_ms']:.2f} ms, "
              f"server p50 {measured['sequential']['p50_ms']:.2f} ms", flush=True)
  finally:
    if scratch:
      shutil.rmtree(scratch, ignore_errors=True)
  print(f"\n1 user x N candidates, {os.cpu_count()} CPUs, latencies in ms; "
        "overhead = server p50 - bare p50; 'user_once' is this code's rank graph, "
        "'broadcast' the old one (user side per candidate), on the same weights")
  print_table(results)
  os.makedirs(os.path.join(REPO, "benchmarks", "results"), exist_ok=True)
  batching = "_batching" if "--enable_batching" in args.server_flags else ""
  path = os.path.join(REPO, "benchmarks", "results",
                      args.results_name or f"serving_threads_{intra}_{inter}{batching}.json")
  with open(path, "w") as f:
    json.dump({"model_base_path": args.model_base_path, "server_flags": args.server_flags,
               "tensorflow_threads": [intra, inter],
               "cpus": os.cpu_count(), "results": results}, f, indent=1)
  print(f"saved {path}")


if __name__ == "__main__":
  main()
