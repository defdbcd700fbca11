"""Memory updates under MirroredStrategy (2 logical CPUs) equal one device's.

Logical devices must be configured before TensorFlow initialises its devices,
so the check runs this file as a script in a fresh interpreter; the test reads
the JSON it prints.
"""

import json

from tests import fresh_interpreter

GLOBAL_BATCH, DIM, STEPS = 16, 4, 3


def _run_check() -> dict:
  import duia  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  from duia.layers import ghca  # pylint: disable=g-import-not-at-top
  from duia.layers import personal_memory  # pylint: disable=g-import-not-at-top
  from duia.models import autograph_rules  # pylint: disable=g-import-not-at-top
  autograph_rules.skip_tf_keras_conversion()

  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  rng = np.random.default_rng(0)
  batches = [dict(q=rng.normal(size=(GLOBAL_BATCH, DIM)).astype("float32"),
                  ids=rng.integers(0, 6, GLOBAL_BATCH),  # same ids on both replicas
                  mask=rng.random(GLOBAL_BATCH) < 0.7,
                  groups=rng.integers(0, 2, GLOBAL_BATCH).astype("int32"))
             for _ in range(STEPS)]

  def make(rule, **kwargs):
    user = ghca.GHCAMemory(num_level1=3, num_children=2, update_rule=rule, rate=0.1, seed=5,
                           sample_rate=kwargs.pop("sample_rate", 1.0), **kwargs)
    user.build([None, DIM])
    upbe = personal_memory.PersonalizedMemory(8, DIM, update_rule="gradient", rate=0.1)
    upbe.build([None])
    return user, upbe

  def step_fn(user, upbe, q, ids, mask, groups):
    mu = user(q, training=True, update_mask=mask, sample_groups=groups)
    stored = upbe(ids, targets=mu, update_mask=mask, training=True)
    return tf.concat(list(mu), axis=-1), stored

  def split(batch):
    half = GLOBAL_BATCH // 2
    return strategy.experimental_distribute_values_from_function(
        lambda ctx: {k: tf.constant(v[ctx.replica_id_in_sync_group * half:][:half])
                     for k, v in batch.items()})

  def state(layers):
    return np.concatenate([np.ravel(w.numpy()).astype("float64")
                           for layer in layers for w in layer.weights])

  def copies_equal(layers):
    return all(np.array_equal(w.values[0].numpy(), w.values[1].numpy())
               for layer in layers for w in layer.weights)

  result = {}
  for rule in ghca.UPDATE_RULES:
    single = make(rule)
    with strategy.scope():
      mirrored = make(rule)
    for a, b in zip(single, mirrored):
      b.set_weights(a.get_weights())
    one = tf.function(lambda **b: step_fn(*single, **b))  # pylint: disable=cell-var-from-loop
    two = tf.function(lambda b: strategy.run(  # pylint: disable=cell-var-from-loop
        lambda x: step_fn(*mirrored, **x), args=(b,)))
    out_diff = 0.0
    for batch in batches:
      want = one(**{k: tf.constant(v) for k, v in batch.items()})
      got = two(split(batch))
      for w, g in zip(want, got):
        g = np.concatenate([t.numpy() for t in strategy.experimental_local_results(g)])
        out_diff = max(out_diff, float(np.max(np.abs(w.numpy() - g))))
    result[rule] = dict(
        state_diff=float(np.max(np.abs(state(single) - state(mirrored)))),
        output_diff=out_diff, copies_equal=copies_equal(mirrored),
        changed=bool(np.any(state(single[:1]) != state(make(rule)[:1]))
                     and np.any(single[1].memory.numpy() != 0)))

  # Sampling and re-seeding use each replica's rows (not comparable with one
  # device), but the replicas must still hold identical state.
  with strategy.scope():
    mirrored = make("weighted_pull", sample_rate=0.5, reseed_dead_every=1)
  two = tf.function(lambda b: strategy.run(lambda x: step_fn(*mirrored, **x), args=(b,)))
  for batch in batches:
    two(split(batch))
  result["sampled_reseeded_copies_equal"] = copies_equal(mirrored)
  result["steps"] = int(mirrored[0].steps.numpy())
  return result


def test_mirrored_updates_equal_single_device():
  result = fresh_interpreter.run_json(__file__, timeout_s=240)
  for rule in ("gradient", "weighted_pull", "ema"):
    assert result[rule]["changed"], result
    assert result[rule]["state_diff"] < 1e-5, result
    assert result[rule]["output_diff"] < 1e-5, result
    assert result[rule]["copies_equal"], result
  assert result["sampled_reseeded_copies_equal"] and result["steps"] == STEPS, result


if __name__ == "__main__":
  print(json.dumps(_run_check()))
