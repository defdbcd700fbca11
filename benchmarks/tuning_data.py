"""The data sets the DUIA screens run on, up to Transform, with a choice of holdout.

Names: `movielens` (MovieLens 100K), `movielens-sparse<k>` (the same with the
first k training interactions kept for 30% of the users, the mapping's
`sparsify`), `gen-<N>k` (N thousand generated exposures) and `gen-zipf-<N>k`
(the same with a Zipf activity tail, `activity_exponent` 1).

`holdout="validation"` cuts a validation split out of the training data (the
mapping's `split.holdout`): the eval rows are left out altogether and the
last part of each user's (per-user split) or of the log's (global split)
training rows is scored instead, so settings can be compared without looking
at the eval split. `holdout="eval"` scores the eval split.
"""

import json
import os
from typing import Tuple

from duia.data import generator
from duia.ingest import mapping as mapping_lib
from duia.models import config as model_config
from duia.pipeline import configs, local_runner, report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOVIELENS = os.environ.get("DUIA_MOVIELENS_DIR", os.path.join(
    os.path.dirname(REPO), "shared", "data", "movielens-100k"))
SPARSE_PREFIX = "movielens-sparse"
# Cold-start studies' share of users made sparse.
SPARSE_SHARE = 0.3
ZIPF = 1.0


def mapping_for(dataset: str, holdout: str) -> Tuple[mapping_lib.MappingConfig, str, str]:
  """(mapping, data root, training preset) of a screen data set name."""
  if dataset == "movielens" or dataset.startswith(SPARSE_PREFIX):
    if not os.path.exists(os.path.join(MOVIELENS, "u.data")):
      raise FileNotFoundError(f"MovieLens 100K not found in {MOVIELENS} (set DUIA_MOVIELENS_DIR)")
    mapping = mapping_lib.load_mapping(configs.packaged_mapping("movielens-100k"))
    if dataset != "movielens":
      mapping = mapping.with_sparsify(int(dataset[len(SPARSE_PREFIX):]), share=SPARSE_SHARE,
                                      seed=0)
    data_root, preset = MOVIELENS, "movielens"
  elif dataset.startswith("gen-"):
    mapping = mapping_lib.load_mapping(configs.packaged_mapping("generated"))
    data_root, preset = None, "small"
  else:
    raise ValueError(f"Unknown dataset {dataset!r}: movielens, movielens-sparse<k> or gen-<N>k")
  if holdout == "validation":
    mapping = mapping.with_validation_holdout()
  elif holdout != "eval":
    raise ValueError(f"holdout must be 'validation' or 'eval'. Received: {holdout!r}")
  return mapping, data_root, preset


def prepare(dataset: str, work: str, holdout: str = "validation"):
  """Runs the pipeline up to Transform (cached); returns (config, tft output, examples uri)."""
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  mapping, data_root, preset = mapping_for(dataset, holdout)
  root = os.path.join(work, f"{dataset}-{holdout}")
  if data_root is None:  # generated: shared by both holdouts
    rows = int(dataset.split("-")[-1].rstrip("k")) * 1000
    data_root = os.path.join(work, dataset, "data")
    if not os.path.exists(os.path.join(data_root, "summary.json")):
      generator.generate(data_root, generator.GeneratorConfig(
          num_exposures=rows, seed=0, activity_exponent=ZIPF if "zipf" in dataset else 0.0))
  os.makedirs(root, exist_ok=True)
  mapping_path = os.path.join(root, f"{mapping.name}.json")
  with open(mapping_path, "w") as f:
    json.dump(json.loads(mapping.to_json()), f, indent=1, sort_keys=True)
  config = configs.PipelineConfig(
      root=os.path.join(root, "run"), data_root=data_root, mapping_path=mapping_path,
      training=model_config.preset(preset), enable_cache=True)
  local_runner.run(config, to_node="Transform")
  graph = report.latest_output_uri(config.metadata_path, "Transform", "transform_graph")
  examples = report.latest_output_uri(config.metadata_path, "Transform", "transformed_examples")
  return config, tft.TFTransformOutput(graph), examples
