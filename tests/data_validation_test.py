"""Schema drift: the curated schema, the findings and the message that stops a run.

The examples are the ingestion's own (generated logs through RawLogExampleGen's
Beam code); each case changes them the way the issue names: a new column, a
dropped column, a type change, a value out of range, a distribution shift, far
fewer examples. The schema cases run TFDV's validation directly; the drift and
baseline cases run the pipeline's validation components (ImportExampleGen ->
StatisticsGen -> `validation_nodes`) under the LocalDagRunner.
"""

import glob
import os

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import v1 as tfx

from duia.components import sampled_statistics_gen
from duia.data import generator
from duia.ingest import ingest_outputs
from duia.ingest import example_encoding
from duia.ingest import mapping as mapping_lib
from duia.models import features
from duia.pipeline import configs
from duia.pipeline import report
from duia.pipeline import runtime_config
from duia.pipeline import validation_nodes
from duia.validation import findings as findings_lib
from duia.validation import policy

SCALARS = set(features.STRING_SCALARS + features.INT_SCALARS + features.FLOAT_SCALARS
              + features.LABEL_KEYS)
TYPES = {"bytes": schema_pb2.BYTES, "int": schema_pb2.INT, "float": schema_pb2.FLOAT}


def read_examples(pattern):
  return [tf.train.Example.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(sorted(glob.glob(pattern)), compression_type="GZIP")]


def write_examples(path, examples):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path, options="GZIP") as writer:
    for example in examples:
      writer.write(example.SerializeToString())


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
  """{split: [tf.Example]} of 1,500 generated exposures, as the pipeline writes them."""
  data = str(tmp_path_factory.mktemp("logs"))
  generator.generate(data, generator.GeneratorConfig(
      num_users=120, num_items=200, num_exposures=1500, seed=5))
  out = str(tmp_path_factory.mktemp("out"))
  mapping = mapping_lib.load_mapping(configs.packaged_mapping("generated"))
  ingest_outputs.run_ingestion(mapping, data, out)
  return {split: read_examples(os.path.join(out, "examples", f"Split-{split}", "*"))
          for split in ("train", "eval")}


def schema_findings(tmp_path, examples):
  path = str(tmp_path / "examples.tfrecord.gz")
  write_examples(path, examples)
  statistics = tfdv.generate_statistics_from_tfrecord(
      path, stats_options=tfdv.StatsOptions())
  anomalies = tfdv.validate_statistics(statistics, tfdv.load_schema_text(policy.CURATED_SCHEMA))
  return findings_lib.from_proto(anomalies, findings_lib.SCHEMA_CHECK, "train")


def changed(examples, change):
  out = []
  for example in examples:
    copy = tf.train.Example()
    copy.CopyFrom(example)
    change(copy.features.feature)
    out.append(copy)
  return out


def add_column(feature):
  feature["client_version"].bytes_list.value.append(b"7.1.0")


def drop_column(feature):
  del feature[features.DURATION_S]


def duration_as_text(feature):
  seconds = feature[features.DURATION_S].float_list.value[0]
  feature[features.DURATION_S].Clear()
  feature[features.DURATION_S].bytes_list.value.append(f"{seconds:.0f}s".encode())


def negative_watch_time(feature):
  feature[features.LABEL_WATCH].float_list.value[0] = -1.0


def test_curated_schema_is_the_data_contract():
  schema = tfdv.load_schema_text(policy.CURATED_SCHEMA)
  by_name = {f.name: f for f in schema.feature}
  assert sorted(by_name) == sorted(example_encoding.FEATURE_TYPES)
  for key, kind in example_encoding.FEATURE_TYPES.items():
    feature = by_name[key]
    assert feature.type == TYPES[kind], key
    assert feature.presence.min_fraction == 1.0, key
    # Scalars parse as dense [B, 1] in Transform; lists stay variable-length.
    assert [d.size for d in feature.shape.dim] == ([1] if key in SCALARS else []), key
  assert list(by_name[features.USER_ACTIVITY].string_domain.value) == [
      features.LOW_ACTIVE, features.HIGH_ACTIVE]
  assert list(by_name[features.ITEM_POPULARITY].string_domain.value) == [
      features.TAIL_ITEM, features.HEAD_ITEM]


