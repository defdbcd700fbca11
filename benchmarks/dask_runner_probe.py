"""Does Beam's DaskRunner run what the pipeline needs? A probe, not a benchmark.

The ingestion (and every TFX component) reads files with `beam.io.Read`
transforms and uses multi-output ParDos; this runs the smallest pipeline with
both (ReadFromText -> ParDo with a tagged output -> GroupByKey -> WriteToText)
on Beam's DaskRunner over a `dask.distributed` LocalCluster of two worker
processes, and prints where it stops. Dask is not one of the project's
dependencies (it would only be installed for this); put it beside the venv:

    .venv/bin/python -m pip install --target /tmp/dasklib "dask[distributed]"
    .venv/bin/python -m benchmarks.dask_runner_probe --dask_path /tmp/dasklib

Seen on 2026-12-07 with Beam 2.74 and dask 2026.11: the pipeline fails while
it is translated, at the read (`transform_evaluator.py`, "'NoneType' object
has no attribute 'map'": the runner has no translation for `beam.io.Read`).
"""

import argparse
import os
import sys
import tempfile
import traceback
import typing

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"


def _parse(line: str) -> typing.Iterable[typing.Any]:
  key, value = line.split(",")
  if int(value) % 10 == 0:
    yield beam.pvalue.TaggedOutput("bad", line)
  else:
    yield key, int(value)


def run_probe(work: str, scheduler: str) -> None:
  """The probe pipeline on the DaskRunner at `scheduler`; raises where it fails."""
  source = os.path.join(work, "in.txt")
  with open(source, "w") as f:
    f.write("\n".join(f"k{i % 5},{i}" for i in range(100)))
  options = PipelineOptions([f"--runner={DASK_RUNNER}", f"--dask_client_address={scheduler}"])
  with beam.Pipeline(options=options) as pipeline:
    parsed = (pipeline
              | "Read" >> beam.io.ReadFromText(source)
              | "Parse" >> beam.FlatMap(_parse).with_output_types(typing.Any)
              .with_outputs("bad", main="good"))
    (parsed.good
     | "Group" >> beam.GroupByKey()
     | "Sum" >> beam.MapTuple(lambda k, values: f"{k} {sum(values)}")
     | "WriteGood" >> beam.io.WriteToText(os.path.join(work, "good")))
    _ = parsed.bad | "WriteBad" >> beam.io.WriteToText(os.path.join(work, "bad"))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dask_path", help="folder dask was installed into with --target "
                      "(appended to sys.path, so the venv's own packages win)")
  parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
  args = parser.parse_args()
  if args.dask_path:
    sys.path.append(args.dask_path)
  try:
    from distributed import Client, LocalCluster  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise SystemExit("dask.distributed is not installed; see this module's docstring")
  cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True)
  client = Client(cluster)
  scheduler = client.scheduler_info()["address"]
  print(f"dask LocalCluster with {args.workers} worker processes at {scheduler}")
  with tempfile.TemporaryDirectory() as work:
    try:
      run_probe(work, scheduler)
      print("DaskRunner ran the probe pipeline:", sorted(os.listdir(work)))
    except Exception:  # pylint: disable=broad-except
      print("DaskRunner failed on the probe pipeline:")
      traceback.print_exc(limit=-3)
  client.close()
  cluster.close()


if __name__ == "__main__":
  main()
