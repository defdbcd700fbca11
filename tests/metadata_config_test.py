"""ML Metadata config: SQLite and MySQL connections, the password from the environment."""

import os

from ml_metadata.proto import metadata_store_pb2
import pytest

from duia.pipeline import configs
from duia.pipeline import metadata_config
from duia.pipeline import report

MYSQL = {"type": "mysql", "host": "mysql.example", "port": 3307, "database": "mlmd",
         "user": "duia", "password_env": "DUIA_TEST_MLMD_PASSWORD"}


def _pipeline_config(root, **kwargs):
  return configs.PipelineConfig(root=str(root), data_root="unused",
                                mapping_path=configs.packaged_mapping("generated"), **kwargs)


def test_sqlite_defaults_to_the_file_under_root(tmp_path):
  config = _pipeline_config(tmp_path / "run")
  assert config.metadata == metadata_config.SqliteMetadata()
  assert config.metadata_path == str(tmp_path / "run" / "metadata.sqlite")
  connection = config.metadata_connection_config()
  assert connection.WhichOneof("config") == "sqlite"
  assert connection.sqlite.filename_uri == config.metadata_path
  assert connection.sqlite.connection_mode == (
      metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
  # What report reads: the file, which it opens read-only.
  assert config.metadata_source == config.metadata_path


def test_sqlite_at_a_chosen_path(tmp_path):
  path = str(tmp_path / "elsewhere" / "mlmd.sqlite")
  config = _pipeline_config(tmp_path / "run",
                            metadata=metadata_config.from_dict({"type": "sqlite", "path": path}))
  assert config.metadata_path == path
  assert config.metadata_connection_config().sqlite.filename_uri == path
  assert os.path.isdir(tmp_path / "elsewhere")  # created, as TFX's helper does


def test_sqlite_cannot_live_under_a_uri_root():
  config = _pipeline_config("gs://bucket/run")
  with pytest.raises(ValueError, match="SQLite file must be local, but root is a URI "
                                       r"\('gs://bucket/run'\)"):
    config.metadata_connection_config()
  with pytest.raises(ValueError, match="metadata.path must be a local file"):
    metadata_config.SqliteMetadata(path="gs://bucket/mlmd.sqlite")


def test_mysql_connection_takes_the_password_from_the_environment(monkeypatch, tmp_path):
  monkeypatch.setenv("DUIA_TEST_MLMD_PASSWORD", "s3cret")
  metadata = metadata_config.from_dict(MYSQL)
  assert "s3cret" not in repr(metadata)
  connection = metadata_config.connection_config(metadata, root=str(tmp_path))
  assert connection.WhichOneof("config") == "mysql"
  mysql = connection.mysql
  assert (mysql.host, mysql.port, mysql.database, mysql.user, mysql.password) == (
      "mysql.example", 3307, "mlmd", "duia", "s3cret")
  config = _pipeline_config(tmp_path, metadata=metadata)
  assert config.metadata_source == connection
  with pytest.raises(ValueError, match="only defined for SQLite metadata"):
    config.metadata_path  # pylint: disable=pointless-statement


def test_mysql_password_env_unset_is_an_error(monkeypatch, tmp_path):
  monkeypatch.delenv("DUIA_TEST_MLMD_PASSWORD", raising=False)
  metadata = metadata_config.from_dict(MYSQL)
  with pytest.raises(ValueError, match="metadata.password_env names 'DUIA_TEST_MLMD_PASSWORD', "
                                       "which is not set in the environment"):
    metadata_config.connection_config(metadata, root=str(tmp_path))


def test_mysql_without_password_env_has_no_password(tmp_path):
  raw = {k: v for k, v in MYSQL.items() if k != "password_env"}
  connection = metadata_config.connection_config(metadata_config.from_dict(raw), str(tmp_path))
  assert connection.mysql.password == ""
  assert connection.mysql.port == 3307


@pytest.mark.parametrize("raw,message", [
    ({"type": "postgres"}, r"metadata.type must be one of \('sqlite', 'mysql'\). "
                           "Received: 'postgres'"),
    ({"type": "sqlite", "host": "h"}, r"Unknown metadata key\(s\) \['host'\] for type 'sqlite'"),
    ({"type": "mysql", "host": "h", "user": "u"}, r"type 'mysql' requires \['database'\]"),
    (dict(MYSQL, password="s3cret"), r"Unknown metadata key\(s\) \['password'\]"),
    (dict(MYSQL, port="3306"), "metadata.port must be an integer in 1..65535. Received: '3306'"),
    (dict(MYSQL, host=""), "metadata.host must be a non-empty string"),
    ("sqlite", "metadata must be an object"),
])
def test_bad_metadata_configs_name_the_key(raw, message):
  with pytest.raises(ValueError, match=message):
    metadata_config.from_dict(raw)


def test_report_reads_through_a_connection_config(tmp_path):
  config = _pipeline_config(tmp_path)
  connection = config.metadata_connection_config()
  assert report.component_seconds(connection) == []  # a new, empty store
  assert report.latest_artifact_uri(connection, "Model") is None
