"""Raw exposure-log data: the synthetic generator (docs/design.md §3)."""

from duia.data.generator import GeneratorConfig
from duia.data.generator import World
from duia.data.generator import build_world
from duia.data.generator import generate

__all__ = ["GeneratorConfig", "World", "build_world", "generate"]
