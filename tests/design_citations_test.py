"""The design the code cites is in the repository, and every cited section exists."""

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DESIGN = os.path.join(REPO, "docs", "design.md")


def _sections():
  with open(DESIGN, encoding="utf-8") as f:
    return {m.group(1) for m in re.finditer(r"^#+ (\d+(?:\.\d+)?)\.? ", f.read(), re.M)}


def _citations():
  for folder in ("duia", "tests", "benchmarks", "docs"):
    for directory, _, files in os.walk(os.path.join(REPO, folder)):
      for file in files:
        if file.endswith((".py", ".md")):
          path = os.path.join(directory, file)
          with open(path, encoding="utf-8") as f:
            for section in re.findall(r"docs/design\.md\s+(?:#\s*)?§(\d+(?:\.\d+)?)", f.read()):
              yield os.path.relpath(path, REPO), section


def test_every_cited_design_section_exists():
  sections = _sections()
  assert {"3", "4.3", "7", "8"} <= sections, sorted(sections)
  citations = list(_citations())
  assert len(citations) > 20
  missing = [(path, section) for path, section in citations if section not in sections]
  assert not missing, missing


def _cite_elsewhere():
  for folder in ("duia", "tests", "benchmarks"):
    for directory, _, files in os.walk(os.path.join(REPO, folder)):
      for file in files:
        if file.endswith(".py"):
          path = os.path.join(directory, file)
          with open(path, encoding="utf-8") as f:
            for match in re.findall(r"DESIGN(?:\s+section|\s+s\.|\s+\d)", f.read()):
              yield os.path.relpath(path, REPO), match


def test_no_code_cites_the_design_outside_the_repository():
  # The old citations named ../shared/DESIGN.md, a file outside the repository.
  stale = list(_cite_elsewhere())
  assert not stale, stale
