"""End to end: generated logs -> TFX pipeline -> blessed, pushed model -> gRPC.

Runs the real pipeline (LocalDagRunner, SQLite ML Metadata) on a few thousand
generated rows with tiny model sizes; about two minutes on 2 cores.
"""

import dataclasses
import glob
import gzip
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_model_analysis.writers import eval_config_writer

from duia import demo_requests
from duia.data import generator
from duia.models import config as model_config
from duia.models import features
from duia.pipeline import configs
from duia.pipeline import local_runner
from duia.pipeline import report
from duia.serving import backend
from duia.serving import client as client_lib
from duia.serving import model_loader
from duia.serving import server
from duia.serving import warmup
from duia.validation import findings as findings_lib

pytestmark = pytest.mark.e2e

BAD_LINES = [
    "this is not json",
    json.dumps({"ts": 1700000100, "user_id": "u00001", "item_id": "i00001",
                "watch_time_s": -5.0, "like": 0, "share": 0}),
    json.dumps({"ts": 1700000100, "user_id": "nobody", "item_id": "i00001",
                "watch_time_s": 5.0, "like": 0, "share": 0}),
]


# The HIM run's Evaluator reads a weighted sample (its eval split has ~900
# examples); the other runs' eval splits are under the default size.
HIM_EVAL_SAMPLE = 300


@pytest.fixture(scope="module", params=["ple", "duia_items", "him"])
def pipeline_run(request, tmp_path_factory):
  """One pipeline run per variant: the PLE baseline, DUIA with every component, HIM."""
  root = tmp_path_factory.mktemp(f"e2e_{request.param}")
  data = str(root / "data")
  generator.generate(data, generator.GeneratorConfig(
      num_users=400, num_items=600, num_exposures=6000, seed=3))
  with gzip.open(os.path.join(data, "exposures", "bad-rows.jsonl.gz"), "wt") as f:
    f.write("\n".join(BAD_LINES) + "\n")
  config = configs.PipelineConfig(
      root=str(root / "run"), data_root=data,
      mapping_path=configs.packaged_mapping("generated"),
      training=model_config.preset("tiny", {"duia": {
          "variant": request.param, "user_level1": 8, "user_children": 2,
          "item_level1": 8, "item_children": 2, "memory_dim": 8}}),
      blessing=configs.BlessingConfig(
          auc_floor=0.5,
          eval_sample_examples=HIM_EVAL_SAMPLE if request.param == "him" else 50_000))
  local_runner.run(config)
  return config


def test_pipeline_blesses_and_pushes_a_model(pipeline_run):
  config = pipeline_run
  blessing = report.latest_artifact_uri(config.metadata_path, "ModelBlessing")
  assert report.is_blessed(blessing)
  version, path = model_loader.latest_version(config.serving_model_dir)
  assert os.path.exists(os.path.join(path, "saved_model.pb"))
  saved_config = json.load(open(os.path.join(path, "assets.extra", "training_config.json")))
  assert saved_config["tasks"] == list(config.training.tasks)
  # The pushed model carries TF Serving's warmup file, built from eval rows, and
  # every request in it runs on the pushed model.
  requests = warmup.read_warmup_requests(path)
  signatures = {r.model_spec.signature_name for r in requests}
  assert signatures == {features.SERVING_EXAMPLES_SIGNATURE, features.SERVING_RAW_SIGNATURE}
  loaded = model_loader.load_version(config.serving_model_dir, version, config.model_name)
  assert warmup.replay(requests, lambda r: backend.predict_on(loaded, r)) == len(requests)
  names = [name for name, _ in report.component_seconds(config.metadata_path)]
  for component in ("RawLogExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                    "DistributionValidator", "DataValidationGate", "Transform", "Trainer",
                    "EvalSampleGen", "Evaluator", "Pusher"):
    assert component in names


def test_bad_rows_are_quarantined_not_lost(pipeline_run):
  uri = report.latest_output_uri(pipeline_run.metadata_path, "RawLogExampleGen", "quarantine")
  summary = json.load(open(os.path.join(uri, "summary.json")))
  assert summary["quarantined"] == {
      "exposures/unparseable_row": 1,
      "exposures/invalid_value:watch_time_s": 1,
      "exposures/unknown_user_id": 1,
  }
  assert sum(summary["examples"].values()) == 6000


def test_tfma_reports_every_slice(pipeline_run):
  uri = report.latest_artifact_uri(pipeline_run.metadata_path, "ModelEvaluation")
  rows = {r.slice_name: r.values for r in report.load_slice_metrics(uri)}
  for name in ("overall", "user_activity=low", "user_activity=high",
               "item_popularity=head", "item_popularity=tail"):
    assert name in rows, sorted(rows)
  overall = rows["overall"]
  assert 0.5 < overall["valid_consumption/auc"] <= 1.0
  assert overall["watch_time/root_mean_squared_error"] > 0
  assert 0.0 < overall["like/binary_crossentropy"] < 1.0


