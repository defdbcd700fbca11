"""Where the ingestion's outputs go: examples per split, the quarantine, its summary.

`IngestRawLogs` (beam_ingest.py) computes the outputs; `write_outputs` writes
them in TFX's Examples layout plus the quarantine and a `summary.json` of
counts, `read_summary` reads that back, and `run_ingestion` runs both outside
TFX (tests, benchmarks).
"""

import json
import os
from typing import Any, Dict, Iterable

import apache_beam as beam
from apache_beam.io import filesystems

from duia.ingest import beam_ingest
from duia.ingest import mapping as mapping_lib


def count_by_reason(records) -> Any:
  """(source, reason) -> count, as one dict."""
  return (records
          | "ReasonKey" >> beam.Map(lambda r: (f"{r['source']}/{r['reason']}", 1))
          | "CountReasons" >> beam.CombinePerKey(sum)
          | "ToDict" >> beam.combiners.ToDict())


def write_outputs(outputs: Dict[str, Any], examples_uri: str, quarantine_uri: str) -> None:
  """Writes examples as gzipped TFRecords per split, in TFX's Examples layout,
  and the quarantine as JSON lines plus a `summary.json` of counts (and, with
  sparsify on, {"sparsified": {"users": n, "dropped_rows": m}}; with a validation
  holdout, the eval rows it left out)."""
  for split in beam_ingest.SPLITS:
    examples = outputs[split]
    (examples
     | f"Write{split}" >> beam.io.WriteToTFRecord(
         os.path.join(examples_uri, f"Split-{split}", "data_tfrecord"),
         file_name_suffix=".gz"))
  records = outputs[beam_ingest.QUARANTINE]
  (records
   | "QuarantineJson" >> beam.Map(json.dumps, sort_keys=True)
   | "WriteQuarantine" >> beam.io.WriteToText(
       os.path.join(quarantine_uri, "quarantine"), file_name_suffix=".jsonl"))

  counts = {split: outputs[split] | f"Count{split}" >> beam.combiners.Count.Globally()
            for split in beam_ingest.SPLITS}
  reasons = count_by_reason(records)

  def summarize(_, reasons, threshold, sparsified=None, held_out=None, **split_counts):
    summary = {"examples": split_counts, "quarantined": reasons,
               "quarantined_total": sum(reasons.values()),
               beam_ingest.LOW_ACTIVITY_THRESHOLD: threshold}
    if sparsified is not None:
      # Not quarantined: the rows are fine, the run chose to forget them.
      summary[beam_ingest.SPARSIFIED] = {"users": sparsified[0], "dropped_rows": sparsified[1]}
    if held_out is not None:
      summary[beam_ingest.HELD_OUT] = held_out
    return json.dumps(summary, sort_keys=True, indent=1)

  side_inputs = {s: beam.pvalue.AsSingleton(c) for s, c in counts.items()}
  if beam_ingest.SPARSIFIED in outputs:
    side_inputs["sparsified"] = beam.pvalue.AsSingleton(outputs[beam_ingest.SPARSIFIED])
  if beam_ingest.HELD_OUT in outputs:
    side_inputs["held_out"] = beam.pvalue.AsSingleton(outputs[beam_ingest.HELD_OUT])
  (records.pipeline
   | "SummarySeed" >> beam.Create([None])
   | "Summarize" >> beam.Map(
       summarize, beam.pvalue.AsSingleton(reasons),
       beam.pvalue.AsSingleton(outputs[beam_ingest.LOW_ACTIVITY_THRESHOLD]), **side_inputs)
   | "WriteSummary" >> beam.io.WriteToText(
       os.path.join(quarantine_uri, "summary"), file_name_suffix=".json",
       shard_name_template=""))


def read_summary(quarantine_uri: str) -> Dict[str, Any]:
  """Reads the counts the ingestion wrote next to its quarantine output."""
  with filesystems.FileSystems.open(os.path.join(quarantine_uri, "summary.json")) as f:
    return json.loads(f.read())


def run_ingestion(mapping: mapping_lib.MappingConfig, data_root: str, out_dir: str,
                  beam_args: Iterable[str] = ("--runner=FnApiRunner",)) -> Dict[str, Any]:
  """Runs the ingestion alone (outside TFX) into out_dir/{examples,quarantine}.

  Returns:
    The summary: example counts per split and quarantine counts per reason.
  """
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
  examples_uri = os.path.join(out_dir, "examples")
  quarantine_uri = os.path.join(out_dir, "quarantine")
  with beam.Pipeline(options=PipelineOptions(list(beam_args))) as pipeline:
    outputs = pipeline | "Ingest" >> beam_ingest.IngestRawLogs(mapping, data_root)  # pylint: disable=no-value-for-parameter
    write_outputs(outputs, examples_uri, quarantine_uri)
  return read_summary(quarantine_uri)
