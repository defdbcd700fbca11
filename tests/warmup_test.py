"""Tests for duia.serving.warmup and the Trainer's warmup-writing helpers.

The warmup file is checked in TF Serving's own terms (a TFRecord of
`tensorflow.serving.PredictionLog`s read record by record), and the requests
are built from hand-made raw tf.Examples shaped like RawLogExampleGen's.
"""

import os

import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from duia import demo_requests
from duia.models import features
from duia.models import warmup_export
from duia.serving import client
from duia.serving import warmup

_USER_INPUTS = (features.USER_SCALAR_STRING + features.USER_SEQUENCE_STRING
                + features.USER_SCALAR_INT + features.USER_SEQUENCE_INT
                + [features.TIMESTAMP])
_ITEM_INPUTS = (features.ITEM_SCALAR_STRING + features.ITEM_SEQUENCE_STRING
                + features.ITEM_SCALAR_INT + features.ITEM_SCALAR_FLOAT)


def _bytes(*values):
  return tf.train.Feature(bytes_list=tf.train.BytesList(
      value=[v.encode() for v in values]))


def _ints(*values):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _floats(*values):
  return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _example(user: int, item: int, ts: int, valid: int) -> bytes:
  """A raw example with every feature the serving signatures take, and labels."""
  activity = features.HIGH_ACTIVE if user % 2 else features.LOW_ACTIVE
  feature = {
      features.USER_ID: _bytes(f"u{user}"),
      features.AGE_BUCKET: _bytes("25-34"),
      features.GENDER: _bytes("f"),
      features.CITY: _bytes("c1"),
      features.DEVICE: _bytes("ios"),
      features.USER_ACTIVITY: _bytes(activity),
      features.PREF_CAT1: _bytes("news", "sport"),
      features.PREF_CAT2: _bytes("football"),
      features.PREF_TAG: _bytes("t1", "t2", "t3"),
      features.HIST_ITEM_IDS: _bytes(*[f"i{i}" for i in range(user + 1)]),
      features.HIST_CAT1: _bytes("news"),
      features.HIST_CAT2: _bytes("football"),
      features.NEG_ITEM_IDS: _bytes("i99"),
      # Aligned with the id lists: one ts per entry, an hour apart, newest first.
      features.HIST_TS: _ints(*[ts - 3_600 * (i + 1) for i in range(user + 1)]),
      features.NEG_TS: _ints(ts - 60),
      features.USER_VALID_COUNT: _ints(user + 1),
      features.TIMESTAMP: _ints(ts),
      features.ITEM_ID: _bytes(f"i{item}"),
      features.CAT1: _bytes("news"),
      features.CAT2: _bytes("football"),
      features.AUTHOR_ID: _bytes(f"a{item % 3}"),
      features.ITEM_POPULARITY: _bytes(features.HEAD_ITEM),
      features.TAGS: _bytes("t1"),
      features.ITEM_PRIOR_EXPOSURES: _ints(item),
      features.DURATION_S: _floats(10.0 + item),
      features.LABEL_VALID: _ints(valid),
      features.LABEL_WATCH: _floats(5.0 * valid),
      features.LABEL_LIKE: _ints(0),
  }
  return tf.train.Example(
      features=tf.train.Features(feature=feature)).SerializeToString()


def _examples(num_users: int = 4, exposures: int = 3):
  """`exposures` rows per user, each user shown its own items, one consumed."""
  return [_example(user, item=10 * user + k, ts=1_700_000_000 + 60 * k,
                   valid=int(k == 0))
          for user in range(num_users) for k in range(exposures)]


def _request(i: int, signature: str = features.SERVING_RAW_SIGNATURE):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "duia"
  request.model_spec.signature_name = signature
  request.inputs[features.TIMESTAMP].CopyFrom(
      tf.make_tensor_proto([i], tf.int64))
  return request


def _records(path):
  return [r.numpy() for r in tf.data.TFRecordDataset(path)]


# --- writing and reading -----------------------------------------------------


def test_written_file_holds_one_predict_log_per_request(tmp_path):
  requests = [_request(i) for i in range(3)]
  path = warmup.write_warmup_requests(str(tmp_path), requests)
  assert path == os.path.join(str(tmp_path), "assets.extra",
                              "tf_serving_warmup_requests")
  assert path == warmup.warmup_path(str(tmp_path))
  logs = [prediction_log_pb2.PredictionLog.FromString(r)
          for r in _records(path)]
  assert [log.WhichOneof("log_type") for log in logs] == ["predict_log"] * 3
  assert [log.predict_log.request for log in logs] == requests


