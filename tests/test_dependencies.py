"""Tests of the declared dependencies, read with ast from setup.py (never run) and the sources:
whatever the package, its entry points and configs import is the standard library, the
repository's own or a distribution of install_requires; the tests may add the test extra; the
benchmarks add only their optional torch reference; everything declared is imported, but for a
short list of what is needed without an import; the accelerator extras install jax's own builds
in the range of the core jax."""

import ast
import functools
import importlib.metadata
import pathlib
import re
import sys

from packaging.requirements import Requirement

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARY = ("rare_tasks", "experiments", "configs")
OWN = frozenset(LIBRARY)
OWN_WITH_TESTS = OWN | {"benchmarks", "tests"}

# Declared in install_requires for what they do at run time without being imported here.
RUN_TIME_ONLY = {
    # The file format of the token cache: tfds's array_record reader and writer import it
    # (rare_tasks/lm/data/builder.py, cache.py), and tfds requires it only on Linux.
    "array-record",
}
# Declared in the test extra, imported by no test.
TEST_TOOLS = {
    "ruff",  # the linter: a command .ci/run runs before the tests
    "ipykernel",  # the Python kernel nbclient starts to execute the notebook
}
# Imports of the benchmarks that nothing declares: the optional torch reference
# (benchmarks/reference/grid_torch.py), run in its own process only where torch is found.
BENCHMARK_OPTIONAL = {"torch"}
# The accelerator extras: each is jax with one of jax's own extras.
ACCELERATORS = {"cuda": "cuda12", "cuda13": "cuda13", "tpu": "tpu"}

# A line that starts an import statement (or prose that looks like one), and a dynamic import.
IMPORT_LINE = re.compile(r"^[ \t]*(?:from[ \t]+\.*[\w.]*[ \t]+import\b"
                         r"|import[ \t]+[\w.]+[ \t]*(?:[,#\\]|as\b|$)).*", re.M)
DYNAMIC = re.compile(r"\b(?:importlib\.import_module|__import__)\(\s*[\"']([\w.]+)[\"']")


def normalise(name: str) -> str:
  """A distribution's name as PEP 503 compares them."""
  return re.sub(r"[-_.]+", "-", name).lower()


def setup_requirements(source: str) -> tuple[list[str], dict[str, list[str]]]:
  """(install_requires, extras_require) of the setup() call of a setup.py's source."""
  tree = ast.parse(source)
  names = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
           for t in node.targets if isinstance(t, ast.Name)}
  calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
           and isinstance(node.func, ast.Name) and node.func.id == "setup"]
  assert len(calls) == 1, "setup.py calls setup() once"
  keywords = {k.arg: k.value for k in calls[0].keywords}

  def value(key, default):
    node = keywords.get(key)
    node = names.get(node.id, node) if isinstance(node, ast.Name) else node
    return default if node is None else ast.literal_eval(node)

  return value("install_requires", []), value("extras_require", {})