@pytest.mark.parametrize("split", ["train", "eval"])
def test_the_ingestions_examples_follow_the_curated_schema(ingested, tmp_path, split):
  assert len(ingested[split]) > 100
  assert schema_findings(tmp_path, ingested[split]) == []


@pytest.mark.parametrize("change, feature, anomaly_types", [
    (add_column, "client_version", ["SCHEMA_NEW_COLUMN"]),
    (drop_column, features.DURATION_S, ["SCHEMA_MISSING_COLUMN"]),
    # Text where a float was: the type, and that the text is no float either.
    (duration_as_text, features.DURATION_S,
     ["UNEXPECTED_DATA_TYPE", "FLOAT_TYPE_STRING_NOT_FLOAT"]),
    (negative_watch_time, features.LABEL_WATCH, ["FLOAT_TYPE_SMALL_FLOAT"]),
], ids=["new_column", "dropped_column", "type_change", "out_of_range"])
def test_a_schema_change_stops_the_run_naming_the_feature(
    ingested, tmp_path, change, feature, anomaly_types):
  found = schema_findings(tmp_path, changed(ingested["train"], change))
  assert sorted((f.feature, f.anomaly_type) for f in found) == sorted(
      (feature, t) for t in anomaly_types)
  with pytest.raises(findings_lib.DataValidationError) as stopped:
    findings_lib.raise_if_blocking(found, policy.ValidationConfig())
  message = str(stopped.value)
  for finding in found:
    assert (f"feature {feature!r}: {finding.anomaly_type} (schema check, split train): "
            f"{finding.description}") in message
    # The message says how to let it through...
    assert f"'{feature}:{finding.anomaly_type}'" in message
  # ... and that config does.
  tolerant = policy.ValidationConfig(tolerate=tuple(f"{feature}:{t}" for t in anomaly_types))
  assert findings_lib.raise_if_blocking(found, tolerant) == found


def test_tolerance_is_per_feature_and_anomaly_type():
  found = [
      findings_lib.Finding("schema", "train", "client_version", "SCHEMA_NEW_COLUMN", "new"),
      findings_lib.Finding("drift", "train_train", "label_watch",
                           "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH", "moved"),
      findings_lib.Finding("drift", "train_train", policy.DATASET,
                           "COMPARATOR_LOW_NUM_EXAMPLES", "fewer"),
  ]
  config = policy.ValidationConfig(tolerate=("*:SCHEMA_NEW_COLUMN", "(dataset):*"))
  blocking, tolerated = findings_lib.partition(found, config.tolerates)
  assert blocking == [found[1]]
  assert tolerated == [found[0], found[2]]
  # Another feature with the tolerated type of a feature-specific pattern is not.
  specific = policy.ValidationConfig(tolerate=("device:SCHEMA_NEW_COLUMN",))
  assert not specific.tolerates("client_version", "SCHEMA_NEW_COLUMN")
  message = findings_lib.message(blocking)
  assert message.startswith("Data validation stopped the run before Transform: 1 anomaly")
  assert "feature 'label_watch': COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH" in message


def test_one_line_per_feature_and_anomaly_across_splits():
  found = [findings_lib.Finding("drift", split, "label_valid", "COMPARATOR_X", "moved")
           for split in ("train_train", "eval_eval")]
  message = findings_lib.message(found)
  assert "1 anomaly" in message
  assert "(drift check, split train_train, eval_eval): moved" in message


def test_drift_config_becomes_the_distribution_validators_comparators():
  config = policy.ValidationConfig(
      drift={"label_watch": {"jensen_shannon_divergence": 0.2},
             "device": {"infinity_norm": 0.3}},
      min_examples_ratio=0.25)
  proto = config.distribution_validator_config().default_slice_config
  comparators = {tuple(f.path.step): f.distribution_comparator for f in proto.feature}
  assert comparators[("device",)].infinity_norm.threshold == pytest.approx(0.3)
  assert comparators[("label_watch",)].jensen_shannon_divergence.threshold == pytest.approx(0.2)
  assert len(comparators) == 2
  # The volume check is the gate's, on exact counts (the statistics may be sampled).
  assert not proto.HasField("num_examples_comparator")
  # The defaults watch the three labels.
  default = policy.ValidationConfig().distribution_validator_config().default_slice_config
  assert sorted(f.path.step[0] for f in default.feature) == sorted(features.LABEL_KEYS)