def test_round_trip(tmp_path):
  requests = [_request(i, sig) for i, sig in enumerate(
      [features.SERVING_EXAMPLES_SIGNATURE, features.SERVING_RAW_SIGNATURE])]
  warmup.write_warmup_requests(str(tmp_path), requests)
  assert warmup.read_warmup_requests(str(tmp_path)) == requests


def test_rewrite_replaces_the_file(tmp_path):
  warmup.write_warmup_requests(str(tmp_path), [_request(i) for i in range(3)])
  warmup.write_warmup_requests(str(tmp_path), [_request(7)])
  assert warmup.read_warmup_requests(str(tmp_path)) == [_request(7)]


def test_max_records_written_more_refused(tmp_path):
  at_max = [_request(i) for i in range(warmup.MAX_WARMUP_RECORDS)]
  warmup.write_warmup_requests(str(tmp_path / "ok"), at_max)
  assert len(warmup.read_warmup_requests(str(tmp_path / "ok"))) == 1000
  with pytest.raises(ValueError, match=r"at most 1000 .* Received: 1001"):
    warmup.write_warmup_requests(str(tmp_path / "big"), at_max + [_request(0)])
  assert not os.path.exists(warmup.warmup_path(str(tmp_path / "big")))


@pytest.mark.parametrize("mutate, error, match", [
    (lambda r: r.model_spec.version.SetInParent(), ValueError,
     r"request 1 pins model_spec.version=0"),
    (lambda r: setattr(r.model_spec, "version_label", "stable"), ValueError,
     r"request 1 pins model_spec.version_label='stable'"),
], ids=["version", "version_label"])
def test_write_refuses_a_pinned_version(tmp_path, mutate, error, match):
  requests = [_request(0), _request(1)]
  mutate(requests[1])
  with pytest.raises(error, match=match):
    warmup.write_warmup_requests(str(tmp_path), requests)


def test_write_refuses_empty_and_non_requests(tmp_path):
  with pytest.raises(ValueError, match="No warmup requests"):
    warmup.write_warmup_requests(str(tmp_path), [])
  with pytest.raises(TypeError, match=r"request 1 should be a .*PredictRequest"
                                      r".* Received: PredictionLog"):
    warmup.write_warmup_requests(
        str(tmp_path), [_request(0), prediction_log_pb2.PredictionLog()])


def test_absent_file_reads_as_no_requests(tmp_path):
  assert warmup.read_warmup_requests(str(tmp_path)) == []


def _classify_log() -> bytes:
  log = prediction_log_pb2.PredictionLog()
  log.classify_log.request.model_spec.name = "duia"
  return log.SerializeToString()


def _versioned_predict_log() -> bytes:
  request = _request(2)
  request.model_spec.version.value = 7
  return prediction_log_pb2.PredictionLog(
      predict_log=prediction_log_pb2.PredictLog(request=request)
  ).SerializeToString()


@pytest.mark.parametrize("third_record, match", [
    (b"\xff\xff\xff", r"Record 2 of .* is not a tensorflow.serving.PredictionLog"),
    (_classify_log(), r"Record 2 of .* holds classify_log; only predict_log"),
    (b"", r"Record 2 of .* holds no log; only predict_log"),
    (_versioned_predict_log(), r"Record 2 of .* pins model_spec.version=7"),
], ids=["not_a_proto", "classify_log", "empty_log", "pinned_version"])
def test_foreign_record_is_named_by_index(tmp_path, third_record, match):
  path = warmup.write_warmup_requests(str(tmp_path), [_request(0), _request(1)])
  records = _records(path) + [third_record]
  with tf.io.TFRecordWriter(path) as writer:
    for record in records:
      writer.write(record)
  with pytest.raises(ValueError, match=match) as raised:
    warmup.read_warmup_requests(str(tmp_path))
  assert path in str(raised.value)


def test_corrupt_record_is_named_by_index(tmp_path):
  path = warmup.write_warmup_requests(str(tmp_path),
                                      [_request(i) for i in range(3)])
  with open(path, "rb") as f:
    data = bytearray(f.read())
  # TFRecord framing: 8-byte length, 4-byte length CRC, data, 4-byte data CRC.
  # Flipping the last byte breaks the third record's data CRC only.
  data[-1] ^= 0xFF
  with open(path, "wb") as f:
    f.write(bytes(data))
  with pytest.raises(ValueError, match=r"Record 2 of .* not a readable TFRecord"):
    warmup.read_warmup_requests(str(tmp_path))


