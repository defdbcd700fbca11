"""TF Serving's warmup file, written at export from the pipeline's raw eval rows.

The Trainer's own examples are Transform's output (hashed ids, vocabulary
indices), which no serving signature accepts, so the raw eval split is read
from ExampleGen's output folder, named in the Trainer's custom_config. TFX
writes a component output to <pipeline_root>/<node id>/<output key>/
<execution id>/ on the local and Kubeflow runners; any raw eval split of the
same pipeline is valid warmup data, so the newest one is taken. If none is
found, the warmup is skipped with a warning: a missing warmup costs the first
requests some latency, failing the run would cost the model.
"""

import os
from typing import Any, Dict, List, Optional, Sequence

from absl import logging
import tensorflow as tf

from duia import demo_requests
from duia.models import features
from duia.serving import client
from duia.serving import warmup

# custom_config keys for the warmup file: the served model name, and the
# ExampleGen output folder (<pipeline_root>/<node id>/examples) to take raw eval
# examples from.
MODEL_NAME_KEY = "model_name"
RAW_EXAMPLES_KEY = "raw_examples_uri"
EVAL_SPLIT_DIR = "Split-eval"
# Enough rows for 8 users with 2+ exposures on the bundled datasets (their eval
# splits keep a user's rows together), and well under a second to read.
WARMUP_EXAMPLES = 400
MIN_WARMUP_USERS = 2


def latest_eval_files(examples_uri: str) -> List[str]:
  """The eval-split file pattern of the newest Examples artifact in a folder.

  TFX writes a component output to <pipeline_root>/<node id>/<output key>/
  <execution id>/, so the highest id that has eval files is the newest.

  Args:
    examples_uri: The <pipeline_root>/<node id>/<output key> folder.

  Returns:
    [pattern], or [] if the folder holds no eval split yet.
  """
  if not tf.io.gfile.isdir(examples_uri):
    return []
  # Remote file systems list folders with a trailing "/".
  names = [name.rstrip("/") for name in tf.io.gfile.listdir(examples_uri)]
  for execution_id in sorted((int(n) for n in names if n.isdigit()), reverse=True):
    pattern = os.path.join(examples_uri, str(execution_id), EVAL_SPLIT_DIR, "*")
    if tf.io.gfile.glob(pattern):
      return [pattern]
  return []


def write_warmup(serving_model_dir: str, file_patterns: Sequence[str], model_name: str,
                 max_examples: int = WARMUP_EXAMPLES) -> Optional[str]:
  """Writes TF Serving's warmup file into `serving_model_dir`/assets.extra.

  Args:
    serving_model_dir: The exported SavedModel.
    file_patterns: Gzipped TFRecords of raw tf.Examples (ExampleGen output).
    model_name: The name the model is served under.
    max_examples: Examples read at most; it runs in every Trainer run.

  Returns:
    The file's path, or None (with a warning) if the examples hold fewer than
    `MIN_WARMUP_USERS` users a ranking request can be built for.

  Raises:
    FileNotFoundError: if no file matches `file_patterns`.
  """
  serialized = demo_requests.read_serialized(file_patterns, max_examples)
  requests = warmup.requests_from_examples(serialized, model_name)
  users = sum(r.model_spec.signature_name == features.SERVING_RAW_SIGNATURE for r in requests)
  if users < MIN_WARMUP_USERS:
    # A skipped warmup only costs the first requests some latency; failing the
    # run would cost the model.
    logging.warning("Warmup file not written: the %d examples read from %s give %d users with "
                    "2+ exposures and a valid consumption; at least %d are needed.",
                    len(serialized), list(file_patterns), users, MIN_WARMUP_USERS)
    return None
  path = warmup.write_warmup_requests(serving_model_dir, requests)
  logging.info("Wrote %d warmup requests (%d users) to %s", len(requests), users, path)
  return path


def write_run_warmup(serving_model_dir: str,
                     custom_config: Optional[Dict[str, Any]]) -> Optional[str]:
  """`write_warmup` from the raw eval examples named in the Trainer's custom_config.

  `fn_args.eval_files` cannot be used: they are Transform's output (hashed ids,
  vocabulary indices), which no serving signature accepts.
  """
  custom_config = custom_config or {}
  examples_uri = custom_config.get(RAW_EXAMPLES_KEY)
  files = latest_eval_files(examples_uri) if examples_uri else []
  if not files:
    logging.warning("Warmup file not written: no raw eval examples (custom_config[%r] = %r).",
                    RAW_EXAMPLES_KEY, examples_uri)
    return None
  model_name = custom_config.get(MODEL_NAME_KEY, client.DEFAULT_MODEL_NAME)
  return write_warmup(serving_model_dir, files, model_name)