@pytest.mark.parametrize("kwargs, names", [
    ({"drift": {"label_watch": {"kl": 0.1}}}, "unknown comparator 'kl'"),
    ({"drift": {"label_watch": {"infinity_norm": 2}}}, "validation.drift.label_watch.infinity_norm"),
    ({"drift": {"label_watch": 0.1}}, "validation.drift.label_watch must be one"),
    ({"min_examples_ratio": 0}, "validation.min_examples_ratio"),
    ({"tolerate": "label_watch:*"}, "validation.tolerate"),
    ({"tolerate": ("label_watch",)}, "validation.tolerate"),
    ({"schema": ""}, "validation.schema"),
    ({"statistics_sample_examples": -1}, "validation.statistics_sample_examples"),
    ({"statistics_sample_examples": 0.5}, "validation.statistics_sample_examples"),
])
def test_a_bad_validation_config_names_the_key(kwargs, names):
  with pytest.raises(ValueError, match=names):
    policy.ValidationConfig(**kwargs)


def test_the_runtime_config_carries_the_validation_settings(tmp_path):
  config = runtime_config.from_dict({
      "data_root": str(tmp_path), "validation": {
          "schema": "gs://bucket/schema.pbtxt",
          "drift": {"device": {"infinity_norm": 0.2}},
          "min_examples_ratio": None,
          "tolerate": ["city:*"],
          "statistics_sample_examples": 0}}).to_pipeline_config()
  assert config.validation == policy.ValidationConfig(
      schema="gs://bucket/schema.pbtxt", drift={"device": {"infinity_norm": 0.2}},
      min_examples_ratio=None, tolerate=("city:*",), statistics_sample_examples=0)
  assert runtime_config.from_dict({"data_root": "x"}).to_pipeline_config().validation == (
      policy.ValidationConfig())
  with pytest.raises(ValueError, match="Unknown runtime config key 'validation.thresholds'"):
    runtime_config.from_dict({"validation": {"thresholds": {}}})


@pytest.mark.parametrize("num_examples, sample_examples, rate", [
    (1_000_000, 200_000, 0.2), (200_000, 200_000, 1.0), (50_000, 200_000, 1.0),
    (10_000_000, 200_000, 0.02), (1_000_000, 0, 1.0), (None, 200_000, 1.0)])
def test_statistics_sample_rate_follows_the_split_size(num_examples, sample_examples, rate):
  assert sampled_statistics_gen.sample_rate(num_examples, sample_examples) == pytest.approx(rate)


def test_the_volume_check_compares_exact_counts_per_split():
  found = findings_lib.volume_findings({"train": 40, "eval": 10}, {"train": 100, "eval": 12},
                                       0.5)
  assert [(f.split, f.feature, f.anomaly_type) for f in found] == [
      ("train_train", policy.DATASET, findings_lib.LOW_NUM_EXAMPLES)]
  assert "40 examples, 0.4 of the 100" in found[0].description
  assert findings_lib.volume_findings({"train": 40}, {"train": 100}, None) == []
  assert findings_lib.volume_findings({"train": 40}, {}, 0.5) == []  # first run


# --- the validation components, run by TFX ----------------------------------------


def watch_time_in_milliseconds(feature):
  """A logging change: watch time in ms, so every exposure counts as valid."""
  feature[features.LABEL_WATCH].float_list.value[0] *= 1000.0
  feature[features.LABEL_VALID].int64_list.value[0] = 1