def test_the_evaluator_reads_rare_slices_whole_and_a_weighted_sample_of_the_rest(pipeline_run):
  config = pipeline_run
  if config.training.duia.variant != "him":
    pytest.skip("one variant samples its eval split")
  full = {"overall": 0, "user_activity=low": 0, "item_popularity=tail": 0, "rare": 0}
  for record in tf.data.TFRecordDataset(glob.glob(os.path.join(_eval_dir(config), "*")),
                                        compression_type="GZIP"):
    feature = tf.train.Example.FromString(record.numpy()).features.feature
    low = feature[features.USER_ACTIVITY].bytes_list.value[0] == b"low"
    tail = feature[features.ITEM_POPULARITY].bytes_list.value[0] == b"tail"
    full["overall"] += 1
    full["user_activity=low"] += low
    full["item_popularity=tail"] += tail
    full["rare"] += low or tail
  common = full["overall"] - full["rare"]
  assert full["overall"] > 2 * HIM_EVAL_SAMPLE and common > 100, full  # the setup samples
  uri = report.latest_artifact_uri(config.metadata_path, "ModelEvaluation")
  counts = {r.slice_name: r.values["valid_consumption/example_count"]
            for r in report.load_slice_metrics(uri)}
  # example_count is the examples evaluated: the rare slices all of theirs...
  assert counts["user_activity=low"] == full["user_activity=low"] > 0
  assert counts["item_popularity=tail"] == full["item_popularity=tail"] > 0
  # ... the others about HIM_EVAL_SAMPLE / eval split of theirs (here ~0.34).
  sampled_common = counts["overall"] - full["rare"]
  assert 0 < sampled_common < 0.6 * common, (counts, full)


def _eval_dir(config):
  return os.path.join(
      report.latest_output_uri(config.metadata_path, "RawLogExampleGen", "examples"),
      "Split-eval")


def test_grpc_predict_equals_the_in_process_model(pipeline_run):
  config = pipeline_run
  _, path = model_loader.latest_version(config.serving_model_dir)
  loaded = tf.saved_model.load(path)
  examples = demo_requests.read_examples(_eval_dir(config))
  request = demo_requests.sample_requests(examples, num_users=1, num_candidates=12)[0]
  grpc_server, port = server.start_server(config.serving_model_dir, model_name="duia")
  try:
    with client_lib.RankingClient(f"127.0.0.1:{port}") as ranking_client:
      ranked = ranking_client.rank(request.user, request.candidates, request.ts)
    proto = client_lib.build_rank_request(request.user, request.candidates, request.ts)
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in proto.inputs.items()}
    expected = loaded.signatures[features.SERVING_RAW_SIGNATURE](**inputs)
    assert len(ranked) == len(request.candidates) == 12
    for candidate in ranked:
      assert candidate.score == pytest.approx(
          float(expected[features.FUSED_SCORE][candidate.index]), abs=1e-6)
      assert set(candidate.task_scores) == set(config.training.tasks)
      for task in config.training.tasks:
        assert candidate.task_scores[task] == pytest.approx(
            float(expected[task][candidate.index]), abs=1e-6)
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)

    # serving_default on serialized tf.Examples: one value per example per task.
    files = sorted(glob.glob(os.path.join(_eval_dir(config), "*.gz")))
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP").take(7)]
    outputs = client_lib.predict_examples(f"127.0.0.1:{port}", serialized)
    in_process = loaded.signatures[features.SERVING_EXAMPLES_SIGNATURE](
        examples=tf.constant(serialized))
    for key in list(config.training.tasks) + [features.FUSED_SCORE]:
      assert outputs[key].shape == (7,)
      np.testing.assert_allclose(outputs[key], in_process[key].numpy(), rtol=1e-5, atol=1e-6)
  finally:
    grpc_server.stop(grace=None)


