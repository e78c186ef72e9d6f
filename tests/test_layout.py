"""Tests of the package's layout (docs/architecture.md), read from its source with ast: every
import points down the layers, the two tracks never import each other, no cycle, no import
inside a function, and modules and functions stay small enough to read."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rare_tasks"

# Layer of each part of the package; a module imports only from layers below its own, or from
# its own part. The tracks (synthetic, lm) share a layer and never import each other.
LAYERS = {"core": 0, "analysis": 1, "injection": 1, "synthetic": 2, "lm": 2, "studies": 3,
          "": 3}
# Inside the synthetic track, the same rule between its parts.
SYNTHETIC = {"theory": 0, "models": 0, "placement": 0, "tasks": 1, "config": 2, "grid": 3,
             "ensemble": 3, "training": 4, "report": 4, "grid_study": 5, "mixture_design": 5}
# Inside the language-model track, likewise.
LM = {"ladder": 0, "sharding": 0, "data": 0, "tasks": 0, "model": 1, "memory": 1,
      "injections": 1, "task_metrics": 1, "count_baseline": 1, "probes": 1, "task_trace": 1,
      "config": 2, "trainer": 2, "grid": 2, "hf": 2, "gradients": 2,
      "report": 3, "specs": 3, "program": 3, "grid_config": 3, "gradient_log": 3,
      "pretrain": 4, "export": 4, "mixture_config": 4, "grid_study": 5, "mixture_design": 6}
RANKS = {"synthetic": SYNTHETIC, "lm": LM}
TRACKS = set(RANKS)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# Declarative config tables, exempt from the function length.
LONG_TABLES = {"rare_tasks.synthetic.config.base_config"}
MAX_TOP_LEVEL_MODULES = 8


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for path in sorted(PACKAGE.rglob("*.py")):
    parts = path.relative_to(ROOT).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    out[name] = path
  return out


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
  """The rare_tasks modules an import statement names (a name may be a module or a symbol)."""
  if isinstance(node, ast.Import):
    return [a.name for a in node.names if a.name.split(".")[0] == "rare_tasks"]
  if node.level:
    raise AssertionError(f"{module}: relative import at line {node.lineno}")
  if not node.module or node.module.split(".")[0] != "rare_tasks":
    return []
  out = []
  for alias in node.names:
    full = f"{node.module}.{alias.name}"
    out.append(full if full in MODULES else node.module)
  return out


def _imports(module: str) -> list[tuple[str, int, bool]]:
  """(imported module, line, at module level) of every rare_tasks import of `module`."""
  tree = ast.parse(MODULES[module].read_text())
  top = set(map(id, tree.body))
  out = []
  for node in ast.walk(tree):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      out += [(name, node.lineno, id(node) in top) for name in _resolve(module, node)]
  return out


def _part(module: str) -> str:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else ""


def _track_part(module: str) -> str | None:
  """The part of a track a module belongs to (synthetic.grid -> "grid"), or None."""
  parts = module.split(".")
  return parts[2] if len(parts) > 2 and parts[1] in RANKS else None


def _violation(module: str, imported: str) -> str | None:
  """Why `module` may not import `imported`, or None."""
  a, b = _part(module), _part(imported)
  if a == b:
    sa, sb = _track_part(module), _track_part(imported)
    ranks = RANKS.get(a, {})
    if sa and sb and sa != sb and ranks[sb] >= ranks[sa]:
      return f"{a}.{sa} (rank {ranks[sa]}) imports {a}.{sb} (rank {ranks[sb]})"
    return None
  if b == "":
    return "imports the package's top level"
  if LAYERS[b] >= LAYERS[a]:
    if LAYERS[a] != LAYERS[b]:
      kind = "upward"
    else:
      kind = "cross-track" if {a, b} <= TRACKS else "sideways"
    return f"{kind} import: {a} (layer {LAYERS[a]}) imports {b} (layer {LAYERS[b]})"
  return None


def test_every_part_of_the_package_has_a_layer():
  assert {_part(m) for m in MODULES} <= set(LAYERS)
  for track, ranks in RANKS.items():
    assert {_track_part(m) for m in MODULES if _part(m) == track} - {None} <= set(ranks)


def test_imports_point_down_the_layers_and_never_across_tracks():
  bad = [f"{MODULES[m].relative_to(ROOT)}:{line}: {m} -> {name}: {why}"
         for m in MODULES for name, line, _ in _imports(m)
         if (why := _violation(m, name)) is not None]
  assert not bad, "\n".join(bad)


def test_every_import_of_the_package_is_at_a_modules_top_level():
  bad = [f"{MODULES[m].relative_to(ROOT)}:{line}: {m} imports {name} below its top level "
         "(inside a def, a class or a block)"
         for m in MODULES for name, line, top in _imports(m) if not top]
  assert not bad, "\n".join(bad)


def _dynamic_imports(source: str) -> list[tuple[int, str]]:
  """(line, call) of every importlib.import_module or __import__ of a rare_tasks module, or of a
  module named by anything but a string constant (which could be one)."""
  out = []
  for node in ast.walk(ast.parse(source)):
    if (isinstance(node, ast.Call) and node.args
        and ast.unparse(node.func) in ("importlib.import_module", "import_module",
                                       "__import__")):
      name = node.args[0]
      if (not isinstance(name, ast.Constant) or not isinstance(name.value, str)
          or name.value.split(".")[0] == "rare_tasks"):
        out.append((node.lineno, ast.unparse(node)))
  return out


# The one module that imports by name: the study registry, so that a run imports only its own
# track. What it may import is the table it imports from, checked below.
REGISTRY = "rare_tasks.studies"


def test_no_module_of_the_package_is_imported_by_name_at_run_time():
  """importlib.import_module or __import__ would hide an import from the checks above."""
  bad = [f"{path.relative_to(ROOT)}:{line}: {call}" for name, path in MODULES.items()
         if name != REGISTRY for line, call in _dynamic_imports(path.read_text())]
  assert not bad, "\n".join(bad)


def test_the_study_registry_imports_only_study_modules_from_its_table():
  from rare_tasks import studies

  calls = _dynamic_imports(MODULES[REGISTRY].read_text())
  assert [call for _, call in calls] == ["importlib.import_module(STUDIES[study])"]
  for study, module in studies.STUDIES.items():
    assert module in MODULES, (study, module)
    assert _violation(REGISTRY, module) is None, (study, module)
    assert callable(studies.study_module(study).run) and studies.study_module(study).FILES


def test_no_import_cycle():
  graph = {m: sorted({name for name, _, _ in _imports(m) if name in MODULES and name != m})
           for m in MODULES}
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(m: str) -> list[str] | None:
    state[m] = 1
    stack.append(m)
    for n in graph[m]:
      if state.get(n) == 1:
        return stack[stack.index(n):] + [n]
      if n not in state and (cycle := visit(n)):
        return cycle
    stack.pop()
    state[m] = 2
    return None

  for m in graph:
    if m not in state and (cycle := visit(m)):
      pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_checks_catch_what_they_forbid():
  assert _violation("rare_tasks.core.workdir", "rare_tasks.synthetic.config")
  assert _violation("rare_tasks.synthetic.grid", "rare_tasks.lm").startswith("cross-track")
  assert _violation("rare_tasks.analysis.retention", "rare_tasks.injection").startswith(
      "sideways")
  assert _violation("rare_tasks.core.workdir", "rare_tasks.analysis.retention").startswith(
      "upward")
  assert _violation("rare_tasks.synthetic.tasks.linear_mixture",
                    "rare_tasks.synthetic.report.results")
  assert _violation("rare_tasks.synthetic.report.scaling", "rare_tasks.synthetic.training")
  assert _violation("rare_tasks.studies", "rare_tasks.synthetic.grid_study") is None
  assert _dynamic_imports("import importlib\nm = importlib.import_module('rare_tasks.lm')\n"
                          "n = importlib.import_module('json')\n"
                          "o = importlib.import_module(name)") == [
      (2, "importlib.import_module('rare_tasks.lm')"), (4, "importlib.import_module(name)")]
  assert _violation("rare_tasks.synthetic.tasks.linear_mixture",
                    "rare_tasks.synthetic.tasks.task_family") is None
  assert _violation("rare_tasks.lm.model", "rare_tasks.lm.trainer").startswith("lm.model")
  assert _violation("rare_tasks.lm.pretrain", "rare_tasks.lm.trainer") is None


def test_modules_and_functions_are_small_enough_to_read():
  long_modules = [f"{p.relative_to(ROOT)}: {n} lines" for p in MODULES.values()
                  if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
  assert not long_modules, "\n".join(long_modules)
  long_functions = []
  for m, path in MODULES.items():
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        n = node.end_lineno - node.lineno + 1
        if n > MAX_FUNCTION_LINES and f"{m}.{node.name}" not in LONG_TABLES:
          long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
  assert not long_functions, "\n".join(long_functions)


def test_the_top_level_holds_at_most_a_few_modules():
  top = sorted(p.name for p in PACKAGE.glob("*.py"))
  assert len(top) <= MAX_TOP_LEVEL_MODULES, top
  assert top == ["__init__.py", "injection.py", "studies.py"]


def test_the_tests_mirror_the_package():
  """Every library module has its test module at the mirrored path (a package's __init__, a
  docstring or a registry, is tested beside its modules)."""
  missing = []
  for path in MODULES.values():
    rel = path.relative_to(PACKAGE)
    if path.name == "__init__.py":
      continue
    expected = ROOT / "tests" / rel.parent / f"test_{rel.name}"
    if not expected.exists():
      missing.append(str(expected.relative_to(ROOT)))
  assert not missing, "\n".join(missing)
