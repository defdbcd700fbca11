"""Train-step time of every model variant against `ple` (DUIA issue benchmark).

Batch 512 with history length 100 (the papers' batch size; ingestion keeps
<= 100 history items), synthetic transformed batches with Zipf-distributed item
ids (so a batch's history holds a realistic number of distinct items, which is
what UHSE's cost scales with), 30% padding, the "small" preset's
PLE and DUIA sizes. Each variant: warm-up steps (tracing), then timed steps of
the compiled Keras train function, in rounds that interleave the variants;
the ratio to `ple` is the median of the per-round ratios. Prints a table and saves
benchmarks/results/step_time.json.

    python -m benchmarks.step_time_bench [--steps 30] [--repeats 7]
"""

import argparse
import json
import os
import statistics
import time

from duia import keras_env  # noqa: F401  pylint: disable=unused-import
import numpy as np
import tensorflow as tf

from duia.models import autograph_rules
from duia.models import config as config_lib
from duia.models import duia_ranker
from duia.models import features
from duia.models import inputs as inputs_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
XF = features.transformed_name
BATCH, HISTORY, TABLE = 512, 100, 20_000


def _zipf_ids(rng, size, vocabulary: int, exponent: float = 1.1):
  """Ids 1..vocabulary-1 with Zipf-like popularity, as feeds have (and as the
  generator plants: the top 10% of items take about 90% of exposures)."""
  ranks = np.arange(1, vocabulary)
  p = ranks ** -exponent
  return rng.choice(ranks, size=size, p=p / p.sum())


def synthetic_batch(seed: int):
  rng = np.random.default_rng(seed)
  x = {XF(k): tf.constant(rng.integers(1, 200, BATCH), tf.int64) for k in inputs_lib.SCALAR_TABLES}
  x[XF(features.USER_ID)] = tf.constant(rng.integers(1, TABLE, BATCH), tf.int64)
  x[XF(features.ITEM_ID)] = tf.constant(_zipf_ids(rng, BATCH, TABLE), tf.int64)
  for key in inputs_lib.SEQUENCE_TABLES:
    length = HISTORY if key in inputs_lib.BEHAVIOUR_SEQUENCES else 20
    if "item" in key:
      ids = _zipf_ids(rng, (BATCH, length), TABLE)
    else:
      ids = rng.integers(1, 200, (BATCH, length))
    ids[rng.random((BATCH, length)) < 0.3] = 0
    x[XF(key)] = tf.constant(ids, tf.int64)
  x.update({XF(k): tf.constant(rng.normal(size=BATCH), tf.float32) for k in inputs_lib.DENSE})
  x[XF(features.USER_ACTIVITY)] = tf.constant(rng.integers(0, 2, BATCH), tf.int64)
  y = {features.LABEL_VALID: tf.constant((rng.random(BATCH) < 0.4).astype("float32")),
       features.LABEL_LIKE: tf.constant((rng.random(BATCH) < 0.1).astype("float32")),
       features.LABEL_WATCH: tf.constant(rng.random(BATCH).astype("float32") * 3)}
  # Ages in days aligned with their ids, as Transform emits hist_ts/neg_ts;
  # drawn last so the batches above stay those of earlier measurements.
  for ts_key, ids_key in ((features.HIST_TS, features.HIST_ITEM_IDS),
                          (features.NEG_TS, features.NEG_ITEM_IDS)):
    ids = x[XF(ids_key)].numpy()
    ages = np.cumsum(rng.exponential(2.0, ids.shape), axis=1)
    x[XF(ts_key)] = tf.constant(np.where(ids != 0, ages, 0.0), tf.float32)
  return x, y


def train_function(variant: str):
  """The compiled Keras train function of `variant` and its batch iterator, warmed up."""
  config = config_lib.preset("small", {
      "batch_size": BATCH, "duia": {"variant": variant},
      "features": {"history_length": HISTORY, "user_id_buckets": TABLE,
                   "item_id_buckets": TABLE}})
  model = duia_ranker.build_ranker(config, {t: TABLE if t in ("user_id", "item_id") else 210
                                            for t in inputs_lib.TABLES})
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
  batches = [synthetic_batch(s) for s in range(4)]
  iterator = iter(tf.data.Dataset.from_tensor_slices(
      tuple(tf.nest.map_structure(lambda *t: tf.stack(t), *batches))).repeat())
  train = model.make_train_function()
  for _ in range(5):  # tracing and warm-up
    train(iterator)
  return train, iterator


def time_steps(train, iterator, steps: int) -> float:
  """Mean milliseconds per step over `steps` consecutive steps."""
  start = time.perf_counter()
  for _ in range(steps):
    logs = train(iterator)
  float(logs["loss"])  # wait for the last step
  return (time.perf_counter() - start) / steps * 1e3


def time_variants(variants, steps: int, repeats: int):
  """Per variant, `repeats` timings taken in interleaved rounds.

  Each round times every variant once, back to back, so a slow spell on this
  shared machine hits all of them and the per-round ratios to `ple` stay
  comparable; the ratio reported is the median of the per-round ratios.
  """
  functions = {variant: train_function(variant) for variant in variants}
  times = {variant: [] for variant in variants}
  for _ in range(repeats):
    for variant, (train, iterator) in functions.items():
      times[variant].append(time_steps(train, iterator, steps))
  return times


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--variants", default=",".join(config_lib.VARIANTS))
  args = parser.parse_args()
  autograph_rules.skip_tf_keras_conversion()
  variants = args.variants.split(",")
  times = time_variants(variants, args.steps, args.repeats)
  results = {}
  for variant in variants:
    results[variant] = {"ms_per_step": round(statistics.median(times[variant]), 2),
                        "repeats_ms": [round(t, 2) for t in times[variant]]}
    if "ple" in times:
      ratios = [t / base for t, base in zip(times[variant], times["ple"])]
      results[variant]["ratio_to_ple"] = round(statistics.median(ratios), 3)
      results[variant]["round_ratios"] = [round(r, 3) for r in ratios]
  print(f"\n{'variant':<11} {'ms/step':>8} {'x ple':>6}  {'ratio range':>13}   "
        f"(batch {BATCH}, history {HISTORY}, {os.cpu_count()} CPUs, {args.repeats} rounds)")
  for variant, r in results.items():
    ratios = r.get("round_ratios", [float("nan")])
    print(f"{variant:<11} {r['ms_per_step']:>8.1f} {r.get('ratio_to_ple', float('nan')):>6.2f}  "
          f"{min(ratios):>6.2f}-{max(ratios):<6.2f}")
  os.makedirs(os.path.join(REPO, "benchmarks", "results"), exist_ok=True)
  path = os.path.join(REPO, "benchmarks", "results", "step_time.json")
  with open(path, "w") as f:
    json.dump({"batch": BATCH, "history": HISTORY, "results": results}, f, indent=1)
  print(f"saved {path}")


if __name__ == "__main__":
  main()