class ValidationRuns:
  """Runs ImportExampleGen -> StatisticsGen -> the validation nodes in one root."""

  def __init__(self, root, ingested):
    self.root = root
    self.ingested = ingested
    self.metadata = str(root / "metadata.sqlite")

  def run(self, name, change=None, keep_every=1, **validation):
    data = self.root / name
    for split, examples in self.ingested.items():
      rows = changed(examples, change) if change else examples
      write_examples(str(data / split / "examples.tfrecord.gz"), rows[::keep_every])
    example_gen = tfx.components.ImportExampleGen(
        input_base=str(data), input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name=split, pattern=f"{split}/*")
            for split in self.ingested]))
    statistics_gen = sampled_statistics_gen.SampledStatisticsGen(
        examples=example_gen.outputs["examples"])
    nodes = validation_nodes.validation_nodes(
        statistics_gen.outputs["statistics"], policy.ValidationConfig(**validation))
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="validation", pipeline_root=str(self.root / "pipeline_root"),
        components=[example_gen, statistics_gen, *nodes.in_order()],
        metadata_connection_config=tfx.orchestration.metadata
        .sqlite_metadata_connection_config(self.metadata),
        beam_pipeline_args=list(configs.LOCAL_BEAM_ARGS)))

  def validated(self):
    """URI of the latest statistics the gate passed on (the drift baseline)."""
    return report.latest_output_uri(self.metadata, "DataValidationGate",
                                    "validated_statistics")

  def baseline_of_last_run(self):
    return report.latest_input_uri(self.metadata, "DistributionValidator",
                                   "baseline_statistics")


def validated_property(metadata, uri, name):
  """A JSON custom property of the ExampleStatistics artifact at `uri`."""
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = metadata
  artifact = tfx.types.standard_artifacts.ExampleStatistics()
  artifact.set_mlmd_artifact(
      metadata_store.MetadataStore(config).get_artifacts_by_uri(uri)[0])
  return artifact.get_json_value_custom_property(name)


@pytest.fixture(scope="module")
def validation_runs(ingested, tmp_path_factory):
  runs = ValidationRuns(tmp_path_factory.mktemp("validation"), ingested)
  runs.run("clean")  # the first run: no baseline yet, passes on the schema alone
  return runs


@pytest.mark.e2e
def test_a_distribution_shift_stops_the_run_and_never_becomes_the_baseline(validation_runs):
  runs = validation_runs
  clean = runs.validated()
  assert clean is not None
  for attempt in range(2):
    with pytest.raises(findings_lib.DataValidationError) as stopped:
      runs.run("watch_in_ms", watch_time_in_milliseconds)
    message = str(stopped.value)
    for feature in (features.LABEL_WATCH, features.LABEL_VALID):
      assert (f"feature {feature!r}: COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH "
              "(drift check, split eval_eval, train_train)") in message, attempt
    assert "above the threshold 0.1" in message
    # The like label did not move, so it is not named.
    assert features.LABEL_LIKE not in message
    # Compared with the clean run's statistics both times: the stopped run's
    # own statistics never became the baseline, so a retry is stopped again.
    assert runs.baseline_of_last_run() == clean
    assert runs.validated() == clean


@pytest.mark.e2e
def test_a_tolerated_anomaly_passes_and_is_recorded(validation_runs):
  runs = validation_runs
  with pytest.raises(findings_lib.DataValidationError, match="'client_version'"):
    runs.run("new_column", add_column)
  runs.run("new_column", add_column, tolerate=("client_version:SCHEMA_NEW_COLUMN",))
  validated = runs.validated()
  assert validated != runs.baseline_of_last_run()  # this run's statistics are the new baseline
  assert sorted(os.listdir(validated)) == ["Split-eval", "Split-train"]
  assert validated_property(runs.metadata, validated, "tolerated_anomalies") == [
      "client_version:SCHEMA_NEW_COLUMN"]


@pytest.mark.e2e
def test_far_fewer_examples_than_the_baseline_stop_the_run(validation_runs):
  # No label drift check here: on 32 eval examples the labels' histograms move
  # by chance (e.g. no like at all gives a divergence of 1), which is not
  # what this case is about.
  with pytest.raises(findings_lib.DataValidationError) as stopped:
    validation_runs.run("a_tenth", keep_every=10, drift={})
  message = str(stopped.value)
  assert message.startswith("Data validation stopped the run before Transform: 1 anomaly")
  assert ("feature '(dataset)': COMPARATOR_LOW_NUM_EXAMPLES "
          "(drift check, split eval_eval, train_train)") in message
  # Switched off by config, the same data passes.
  validation_runs.run("a_tenth", keep_every=10, drift={}, min_examples_ratio=None)
