"""Tests of rare_tasks/lm/report/model_and_text.py: the summary's opening with and without a
known loss floor, and the line on a real corpus's text."""

from rare_tasks.core.report import fmt
from rare_tasks.lm.report import model_and_text
from tests.lm.report.conftest import pretraining_info, pretraining_records, write_pretraining


def test_an_unknown_loss_floor(tmp_path):
  records = [dict(r, val_gap=None) for r in pretraining_records()]
  _, numbers, text = write_pretraining(tmp_path, records, pretraining_info(floor=None))
  assert numbers["loss_floor"] is None
  assert "entropy floor" not in numbers["headline"]
  assert "best achievable loss on such a row unknown" in text
  assert f"| 0 | 11 | {fmt(2.4111)} | {fmt(2.3456)} |  |" in text.splitlines()


def test_the_summary_opens_with_the_title_and_the_headline(tmp_path):
  _, numbers, text = write_pretraining(tmp_path, pretraining_records())
  lines = text.splitlines()
  assert lines[0] == "# Pretraining: cpu_d32 (olmo2 block), 2 member(s)"
  assert lines[2] == numbers["headline"]
  assert lines.index("## Model") < lines.index("## Text") < lines.index("## Training")


def _corpus(skipped):
  return {"corpus": "dolma", "root": "/data/dolma", "files": 1200, "documents": 34567,
          "skipped_lines": skipped, "train_tokens": 9_876_543, "validation_tokens": 12_345,
          "train_rows": 4_822, "validation_rows": 6, "tokenizer": "gpt2",
          "tokenizer_size": 50257, "vocab_size": 50304, "eos_id": 50256,
          "cache": "/cache/abc", "cache_bytes": 2_500_000, "fingerprint": "f00d"}


def test_a_real_corpus_line_names_files_tokens_tokenizer_and_cache():
  line = model_and_text.text_line("dolma", _corpus({"empty": 3, "bad_json": 1200}))
  first, second = line.split("\n")
  assert first == ("- corpus `dolma` (/data/dolma): 1,200 files, 34,567 documents (skipped: "
                   "1,200 bad_json, 3 empty); 9,876,543 train tokens in 4,822 rows, 12,345 "
                   "validation tokens in 6 rows")
  assert second == ("- tokenizer: gpt2, 50,257 tokens (the model's vocabulary 50,304), EOS id "
                    "50256; cache /cache/abc (2.5 MB, fingerprint f00d)")
  assert "skipped" not in model_and_text.text_line("dolma", _corpus({}))
  assert "(python.org)" in model_and_text.text_line("dolma", dict(_corpus({}),
                                                                   python="python.org"))


def test_a_synthetic_source_line_lists_its_numbers():
  line = model_and_text.text_line("markov", {"num_states": 2048, "entropy_rate": 1.23456})
  assert line == "- corpus `markov`: num_states 2048, entropy_rate 1.23"
