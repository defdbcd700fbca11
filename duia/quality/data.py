"""Which raw logs the quality harness runs on: MovieLens 100K, generated, or a mapping.

`--data` is a packaged mapping name (`movielens-100k`, `generated`) or the path
of a mapping config `.json`; the data root comes from `--data-root`, else
(MovieLens) `$DUIA_MOVIELENS_DIR` or `../shared/data/movielens-100k` next to
the repository, else (generated) a folder under the output directory that is
filled by the generator on first use.
"""

import dataclasses
import json
import os
from typing import Optional

from duia.data import generator
from duia.pipeline import configs

MOVIELENS = "movielens-100k"
GENERATED = "generated"
MOVIELENS_URL = "https://grouplens.org/datasets/movielens/100k/"
MOVIELENS_ENV = "DUIA_MOVIELENS_DIR"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class DataNotFoundError(FileNotFoundError):
  """The raw logs are not where they were looked for."""


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Resolved input of a quality run.

  Attributes:
    name: short name for output folders (`movielens-100k`, `generated`, or the
      mapping file's stem).
    mapping_path: the mapping config file.
    data_root: folder holding the raw logs.
    generate_rows: for generated data, the exposures to write into `data_root`
      when it does not hold them yet; None otherwise.
  """
  name: str
  mapping_path: str
  data_root: str
  generate_rows: Optional[int] = None


def default_movielens_dir() -> str:
  return os.environ.get(MOVIELENS_ENV) or os.path.join(
      os.path.dirname(REPO_ROOT), "shared", "data", MOVIELENS)


def name_of(data: str) -> str:
  """The short name of `data` (a mapping file's stem for a path)."""
  if data.endswith(".json"):
    return os.path.splitext(os.path.basename(data))[0]
  return data


def sparsified(dataset: Dataset, keep: Optional[int], share: float, out_dir: str) -> Dataset:
  """`dataset` with its mapping's `sparsify` set (MappingConfig.with_sparsify).

  The derived mapping is written to `<out_dir>/mapping/<name>.json`, which the
  pipeline then reads; with `keep` None the dataset is returned unchanged.
  """
  if keep is None:
    return dataset
  from duia.ingest import mapping as mapping_lib  # pylint: disable=g-import-not-at-top
  mapping = mapping_lib.load_mapping(dataset.mapping_path).with_sparsify(keep, share=share)
  path = os.path.join(out_dir, "mapping", f"{mapping.name}.json")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  text = json.dumps(json.loads(mapping.to_json()), indent=1, sort_keys=True)
  with open(path, "w") as f:
    f.write(text)
  return dataclasses.replace(dataset, name=mapping.name, mapping_path=path)


def resolve(data: str, data_root: Optional[str], rows: int, out_dir: str) -> Dataset:
  """Finds the mapping and the data root of `data`.

  Args:
    data: `movielens-100k`, `generated` or a mapping config `.json` path.
    data_root: the folder of the raw logs, or None for the default.
    rows: exposures to generate for `generated` (ignored otherwise).
    out_dir: the run's output folder (generated data goes to `<out_dir>/data`
      when no `data_root` is given).

  Returns:
    The resolved dataset.

  Raises:
    DataNotFoundError: MovieLens is not there; the message says where it was
      looked for and how to get it.
    ValueError: an unknown `data`, or a mapping file without `data_root`.
  """
  if data == MOVIELENS:
    root = os.path.abspath(data_root or default_movielens_dir())
    if not os.path.exists(os.path.join(root, "u.data")):
      where = ("--data-root" if data_root else
               f"${MOVIELENS_ENV}" if os.environ.get(MOVIELENS_ENV) else "the default path")
      raise DataNotFoundError(
          f"MovieLens 100K not found: no u.data in {root} (from {where}). Download "
          f"ml-100k.zip from {MOVIELENS_URL}, unzip it, and point --data-root (or "
          f"${MOVIELENS_ENV}) at the folder holding u.data, u.user and u.item.")
    return Dataset(MOVIELENS, configs.packaged_mapping(MOVIELENS), root)
  if data == GENERATED:
    if rows < 1:
      raise ValueError(f"--rows must be >= 1 for generated data. Received: {rows}")
    root = os.path.abspath(data_root or os.path.join(out_dir, "data"))
    return Dataset(GENERATED, configs.packaged_mapping(GENERATED), root, generate_rows=rows)
  if data.endswith(".json"):
    if not os.path.exists(data):
      raise ValueError(f"No mapping config at {data!r}")
    if not data_root:
      raise ValueError(f"--data-root is required with a mapping config ({data})")
    return Dataset(name_of(data), os.path.abspath(data), os.path.abspath(data_root))
  raise ValueError(f"--data must be {MOVIELENS!r}, {GENERATED!r} or a mapping config .json "
                   f"path. Received: {data!r}")


def ensure_generated(dataset: Dataset, **generator_args) -> None:
  """Writes the generated logs unless `data_root` already holds the same config's.

  Args:
    dataset: a resolved dataset; a no-op unless it is generated.
    **generator_args: other `GeneratorConfig` fields (sizes for tests, the
      activity tail).
  """
  if dataset.generate_rows is None:
    return
  config = generator.GeneratorConfig(
      num_exposures=dataset.generate_rows, **dict({"seed": 0}, **generator_args))
  summary = os.path.join(dataset.data_root, "summary.json")
  if os.path.exists(summary):
    with open(summary) as f:
      if json.load(f).get("config") == json.loads(json.dumps(dataclasses.asdict(config))):
        return
  generator.generate(dataset.data_root, config)
