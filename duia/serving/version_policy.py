"""Which of the versions on disk a server keeps loaded.

The two policies of TF Serving's `ServableVersionPolicy`
(tensorflow_serving/config/file_system_storage_path_source.proto): the latest N
versions (default N = 1), or an explicit list. Written on the command line as
`latest:2` or `specific:3,5`.

Example:
  >>> VersionPolicy.parse("latest:2").select([1, 2, 5])
  [2, 5]
  >>> VersionPolicy.parse("specific:1,7").select([1, 2, 5])
  [1]
"""

import dataclasses
from typing import Iterable, List, Tuple


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
  """Latest `latest` versions, or exactly `specific` when that is non-empty.

  Attributes:
    latest: How many of the highest versions to serve (when `specific` is empty).
    specific: Versions to serve; those not on disk are simply not served.
  """

  latest: int = 1
  specific: Tuple[int, ...] = ()

  def __post_init__(self):
    if self.latest < 1:
      raise ValueError(f"VersionPolicy.latest must be >= 1. Received: {self.latest}")
    if any(v < 0 for v in self.specific):
      raise ValueError(f"Versions are non-negative. Received: specific={self.specific}")

  def select(self, available: Iterable[int]) -> List[int]:
    """The versions to serve out of `available`, ascending."""
    available = sorted(set(available))
    if self.specific:
      return [v for v in available if v in set(self.specific)]
    return available[-self.latest:]

  @classmethod
  def parse(cls, text: str) -> "VersionPolicy":
    """Parses `latest:N` or `specific:V1,V2,...`.

    Raises:
      ValueError: naming the text and the accepted forms.
    """
    kind, _, value = text.partition(":")
    try:
      if kind == "latest":
        return cls(latest=int(value or 1))
      if kind == "specific" and value:
        return cls(specific=tuple(sorted({int(v) for v in value.split(",")})))
    except ValueError as e:
      raise ValueError(f"Bad version policy {text!r}: {e}. Use 'latest:N' or "
                       f"'specific:V1,V2'.") from e
    raise ValueError(f"Bad version policy {text!r}. Use 'latest:N' or 'specific:V1,V2'.")

  def __str__(self) -> str:
    if self.specific:
      return "specific:" + ",".join(str(v) for v in self.specific)
    return f"latest:{self.latest}"