def _names(tree: ast.AST) -> set[str]:
  """The top-level names of every absolute import in `tree`, at any depth."""
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out |= {alias.name.split(".")[0] for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
      out.add(node.module.split(".")[0])
  return out


def _statement(source: str, match: re.Match) -> str:
  """The import statement that starts at `match`: to its closing parenthesis, over any lines a
  backslash continues."""
  end = match.end()
  if "(" in match.group() and ")" not in match.group():
    end = source.find(")", end) + 1 or len(source)
  while source[match.start():end].rstrip().endswith("\\") and end < len(source):
    line_end = source.find("\n", end + 1)
    end = len(source) if line_end < 0 else line_end
  return source[match.start():end]


def imports(source: str) -> set[str]:
  """The top-level names of every absolute import of a module's source, at any depth (inside a
  def too), and of every importlib.import_module or __import__ of a string constant.

  Parsing each import statement, not the whole file, keeps this test fast. ruff (E701, E702)
  starts each statement on a line of its own, so each import is a line that looks like one;
  one that fails to parse alone (a comment with a parenthesis, or prose) has the whole file
  parsed. A docstring line that parses as an import counts as one: an alarm, never a miss."""
  out = {name.split(".")[0] for name in DYNAMIC.findall(source)}
  for match in IMPORT_LINE.finditer(source):
    try:
      out |= _names(ast.parse(_statement(source, match).strip()))
    except SyntaxError:
      return out | _names(ast.parse(source))
  return out


@functools.cache
def _imports_under(folder: str) -> dict[str, frozenset[str]]:
  out: dict[str, set[str]] = {}
  for path in sorted((ROOT / folder).rglob("*.py")):
    for name in imports(path.read_text()):
      out.setdefault(name, set()).add(str(path.relative_to(ROOT)))
  return {name: frozenset(files) for name, files in out.items()}


def imports_under(*folders: str) -> dict[str, set[str]]:
  """{imported top-level name: the files that import it} of the Python files under `folders`."""
  out: dict[str, set[str]] = {}
  for folder in folders:
    for name, files in _imports_under(folder).items():
      out.setdefault(name, set()).update(files)
  return out


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
  return importlib.metadata.packages_distributions()


def distributions(name: str) -> set[str]:
  """The installed distributions (normalised) that provide the top-level import `name`."""
  return {normalise(d) for d in _packages_distributions().get(name, [])}


def declared(requirements: list[str]) -> set[str]:
  return {normalise(Requirement(r).name) for r in requirements}


def undeclared(imported: dict[str, set[str]], allowed: set[str], own: frozenset[str],
               optional: frozenset[str] = frozenset()) -> list[str]:
  """Why each import is neither the standard library, nor `own`, nor `optional`, nor provided
  by a distribution of `allowed` (normalised names)."""
  out = []
  for name, files in sorted(imported.items()):
    if name in sys.stdlib_module_names or name in own or name in optional:
      continue
    providers = distributions(name)
    if not providers & allowed:
      by = ", ".join(sorted(providers)) or "nothing installed"
      out.append(f"{name} (imported by {', '.join(sorted(files))}; provided by {by}) "
                 "is not declared")
  return out


def unused(required: set[str], imported: set[str]) -> list[str]:
  """The distributions of `required` (normalised) that provide none of `imported`."""
  provided = set().union(*(distributions(name) for name in imported))
  return sorted(required - provided)


def _setup() -> tuple[list[str], dict[str, list[str]]]:
  return setup_requirements((ROOT / "setup.py").read_text())


def test_setup_declares_what_the_package_entry_points_and_configs_import():
  core, _ = _setup()
  found = undeclared(imports_under(*LIBRARY), declared(core), OWN)
  assert not found, "add to install_requires:\n" + "\n".join(found)


def test_setup_declares_what_the_tests_import_in_install_requires_or_the_test_extra():
  core, extras = _setup()
  allowed = declared(core) | declared(extras["test"])
  found = undeclared(imports_under("tests"), allowed, OWN_WITH_TESTS)
  assert not found, "add to the test extra:\n" + "\n".join(found)


def test_the_benchmarks_import_only_install_requires_and_their_optional_reference():
  core, _ = _setup()
  found = undeclared(imports_under("benchmarks"), declared(core), OWN_WITH_TESTS - {"tests"},
                     frozenset(BENCHMARK_OPTIONAL))
  assert not found, "\n".join(found)


def test_every_core_dependency_is_imported_by_the_package_entry_points_or_configs():
  core, _ = _setup()
  found = unused(declared(core) - RUN_TIME_ONLY, set(imports_under(*LIBRARY)))
  assert not found, f"declared in install_requires, imported nowhere: {found}"


def test_every_test_dependency_is_imported_by_the_tests():
  core, extras = _setup()
  test_only = declared(extras["test"]) - TEST_TOOLS
  assert not test_only & declared(core), "a package is both a core and a test dependency"
  found = unused(test_only, set(imports_under("tests")))
  assert not found, f"declared in the test extra, imported by no test: {found}"


def test_the_allow_lists_name_only_what_is_declared_and_not_imported():
  core, extras = _setup()
  assert RUN_TIME_ONLY <= declared(core)
  assert TEST_TOOLS <= declared(extras["test"])
  imported = set(imports_under(*LIBRARY, "tests"))
  assert unused(RUN_TIME_ONLY | TEST_TOOLS, imported) == sorted(RUN_TIME_ONLY | TEST_TOOLS), (
      "an allow-listed package is imported now: take it off its list")
  assert not {normalise(name) for name in BENCHMARK_OPTIONAL} & declared(core)


def test_the_accelerator_extras_install_jax_builds_in_the_range_of_the_core_jax():
  core, extras = _setup()
  (jax,) = [r for r in map(Requirement, core) if normalise(r.name) == "jax"]
  assert any(s.operator in (">=", "==", "~=") for s in jax.specifier), "jax has a lower bound"
  jax_extras = set(importlib.metadata.metadata("jax").get_all("Provides-Extra"))
  assert set(extras) == {"test", *ACCELERATORS}, "every extra is checked here"
  for extra, build in ACCELERATORS.items():
    (requirement,) = map(Requirement, extras[extra])
    assert normalise(requirement.name) == "jax", extra
    assert requirement.extras == {build}, extra
    assert build in jax_extras, f"jax offers no [{build}] extra (pip would ignore it silently)"
    assert requirement.specifier == jax.specifier, (extra, str(requirement.specifier),
                                                    str(jax.specifier))
    assert requirement.marker is None, extra


def test_the_checks_catch_an_undeclared_import_and_an_unused_requirement():
  source = ("import json\nimport numpy.linalg\nfrom . import sibling\n"
            "from yaml import safe_load\ndef f():\n  import no_such_module_xyz\n"
            "  return importlib.import_module('zstandard')\n")
  assert imports(source) == {"json", "numpy", "yaml", "no_such_module_xyz", "zstandard"}
  # Over lines, inside a class, beside prose that starts with the words, or odd enough for the
  # whole file to be parsed.
  assert imports('"""Doc.\nfrom the start\nimport it later\n"""\nfrom a.b import (\n  c,\n  d)\n'
                 "import e, \\\n  f as g\nclass C:\n  from h import i\n") == {
                     "a", "e", "f", "h"}
  assert imports("from a import (b,  # c(d)\n  e)\nimport f\n") == {"a", "f"}
  found = undeclared({name: {"m.py"} for name in imports(source)}, {"numpy", "pyyaml"},
                     frozenset())
  assert [line.split(" ")[0] for line in found] == ["no_such_module_xyz", "zstandard"]
  assert "provided by nothing installed" in found[0]
  assert unused({"numpy", "pyyaml", "tensorboardx", "ml-dtypes"}, {"numpy", "yaml"}) == [
      "ml-dtypes", "tensorboardx"]
  assert setup_requirements(
      "from setuptools import setup\nREQS = ['Jax>=0.10', 'absl_py']\n"
      "setup(name='x', install_requires=REQS, extras_require={'tpu': ['jax[tpu]>=0.10']})\n"
  ) == (["Jax>=0.10", "absl_py"], {"tpu": ["jax[tpu]>=0.10"]})
  assert declared(["Jax>=0.10", "absl_py", "ml.dtypes"]) == {"jax", "absl-py", "ml-dtypes"}
