"""Tests of rare_tasks/core/report.py: summary.md from sections, declared files, number words."""

from rare_tasks.core import report


def test_summary_is_the_sections_in_order_and_their_numbers_merged(tmp_path):
  sections = [report.Section(["# Title", ""], {"a": 1}, ("x.csv",)),
              report.Section([], {"b": 2}),
              report.Section(["## Part", "text"], {"a": 3})]
  numbers = report.write_summary(tmp_path, sections)
  assert (tmp_path / "summary.md").read_text() == "# Title\n\n## Part\ntext\n"
  assert numbers == {"a": 3, "b": 2}


def test_declared_files_are_a_union_in_first_seen_order():
  assert report.declared_files(("a", "b"), ("b", "c"), ()) == ("a", "b", "c")


def test_number_words():
  assert report.fmt(0.123456) == "0.123" and report.fmt(float("nan")) == "nan"
  assert report.pct(0.456) == "46%" and report.pct(float("inf")) == "nan"
