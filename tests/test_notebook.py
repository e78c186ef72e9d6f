"""Tests of notebooks/rare_tasks_colab.ipynb, the Colab notebook the README's badge opens.

Executed top to bottom on the CPU, as its own test mode runs it (RARE_TASKS_SMOKE=1: the
installed checkout, no install, the :smoke presets), it runs both studies through
experiments.main and shows their figures and summary tables. It is committed without outputs. The
repository's URL is named once, as setup.py's url; the README's badge and the notebook repeat it
exactly and name no other GitHub repository.
"""

import ast
import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.test_docs import anchors

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "rare_tasks_colab.ipynb"
# Per study run by the notebook (its work directory under RARE_TASKS_WORKDIR): the figure it shows
# and a line of the summary table it shows.
RUNS = {
    "width_by_frequency_smoke": ("width_by_frequency.png",
                                 "## Rare-task FVU, measured (predicted), one cell each"),
    "lm_size_by_frequency_smoke": ("heatmap_comparison.png",
                                   "Train accuracy (seed mean; seeds learned of 1):"),
}
# A URL in Markdown, a Python string or a shell command.
URL = re.compile(r"https?://[^\s\"'`<>()\[\]\\]+")
# The repository a URL names: github.com/<owner>/<name> or Colab's /github/<owner>/<name>.
REPOSITORY = re.compile(r"^https?://(?:github\.com|colab\.research\.google\.com/github)"
                        r"/([^/]+/[^/#?]+)")


def setup_url(source: str) -> str:
  """The url= of setup.py's setup() call, read with ast (importing setup.py would run setup())."""
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Call) and ast.unparse(node.func) == "setup":
      for keyword in node.keywords:
        if keyword.arg == "url":
          return ast.literal_eval(keyword.value)
  raise AssertionError("setup.py's setup() has no url=")


def colab_url(url: str, notebook: str) -> str:
  """Colab's address of `notebook` (a path in the repository) on the main branch of `url`."""
  return f"https://colab.research.google.com/github/{repository(url)}/blob/main/{notebook}"


def repository(url: str) -> str | None:
  """owner/name of the GitHub repository `url` names, or None for any other URL."""
  match = REPOSITORY.match(url)
  return match.group(1).removesuffix(".git") if match else None


def urls(text: str) -> list[str]:
  """The URLs in `text`, without the punctuation of a sentence they end."""
  return [u.rstrip(".,;:!?") for u in URL.findall(text)]


def other_repositories(text: str, url: str) -> list[str]:
  """The URLs in `text` that name a GitHub repository other than `url`'s, or name it spelt
  otherwise than `url` (a URL into it must begin with `url` or its Colab address)."""
  own = (url, f"https://colab.research.google.com/github/{repository(url)}")
  return [u for u in urls(text) if repository(u) is not None
          and not any(u == p or u.startswith(p + "/") for p in own)]


def _text(cell) -> str:
  """A cell's source, as Jupyter stores it (one string or a list of lines)."""
  source = cell["source"]
  return source if isinstance(source, str) else "".join(source)


@pytest.fixture(scope="module")
def url():
  return setup_url((ROOT / "setup.py").read_text())


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  """The notebook executed top to bottom by a python3 kernel in the repository's root, as its
  test mode runs it, with its work directories in a temporary folder: (notebook, folder)."""
  workdirs = tmp_path_factory.mktemp("notebook")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  # One JAX device per core, as on Colab's CPU (experiments.main's default), not the 8 simulated
  # devices of tests/conftest.py, with which the language-model run takes twice as long.
  xla_flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "",
                     os.environ.get("XLA_FLAGS", "")).strip()
  env = dict(os.environ, RARE_TASKS_SMOKE="1", JAX_PLATFORMS="cpu",
             RARE_TASKS_WORKDIR=str(workdirs), XLA_FLAGS=xla_flags)
  client = NotebookClient(nb, kernel_name="python3", timeout=240,
                          resources={"metadata": {"path": str(ROOT)}})
  client.execute(env=env)
  return nb, workdirs


def _outputs(nb, mime: str) -> list[str]:
  """Every display output of type `mime` (as text) of the executed notebook."""
  return [out["data"][mime] for cell in nb.cells if cell.cell_type == "code"
          for out in cell.get("outputs", []) if mime in out.get("data", {})]


def _stdout(nb) -> str:
  return "".join(out["text"] for cell in nb.cells if cell.cell_type == "code"
                 for out in cell.get("outputs", []) if out.get("name") == "stdout")


