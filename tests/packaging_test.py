"""setup.py declares every package the code imports (a fresh install needs no luck)."""

import ast
import importlib.metadata
import os
import re
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OWN = {"duia", "tests", "benchmarks"}
# Imported only by a probe that installs its own copy beside the venv
# (benchmarks/dask_runner_probe.py: dask.distributed is not part of the stack).
PROBE_ONLY = {"distributed"}


def _setup_lists():
  tree = ast.parse(open(os.path.join(REPO, "setup.py")).read())
  values = {}
  for node in tree.body:
    if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
      values[node.targets[0].id] = ast.literal_eval(node.value)
  return values["INSTALL_REQUIRES"], values["EXTRAS_REQUIRE"]


def _name(requirement: str) -> str:
  return re.split(r"[\[=<>!~ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imported(folder: str):
  modules = set()
  for directory, _, files in os.walk(os.path.join(REPO, folder)):
    for file in files:
      if not file.endswith(".py"):
        continue
      for node in ast.walk(ast.parse(open(os.path.join(directory, file)).read())):
        if isinstance(node, ast.Import):
          modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
          modules.add(node.module.split(".")[0])
  return {m for m in modules if m not in sys.stdlib_module_names and m not in OWN}


@pytest.mark.parametrize("folder,extras", [("duia", ()), ("tests", ("test",)),
                                           ("benchmarks", ("bench",))])
def test_every_imported_package_is_declared(folder, extras):
  install, extra = _setup_lists()
  declared = {_name(r) for r in install} | {_name(r) for e in extras for r in extra[e]}
  providers = importlib.metadata.packages_distributions()
  missing = {}
  for module in sorted(_imported(folder) - PROBE_ONLY):
    names = {d.lower().replace("_", "-") for d in providers.get(module, [])}
    if not names:  # wheels without top_level.txt (numpy, sklearn): ask their file lists
      names = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()
               if any(str(f).startswith(f"{module}/") for f in d.files or ())}
    assert names, f"{module!r} (imported in {folder}/) is not installed"
    if not names & declared:
      missing[module] = sorted(names)
  assert not missing, f"imported in {folder}/ but not declared in setup.py: {missing}"