def test_more_records_than_tf_serving_replays_are_refused(tmp_path):
  path = warmup.write_warmup_requests(str(tmp_path), [_request(0)])
  record = _records(path)[0]
  with tf.io.TFRecordWriter(path) as writer:
    for _ in range(warmup.MAX_WARMUP_RECORDS + 1):
      writer.write(record)
  with pytest.raises(ValueError, match=r"more than 1000 records"):
    warmup.read_warmup_requests(str(tmp_path))


# --- requests from examples --------------------------------------------------


def _dim0(tensor_proto) -> int:
  return tensor_proto.tensor_shape.dim[0].size


def test_requests_from_examples_cover_both_signatures():
  serialized = _examples(num_users=4, exposures=3)
  requests = warmup.requests_from_examples(
      serialized, "my_model", num_rank_requests=8, num_candidates=5,
      examples_per_request=5)
  by_signature = {}
  for request in requests:
    by_signature.setdefault(request.model_spec.signature_name, []).append(request)
  assert sorted(by_signature) == ["rank", "serving_default"]
  for request in requests:
    assert request.model_spec.name == "my_model"
    assert not request.model_spec.HasField("version")
    assert not request.model_spec.version_label

  # 12 examples in batches of 5: 5, 5, 2, sent as they are.
  batches = [tf.make_ndarray(r.inputs[features.SERVING_EXAMPLES_INPUT]).tolist()
             for r in by_signature["serving_default"]]
  assert batches == [serialized[0:5], serialized[5:10], serialized[10:12]]

  # Every user is eligible (3 exposures, one consumed): one request each.
  rank = by_signature["rank"]
  users = sorted(tf.make_ndarray(r.inputs[features.USER_ID])[0].decode()
                 for r in rank)
  assert users == ["u0", "u1", "u2", "u3"]
  for request in rank:
    assert set(request.inputs) == set(_USER_INPUTS + _ITEM_INPUTS)
    for key in _USER_INPUTS:
      assert _dim0(request.inputs[key]) == 1, key
    # The ts lists arrive as lists (not their first value), aligned with the ids.
    user = int(tf.make_ndarray(request.inputs[features.USER_ID])[0].decode()[1:])
    ts = tf.make_ndarray(request.inputs[features.TIMESTAMP])[0]
    hist_ts = tf.make_ndarray(request.inputs[features.HIST_TS])
    assert hist_ts.tolist() == [[ts - 3_600 * (i + 1) for i in range(user + 1)]]
    assert hist_ts.shape == tf.make_ndarray(request.inputs[features.HIST_ITEM_IDS]).shape
    assert tf.make_ndarray(request.inputs[features.NEG_TS]).tolist() == [[ts - 60]]
    # The 3 items the user was shown, filled up to 5 from other users' items.
    for key in _ITEM_INPUTS:
      assert _dim0(request.inputs[key]) == 5, key


def test_rank_requests_match_the_client_builder():
  serialized = _examples(num_users=2, exposures=3)
  requests = warmup.requests_from_examples(serialized, "duia", num_candidates=4)
  rank = [r for r in requests
          if r.model_spec.signature_name == features.SERVING_RAW_SIGNATURE]
  sampled = demo_requests.sample_requests(
      demo_requests.decode_examples(serialized), num_users=8, num_candidates=4)
  assert rank == [client.build_rank_request(s.user, s.candidates, s.ts, "duia")
                  for s in sampled]


def test_requests_from_examples_caps_counts():
  requests = warmup.requests_from_examples(
      _examples(num_users=6, exposures=4), "duia", num_rank_requests=3,
      examples_per_request=2, num_example_requests=2)
  signatures = [r.model_spec.signature_name for r in requests]
  assert signatures == ["serving_default"] * 2 + ["rank"] * 3


def test_requests_from_examples_without_eligible_users():
  # One exposure per user: no ranking request, only tf.Example batches.
  requests = warmup.requests_from_examples(_examples(4, 1), "duia")
  assert [r.model_spec.signature_name for r in requests] == ["serving_default"]


def test_requests_from_examples_rejects_bad_counts():
  with pytest.raises(ValueError, match="num_candidates must be at least 1. "
                                       "Received: 0"):
    warmup.requests_from_examples(_examples(), "duia", num_candidates=0)


# --- replay ------------------------------------------------------------------


def test_replay_counts_calls():
  seen = []
  assert warmup.replay([_request(i) for i in range(4)], seen.append) == 4
  assert seen == [_request(i) for i in range(4)]
  assert warmup.replay([], seen.append) == 0