def test_executed_on_the_cpu_it_skips_the_install_and_picks_the_smoke_presets(executed):
  """In its test mode it installs nothing, finds the CPU, and runs both :smoke presets through
  experiments.main to their one-line results."""
  nb, _ = executed
  stdout = _stdout(nb)
  assert "RARE_TASKS_SMOKE=1 and rare_tasks is importable: install skipped" in stdout
  assert "backend: CPU" in stdout
  assert "presets: smoke" in stdout
  for study in ("width_by_frequency", "lm_size_by_frequency"):
    assert f"$ python -m experiments.main --config=configs/{study}.py:smoke" in stdout
  assert stdout.count("/summary.md: ") == 2  # each run's one-line result


def test_executed_it_writes_each_studys_figure_and_shows_it_with_its_summary_table(executed):
  """Each study's key figure is written under RARE_TASKS_WORKDIR and shown inline (image/png),
  with its summary tables as Markdown, without the summaries' figure links."""
  nb, workdirs = executed
  images = _outputs(nb, "image/png")
  markdown = "\n".join(_outputs(nb, "text/markdown"))
  for run, (figure, table_line) in RUNS.items():
    assert (workdirs / run / "figures" / figure).is_file(), run
    assert table_line in markdown, run
  assert len(images) == len(RUNS) and all(len(png) > 1000 for png in images)
  assert "| width | f=0.001 | f=0.03 | f=0.2 |" in markdown
  assert "| size | 0.1 | 0.8 |" in markdown
  assert "![" not in markdown  # the summaries' figure links, which would not resolve there


def test_the_committed_notebook_has_no_outputs_and_no_execution_counts():
  """The committed file is stripped: no outputs, no execution counts, and valid nbformat."""
  nb = json.loads(NOTEBOOK.read_text())
  code = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
  assert code
  assert [cell["outputs"] for cell in code] == [[] for _ in code]
  assert [cell["execution_count"] for cell in code] == [None for _ in code]
  nbformat.validate(nbformat.reads(NOTEBOOK.read_text(), as_version=4))


def test_the_readme_badge_and_the_install_cell_name_setup_pys_url_and_no_other(url):
  """setup.py's url is the one name of the repository: the README's Colab badge opens this
  notebook there, its install cell clones that URL, and neither names another repository."""
  assert repository(url), f"setup.py's url {url} is no GitHub repository"
  readme = (ROOT / "README.md").read_text()
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  badge = colab_url(url, NOTEBOOK.relative_to(ROOT).as_posix())
  assert f"(https://colab.research.google.com/assets/colab-badge.svg)]({badge})" in readme
  install = [cell for cell in notebook.cells
             if cell.cell_type == "code" and "pip install" in _text(cell)]
  assert len(install) == 1
  assert f'"{url}"' in _text(install[0])  # cloned from that name
  assert other_repositories(readme, url) == []
  for cell in notebook.cells:
    assert other_repositories(_text(cell), url) == [], cell.id


def test_the_notebooks_links_into_the_repository_name_its_files_and_headings(url):
  """Every link of the notebook into the repository (on GitHub) names a file it has, and a
  heading of that file where it has an #anchor."""
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  targets = [u.removeprefix(f"{url}/blob/main/") for cell in notebook.cells
             for u in urls(_text(cell)) if u.startswith(f"{url}/blob/main/")]
  assert targets
  broken = []
  for target in targets:
    name, _, anchor = target.partition("#")
    file = ROOT / name
    if not file.is_file() or (anchor and anchor not in anchors(file.read_text())):
      broken.append(target)
  assert broken == []


def test_the_url_checks_catch_another_repository_and_another_spelling():
  """The checks above find setup.py's url, and flag another repository or another spelling."""
  url = "https://github.com/a-b/c_d"
  assert setup_url(f"from setuptools import setup\nsetup(name='x', url={url!r})\n") == url
  with pytest.raises(AssertionError, match="no url="):
    setup_url("setup(name='x')")
  assert colab_url(url, "n/x.ipynb") == (
      "https://colab.research.google.com/github/a-b/c_d/blob/main/n/x.ipynb")
  text = (f"clone {url} or {url}.git; see [d]({url}/blob/main/d.txt) and "
          "(https://colab.research.google.com/github/a-b/c_d/blob/main/n.ipynb), "
          "https://pypi.org/project/x, https://github.com/a-b/other and "
          "https://colab.research.google.com/github/z/c_d/blob/main/n.ipynb and "
          "'https://github.com/a-b/c_d_fork'.")
  assert other_repositories(text, url) == [
      f"{url}.git", "https://github.com/a-b/other",
      "https://colab.research.google.com/github/z/c_d/blob/main/n.ipynb",
      "https://github.com/a-b/c_d_fork"]