def test_rank_signature_matches_serving_default_on_the_same_rows(pipeline_run):
  """Broadcasting one user over N candidates scores like N full tf.Examples."""
  from duia.ingest import example_encoding  # pylint: disable=g-import-not-at-top
  config = pipeline_run
  _, path = model_loader.latest_version(config.serving_model_dir)
  loaded = tf.saved_model.load(path)
  rows = demo_requests.read_examples(_eval_dir(config), limit=200)
  user_row = max(rows, key=lambda r: len(r[features.HIST_ITEM_IDS]))
  user = {k: user_row[k] for k in demo_requests.USER_KEYS}
  candidates = [{k: row[k] for k in demo_requests.ITEM_KEYS} for row in rows[:20]]
  ts = user_row[features.TIMESTAMP]
  full_rows = [dict(user, **candidate, ts=ts, label_valid=0, label_watch=0.0, label_like=0)
               for candidate in candidates]
  per_example = loaded.signatures[features.SERVING_EXAMPLES_SIGNATURE](examples=tf.constant(
      [example_encoding.to_tf_example(r).SerializeToString() for r in full_rows]))
  proto = client_lib.build_rank_request(user, candidates, ts)
  assert list(proto.inputs[features.HIST_ITEM_IDS].tensor_shape.dim)[0].size == 1
  ranked = loaded.signatures[features.SERVING_RAW_SIGNATURE](
      **{k: tf.constant(tf.make_ndarray(v)) for k, v in proto.inputs.items()})
  assert ranked[features.FUSED_SCORE].shape == (20,)
  for key in list(config.training.tasks) + [features.FUSED_SCORE]:
    np.testing.assert_allclose(ranked[key].numpy(), per_example[key].numpy(),
                               rtol=1e-5, atol=1e-6)


def test_rank_requests_of_several_users_merge_into_one_call(pipeline_run):
  """`rank_users` (what the batcher merges concurrent `rank` requests into,
  decoded and padded in the graph) scores every request like `rank` alone."""
  import threading  # pylint: disable=g-import-not-at-top
  from duia.serving import batching  # pylint: disable=g-import-not-at-top
  from duia.serving import merged_users  # pylint: disable=g-import-not-at-top
  config = pipeline_run
  version, _ = model_loader.latest_version(config.serving_model_dir)
  loaded = model_loader.load_version(config.serving_model_dir, version, config.model_name)
  assert features.SERVING_USERS_SIGNATURE in loaded.signatures
  samples = demo_requests.sample_requests(demo_requests.read_examples(_eval_dir(config)),
                                          num_users=3, num_candidates=12)
  assert len({len(s.user[features.HIST_ITEM_IDS]) for s in samples}) > 1  # lengths differ
  protos = [client_lib.build_rank_request(s.user, s.candidates[:4 + 4 * i], s.ts)
            for i, s in enumerate(samples)]
  alone = [{k: tf.make_ndarray(v) for k, v in backend.predict_on(loaded, p).outputs.items()}
           for p in protos]
  rank = loaded.signatures[features.SERVING_RAW_SIGNATURE]
  server._warmup(loaded, several_users=True)  # as a batching server loads a version
  merger = merged_users.for_model(loaded)
  assert sorted(merger._calls) == list(range(2, merger.users_per_call + 1))
  checked = [merger.checked(p.inputs) for p in protos]
  assert [c[1] for c in checked] == [4, 8, 12]
  direct = merger.run([c[0] for c in checked], [c[1] for c in checked], rank.outputs)

  batcher = batching.Batcher(batching.BatchingConfig(batch_timeout_micros=500_000,
                                                     num_batch_threads=1))
  batcher.start()
  through_batcher = [None] * len(protos)

  def predict(i):
    through_batcher[i] = backend.predict_on(loaded, protos[i], batcher)

  threads = [threading.Thread(target=predict, args=(i,)) for i in range(len(protos))]
  for t in threads:
    t.start()
  for t in threads:
    t.join(60)
  batcher.stop()
  assert batcher.requests_run == 3 and batcher.batches_run < 3  # some merged
  for expected, merged, response in zip(alone, direct, through_batcher):
    assert merged[features.FUSED_SCORE].shape == expected[features.FUSED_SCORE].shape
    for key in list(config.training.tasks) + [features.FUSED_SCORE]:
      np.testing.assert_allclose(merged[key], expected[key], rtol=1e-5, atol=1e-5)
      np.testing.assert_allclose(tf.make_ndarray(response.outputs[key]), expected[key],
                                 rtol=1e-5, atol=1e-5)


def test_duia_model_reports_its_memories_and_warm_starts(pipeline_run):
  config = pipeline_run
  if config.training.duia.variant in ("ple", "him"):
    pytest.skip("only the DUIA variants have memories")
  _, path = model_loader.latest_version(config.serving_model_dir)
  clusters = json.load(open(os.path.join(path, "assets.extra", "cluster_report.json")))
  assert set(clusters) == {"user_ghca", "item_ghca"}
  for memory in clusters.values():
    assert 0.0 < memory["level1_hit_fraction"] <= 1.0
    assert memory["eval_rows"] > 0
  # A second run continues from the first model (the Trainer gets a base_model).
  local_runner.run(dataclasses.replace(config, enable_cache=True))
  assert "base_model" in report.latest_input_keys(config.metadata_path, "Trainer")
  assert report.count_executions(config.metadata_path, "Trainer") == 2


