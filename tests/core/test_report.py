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


def test_the_diverged_section_lists_each_diverged_model_once_with_its_first_step():
  records = [{"cell": 0, "step": 5, "diverged_step": None},
             {"cell": 1, "step": 5, "diverged_step": 3}, {"cell": 1, "step": 10,
                                                          "diverged_step": 3},
             {"cell": 2, "step": 10, "diverged_step": 9}, {"cell": 0, "step": 10}]
  s = report.diverged_section(records, "cell", lambda r: f"cell {r['cell']}")
  assert s.numbers == {"models_run": 3, "models_diverged": 2}
  assert s.lines[0] == "## Diverged models" and "2 of 3 models diverged" in s.lines[2]
  assert s.lines[4:6] == ["- cell 1: step 3", "- cell 2: step 9"]
  assert not report.every_model_diverged(s.numbers)
  calm = report.diverged_section(records[:1], "cell", str)
  assert calm.lines == [] and calm.numbers == {"models_run": 1, "models_diverged": 0}
  assert report.every_model_diverged({"models_run": 2, "models_diverged": 2})
  assert not report.every_model_diverged({"headline": "no models counted"})
