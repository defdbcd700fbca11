"""Where ML Metadata lives: a SQLite file (local runs) or a MySQL server.

    {"type": "sqlite"}                                   <root>/metadata.sqlite
    {"type": "sqlite", "path": "/data/mlmd.sqlite"}
    {"type": "mysql", "host": "mysql.kubeflow", "port": 3306, "database": "mlmd",
     "user": "mlmd", "password_env": "MLMD_PASSWORD"}

The MySQL password is never part of the config: the config names the
environment variable that holds it, read when the connection is built.
On Kubeflow the orchestrator supplies its own ML Metadata and this is unused.
"""

import dataclasses
import os
from typing import Any, Mapping, Optional, Union

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from duia.pipeline import uris

TYPES = ("sqlite", "mysql")
DEFAULT_SQLITE_NAME = "metadata.sqlite"


@dataclasses.dataclass(frozen=True)
class SqliteMetadata:
  """ML Metadata in a local SQLite file.

  Attributes:
    path: the file; None means `<root>/metadata.sqlite` (the default).
  """
  path: Optional[str] = None

  def __post_init__(self):
    if self.path is not None and (not isinstance(self.path, str) or not self.path):
      raise ValueError(f"metadata.path must be a non-empty string. Received: {self.path!r}")
    if self.path is not None and uris.has_scheme(self.path):
      raise ValueError("metadata.path must be a local file (SQLite cannot open a URI). "
                       f"Received: {self.path!r}")

  def file(self, root: str) -> str:
    """The SQLite file for a run whose outputs are under `root`."""
    return self.path or os.path.join(root, DEFAULT_SQLITE_NAME)


@dataclasses.dataclass(frozen=True)
class MysqlMetadata:
  """ML Metadata in a MySQL database.

  Attributes:
    host: server name or address.
    database: database name (ML Metadata creates its tables on first use).
    user: login.
    password_env: name of the environment variable holding the password;
      None for a server without one (as Kubeflow's in-cluster MySQL).
    port: server port.
  """
  host: str
  database: str
  user: str
  password_env: Optional[str] = None
  port: int = 3306

  def __post_init__(self):
    for name in ("host", "database", "user"):
      value = getattr(self, name)
      if not isinstance(value, str) or not value:
        raise ValueError(f"metadata.{name} must be a non-empty string. Received: {value!r}")
    if self.password_env is not None and (
        not isinstance(self.password_env, str) or not self.password_env):
      raise ValueError("metadata.password_env must name an environment variable. "
                       f"Received: {self.password_env!r}")
    if isinstance(self.port, bool) or not isinstance(self.port, int) or not (
        0 < self.port < 65536):
      raise ValueError(f"metadata.port must be an integer in 1..65535. Received: {self.port!r}")

  def password(self) -> str:
    """The password from the environment ("" without password_env)."""
    if self.password_env is None:
      return ""
    if self.password_env not in os.environ:
      raise ValueError(f"metadata.password_env names {self.password_env!r}, which is not "
                       "set in the environment; export it with the MySQL password")
    return os.environ[self.password_env]


MetadataConfig = Union[SqliteMetadata, MysqlMetadata]


def from_dict(raw: Mapping[str, Any]) -> MetadataConfig:
  """A metadata config from its JSON form ({"type": "sqlite"|"mysql", ...}).

  Raises:
    ValueError: unknown type or key, or a bad value; the message names it.
  """
  if not isinstance(raw, Mapping):
    raise ValueError(f"metadata must be an object. Received: {raw!r}")
  kind = raw.get("type", "sqlite")
  if kind not in TYPES:
    raise ValueError(f"metadata.type must be one of {TYPES}. Received: {kind!r}")
  cls = SqliteMetadata if kind == "sqlite" else MysqlMetadata
  fields = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(raw) - fields - {"type"})
  if unknown:
    raise ValueError(f"Unknown metadata key(s) {unknown} for type {kind!r}; "
                     f"known: {sorted(fields)}")
  kwargs = {k: v for k, v in raw.items() if k != "type"}
  try:
    return cls(**kwargs)
  except TypeError as e:  # a required field missing
    missing = sorted(f.name for f in dataclasses.fields(cls)
                     if f.default is dataclasses.MISSING and f.name not in kwargs)
    raise ValueError(f"metadata of type {kind!r} requires {missing}") from e


def connection_config(metadata: MetadataConfig,
                      root: str) -> metadata_store_pb2.ConnectionConfig:
  """The ML Metadata connection for a run whose outputs are under `root`.

  For SQLite this creates the file's folder, as TFX's helper does.
  """
  if isinstance(metadata, MysqlMetadata):
    return tfx.orchestration.metadata.mysql_metadata_connection_config(
        host=metadata.host, port=metadata.port, database=metadata.database,
        username=metadata.user, password=metadata.password())
  path = metadata.file(root)
  if uris.has_scheme(path):
    raise ValueError(f"ML Metadata's SQLite file must be local, but root is a URI ({root!r}): "
                     "set metadata.path to a local file or use MySQL metadata")
  return tfx.orchestration.metadata.sqlite_metadata_connection_config(path)