def test_the_pushed_model_is_compared_with_ple_on_the_same_data(pipeline_run, tmp_path):
  from duia.quality import baseline_comparison  # pylint: disable=g-import-not-at-top
  config = pipeline_run
  if config.training.duia.variant == "ple":
    with pytest.raises(ValueError, match="The run trained PLE"):
      baseline_comparison.compare_with_ple(config, str(tmp_path))
    return
  if config.training.duia.variant != "duia_items":
    pytest.skip("one DUIA variant shows the comparison")
  rows = baseline_comparison.compare_with_ple(config, str(tmp_path))
  by_slice = {r["slice"]: r for r in rows}
  assert list(by_slice) == [label for label, _ in baseline_comparison.SLICES]
  # The pushed model is the candidate...
  _, pushed = model_loader.latest_version(config.serving_model_dir)
  _, _, _, models = eval_config_writer.load_eval_run(os.path.join(tmp_path, "tfma"))
  assert models["duia_items"] == pushed
  # ... so, when the latest evaluated model is the pushed one (blessed), its
  # AUC is the pipeline Evaluator's, up to TFMA batching the rows differently
  # (last-bit differences of a prediction move it across one of the 10,000 AUC
  # buckets: 2e-5 was seen).
  if report.is_blessed(report.latest_artifact_uri(config.metadata_path, "ModelBlessing")):
    assert by_slice["overall"]["candidate"] == pytest.approx(_overall_auc(config), abs=1e-3)
  for row in rows:
    assert row["rows"] > 0
    assert row["diff"] == pytest.approx(row["candidate"] - row["baseline"], abs=1e-6)
    assert row["lower"] <= row["diff"] <= row["upper"], row  # a paired interval around it
  assert os.path.exists(os.path.join(tmp_path, "ple", "saved_model.pb"))
  table = baseline_comparison.format_rows(rows, "duia_items")
  assert "duia_items - ple [95% CI]" in table and "low-active users" in table


def _overall_auc(config):
  uri = report.latest_artifact_uri(config.metadata_path, "ModelEvaluation")
  rows = {r.slice_name: r.values for r in report.load_slice_metrics(uri)}
  return rows["overall"]["valid_consumption/auc"]


def test_a_worse_model_is_not_blessed_and_not_pushed(pipeline_run):
  config = pipeline_run
  if config.training.duia.variant != "ple":
    pytest.skip("one variant shows the gate")
  blessed_auc = _overall_auc(config)
  pushed = sorted(os.listdir(config.serving_model_dir))
  examples = report.latest_output_uri(config.metadata_path, "RawLogExampleGen", "examples")
  # One step at a vanishing learning rate: the model stays at its random start.
  worse = dataclasses.replace(
      config, enable_cache=True,
      training=config.training.override({"train_steps": 1, "learning_rate": 1e-9, "seed": 1}))
  local_runner.run(worse)
  worse_auc = _overall_auc(config)
  tolerance = config.blessing.max_auc_regression
  assert worse_auc < blessed_auc - tolerance, (worse_auc, blessed_auc)  # the setup holds
  # The Evaluator compared it with the last blessed model and refused it...
  assert report.count_executions(config.metadata_path, "Evaluator") == 2
  assert not report.is_blessed(report.latest_artifact_uri(config.metadata_path, "ModelBlessing"))
  # ... so the Pusher pushed nothing: the served versions are the blessed ones.
  assert sorted(os.listdir(config.serving_model_dir)) == pushed
  # The ingestion did not change, so the second run reused its output (cache).
  assert report.latest_output_uri(config.metadata_path, "RawLogExampleGen",
                                  "examples") == examples


def test_a_distribution_shift_in_the_logs_stops_the_run_before_transform(pipeline_run, tmp_path):
  config = pipeline_run
  if config.training.duia.variant != "ple":
    pytest.skip("one variant shows the data validation gate")
  # The same logs, but a client that logs watch time in milliseconds: every
  # row still parses (quarantine sees nothing), the labels move.
  drifted = str(tmp_path / "data")
  shutil.copytree(config.data_root, drifted)
  for path in glob.glob(os.path.join(drifted, "exposures", "part-*.jsonl.gz")):
    with gzip.open(path, "rt") as f:
      rows = [json.loads(line) for line in f]
    with gzip.open(path, "wt") as f:
      for row in rows:
        row["watch_time_s"] *= 1000
        f.write(json.dumps(row) + "\n")
  pushed = sorted(os.listdir(config.serving_model_dir))
  transforms = report.count_executions(config.metadata_path, "Transform")
  with pytest.raises(findings_lib.DataValidationError) as stopped:
    local_runner.run(dataclasses.replace(config, data_root=drifted, enable_cache=True))
  for feature in (features.LABEL_WATCH, features.LABEL_VALID):
    assert f"feature {feature!r}: COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH" in str(stopped.value)
  # Nothing after the gate ran: no Transform, no training, nothing pushed.
  assert report.count_executions(config.metadata_path, "Transform") == transforms
  assert sorted(os.listdir(config.serving_model_dir)) == pushed
