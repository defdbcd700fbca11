"""Roots as local paths or filesystem URIs (gs://, s3://, hdfs://, ...).

Every root of a pipeline (data, outputs, serving) may live on any filesystem
Beam and TensorFlow read. Local paths are made absolute so a run does not
depend on the directory it was started from; URIs are left exactly as given
(`os.path.abspath("gs://b/x")` would turn them into `<cwd>/gs:/b/x`).
"""

import os
import re

# RFC 3986 scheme followed by "://", e.g. gs://, s3://, hdfs://, file://.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def has_scheme(path: str) -> bool:
  """True for a URI such as gs://bucket/x; False for a plain local path."""
  return bool(_SCHEME.match(path))


def resolve(path: str) -> str:
  """`path` unchanged if it is a URI, else made absolute."""
  return path if has_scheme(path) else os.path.abspath(path)
