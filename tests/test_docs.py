"""Tests of the documentation: every relative link in README.md and docs/*.md resolves to a file
of the repository (and an #anchor into a Markdown file to one of its headings, as GitHub makes
them), and no tracked text file names a Markdown document the repository lacks."""

import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Markdown documents a run writes into its work directory: named in the code, not in the repository.
OUTPUT_DOCUMENTS = {"summary.md"}
# Tracked files read for the names of Markdown documents.
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".cfg", ".ini", ".yaml", ".yml", ".sh"}
TEXT_FOLDERS = (".ci/",)
# A document no longer in the repository, spelt in pieces so that this file does not name it.
GONE = "PAPER" + ".md"

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
MARKDOWN_NAME = re.compile(r"[\w./-]*\w\.md\b")


def _prose(text: str) -> str:
  """`text` without fenced code blocks (a '# comment' there is no heading)."""
  return FENCE.sub("", text)


def anchors(text: str) -> set[str]:
  """The anchors GitHub gives the headings of a Markdown text."""
  out, seen = set(), {}
  for _, title in HEADING.findall(_prose(text)):
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link keeps its text
    slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
    count = seen.get(slug, 0)
    seen[slug] = count + 1
    out.add(slug if count == 0 else f"{slug}-{count}")
  return out


def broken_links(path: pathlib.Path, root: pathlib.Path = ROOT) -> list[str]:
  """Every relative link of the Markdown file `path` that names no file of `root`, or an anchor
  that no heading of its target makes."""
  out = []
  for target in LINK.findall(INLINE_CODE.sub("", _prose(path.read_text()))):
    if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
      continue
    name, _, anchor = target.partition("#")
    file = (path.parent / name).resolve() if name else path
    if not file.is_file() or root not in file.parents:
      out.append(f"{target}: no such file")
    elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
      out.append(f"{target}: no heading makes #{anchor}")
  return out


def missing_documents(path: pathlib.Path, root: pathlib.Path = ROOT) -> list[str]:
  """The Markdown documents the text file `path` names that exist neither relative to it nor to
  `root`, and are no work-directory output."""
  out = []
  text = re.sub(r"[a-z][a-z0-9+.-]*://\S+", "", path.read_text(errors="replace"))  # URLs
  for name in sorted(set(MARKDOWN_NAME.findall(text))):
    if pathlib.PurePosixPath(name).name in OUTPUT_DOCUMENTS:
      continue
    if not ((path.parent / name).is_file() or (root / name.lstrip("/")).is_file()):
      out.append(name)
  return out


def _tracked_text_files() -> list[str]:
  try:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split("\n")
  except (OSError, subprocess.CalledProcessError):
    pytest.skip("not a git checkout")
  return [f for f in listed if f and (pathlib.PurePosixPath(f).suffix in TEXT_SUFFIXES
                                      or f.startswith(TEXT_FOLDERS))
          and (ROOT / f).is_file()]


def test_the_documents_exist():
  assert ROOT / "README.md" in DOCUMENTS
  assert len(DOCUMENTS) > 1, "docs/*.md"


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
  assert broken_links(path) == []


def test_no_text_file_names_a_markdown_document_the_repository_lacks():
  missing = {}
  for name in _tracked_text_files():
    found = missing_documents(ROOT / name)
    if found:
      missing[name] = found
  assert missing == {}


def test_no_text_file_names_the_document_that_is_gone():
  naming = {f for f in _tracked_text_files()
            if GONE.lower() in (ROOT / f).read_text(errors="replace").lower()}
  assert naming == set(), "name the relevant section of docs/science.md instead"


def test_the_checks_catch_a_broken_link_an_unknown_anchor_and_a_missing_document(tmp_path):
  # The scratch tree's names are built from pieces, so that this file names no Markdown document.
  a, b, c, notes = (f"{name}.{'md'}" for name in ("docs/a", "docs/b", "docs/c", "notes"))
  (tmp_path / "docs").mkdir()
  (tmp_path / a).write_text("# Title\n\n## The `x` study: one\n\n```\n# no\n```\n")
  readme = tmp_path / "README.md"
  readme.write_text(
      f"[ok]({a}#the-x-study-one) [ok](#top) [web](https://x.org/{notes})\n"
      f"[gone]({b}) [anchor]({a}#no) `[code]({c})`\n\n# Top\n"
      f"names {a}, summary.{'md'} and {notes}\n")
  assert broken_links(readme, tmp_path) == [f"{b}: no such file", f"{a}#no: no heading makes #no"]
  assert missing_documents(readme, tmp_path) == [b, c, notes]
  assert anchors((tmp_path / a).read_text()) == {"title", "the-x-study-one"}