def test_replay_stops_at_the_failing_index():
  calls = []

  def predict_fn(request):
    calls.append(request)
    if len(calls) == 3:
      raise RuntimeError("Input 'ts' expects dtype int64")

  requests = [_request(i) for i in range(5)]
  with pytest.raises(warmup.WarmupError,
                     match=r"Warmup request 2 \(model 'duia', signature 'rank'\) "
                           r"failed: RuntimeError: Input 'ts'") as raised:
    warmup.replay(requests, predict_fn)
  assert raised.value.index == 2
  assert raised.value.request == requests[2]
  assert isinstance(raised.value.__cause__, RuntimeError)
  assert len(calls) == 3  # Nothing after the failure is run.


# --- the Trainer's hook --------------------------------------------------------


def _write_examples(path, serialized):
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.TFRecordWriter(path, options="GZIP") as writer:
    for record in serialized:
      writer.write(record)


def test_export_writes_warmup_from_gzipped_examples(tmp_path):
  pattern = str(tmp_path / "eval" / "data_tfrecord-*.gz")
  _write_examples(str(tmp_path / "eval" / "data_tfrecord-00000.gz"),
                  _examples(num_users=4, exposures=3))
  serving_dir = str(tmp_path / "serving")
  path = warmup_export.write_warmup(serving_dir, [pattern], "duia")
  assert path == warmup.warmup_path(serving_dir)
  requests = warmup.read_warmup_requests(serving_dir)
  signatures = [r.model_spec.signature_name for r in requests]
  assert signatures.count("rank") == 4 and "serving_default" in signatures


def test_export_skips_warmup_with_too_few_users(tmp_path):
  # Only u1 has two exposures.
  _write_examples(str(tmp_path / "eval.gz"),
                  _examples(num_users=1, exposures=1)
                  + [_example(1, 5, 1_700_000_000, 1),
                     _example(1, 6, 1_700_000_060, 0)])
  serving_dir = str(tmp_path / "serving")
  assert warmup_export.write_warmup(serving_dir, [str(tmp_path / "eval.gz")],
                              "duia") is None
  assert not tf.io.gfile.exists(warmup.warmup_path(serving_dir))


def test_run_warmup_reads_the_newest_example_gen_output(tmp_path):
  examples_uri = tmp_path / "pipeline_root" / "RawLogExampleGen" / "examples"
  # Execution 3 is the newest with an eval split; 7 failed before writing it.
  _write_examples(str(examples_uri / "1" / "Split-eval" / "old.gz"),
                  _examples(num_users=2, exposures=2))
  _write_examples(str(examples_uri / "3" / "Split-eval" / "new.gz"),
                  _examples(num_users=3, exposures=2))
  (examples_uri / "7" / "Split-train").mkdir(parents=True)
  (examples_uri / "tmp").mkdir()
  assert warmup_export.latest_eval_files(str(examples_uri)) == [
      str(examples_uri / "3" / "Split-eval" / "*")]
  serving_dir = str(tmp_path / "serving")
  custom_config = {warmup_export.RAW_EXAMPLES_KEY: str(examples_uri),
                   warmup_export.MODEL_NAME_KEY: "served_name"}
  assert warmup_export.write_run_warmup(serving_dir, custom_config) is not None
  requests = warmup.read_warmup_requests(serving_dir)
  assert {r.model_spec.name for r in requests} == {"served_name"}
  assert sum(r.model_spec.signature_name == "rank" for r in requests) == 3


@pytest.mark.parametrize("custom_config", [
    None, {}, {"raw_examples_uri": "/nonexistent/examples"}])
def test_run_warmup_skips_without_raw_examples(tmp_path, custom_config):
  serving_dir = str(tmp_path / "serving")
  assert warmup_export.write_run_warmup(serving_dir, custom_config) is None
  assert not tf.io.gfile.exists(warmup.warmup_path(serving_dir))


def test_read_serialized_takes_one_pattern_or_several(tmp_path):
  serialized = _examples(num_users=2, exposures=2)
  _write_examples(str(tmp_path / "a.gz"), serialized[:2])
  _write_examples(str(tmp_path / "b.gz"), serialized[2:])
  assert demo_requests.read_serialized(str(tmp_path / "*.gz")) == serialized
  assert demo_requests.read_serialized(
      [str(tmp_path / "a.gz"), str(tmp_path / "b.gz")], limit=3) == serialized[:3]
  with pytest.raises(FileNotFoundError, match="No TFRecord files match"):
    demo_requests.read_serialized([str(tmp_path / "*.none")])
