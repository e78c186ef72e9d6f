"""Tests of rare_tasks/synthetic/report/overview.py on hand-made runs: the opening lines and the
rare-task table with and without a closed form, the figures, and the index of what was written."""

from rare_tasks.core.report import Section
from rare_tasks.synthetic.report import overview
from tests.synthetic.report.conftest import hand_made_run


def test_the_opening_shows_measured_beside_predicted_and_draws_both_figures(tmp_path):
  run = hand_made_run(tmp_path)
  section = overview.section(run)
  text = "\n".join(section.lines)
  assert text.startswith("# Width x frequency study: linear_mixture\n")
  assert "task `linear_mixture` with 3 tasks of 2 features (1 rare, common exponent 1.0, " in text
  assert "## Rare-task FVU, measured (predicted), one cell each" in text
  assert "| 1 | **0.10 (1.00)** |" in text  # measured learned, predicted not
  assert "Critical width of the rare task at each frequency: 0.05: " in text
  assert "This invocation: 20 steps trained (summed over groups), 1.0 s wall." in text
  assert section.numbers["cells"] == 4 and section.numbers["diverged_cells"] == []
  assert section.files == overview.FILES and set(section.captions) == set(overview.FILES)
  for name in ("width_by_frequency.png", "learning_curves.png"):
    assert (tmp_path / "figures" / name).stat().st_size > 10_000


def test_without_a_closed_form_the_same_code_shows_the_measurement_alone(tmp_path):
  run = hand_made_run(tmp_path, "sparse_parity")
  text = "\n".join(overview.section(run).lines)
  assert "task `sparse_parity` (SparseParity(" in text
  assert "## Rare-task loss, measured, one cell each" in text
  assert "| 1 | 0.90 | 0.90 |" in text and "| 1 | 0.90 (" not in text
  assert "Critical width" not in text
  assert (tmp_path / "figures" / "width_by_frequency.png").stat().st_size > 10_000


def test_a_diverged_cell_is_listed(tmp_path):
  run = hand_made_run(tmp_path)
  run.rows[0]["fvu"] = float("nan")
  section = overview.section(run)
  assert section.numbers["diverged_cells"] == [0]
  assert "Diverged (non-finite loss; counted as not learned): cells [0]" in "\n".join(
      section.lines)


def test_the_index_lists_what_the_sections_wrote_with_their_captions():
  lines = overview.index([
      Section([], {}, ("figures/a.png", "figures/b.png"),
              {"figures/b.png": "bee", "figures/a.png": "ay"}),
      Section([], {}, ("results.csv",), {"results.csv": "one row per cell and task"}),
      Section([], {}, ("figures/c.png",))]).lines  # written, but not for the index
  assert lines == ["## Figures", "", "![bee](figures/b.png)", "", "![ay](figures/a.png)", "",
                   "Tables: `results.csv` (one row per cell and task), `metrics.jsonl` "
                   "(every evaluation).", ""]
