"""Tests of rare_tasks/core/traces.py: chunks written per training chunk, read back as one trace."""

import numpy as np
import pytest

from rare_tasks.core import disk, traces
from tests import full_disk

S, P, R = 2, 3, 1


def _chunk(first, last, offset=0.0):
  steps = np.arange(first, last + 1)
  fvu = (steps[:, None, None, None] + offset + np.zeros((1, S, P, R))).astype(np.float32)
  enc = np.random.default_rng(first).standard_normal((len(steps), S, P, 4, 6)).astype(np.float32)
  return steps, {"rare_fvu": fvu, "encoder_map": enc}


def test_round_trip_concatenates_chunks_in_step_order(tmp_path):
  chunks = [_chunk(4, 11), _chunk(0, 0), _chunk(12, 13), _chunk(1, 3)]  # written out of order
  for steps, arrays in chunks:
    traces.write_chunk(tmp_path, "g0", steps, arrays)
  # Files are named by their last step; no temporary file is left behind.
  names = sorted(f.name for f in (tmp_path / traces.TRACES_DIR / "g0").iterdir())
  assert names == ["000000000.npz", "000000003.npz", "000000011.npz", "000000013.npz"]

  out = traces.read_group(tmp_path, "g0")
  assert set(out) == {"steps", "rare_fvu", "encoder_map"}
  np.testing.assert_array_equal(out["steps"], np.arange(14))
  assert out["steps"].dtype == np.int64
  assert out["rare_fvu"].shape == (14, S, P, R) and out["rare_fvu"].dtype == np.float32
  np.testing.assert_array_equal(out["rare_fvu"][:, 1, 2, 0], np.arange(14))
  ordered = sorted(chunks, key=lambda c: c[0][0])
  np.testing.assert_array_equal(out["encoder_map"],
                                np.concatenate([a["encoder_map"] for _, a in ordered]))


def test_trace_may_start_after_step_zero(tmp_path):
  for first, last in [(5, 5), (6, 9)]:
    traces.write_chunk(tmp_path, "g", *_chunk(first, last))
  np.testing.assert_array_equal(traces.read_group(tmp_path, "g")["steps"], np.arange(5, 10))


def test_rewritten_chunk_replaces_the_old_one(tmp_path):
  traces.write_chunk(tmp_path, "g", *_chunk(0, 4))
  traces.write_chunk(tmp_path, "g", *_chunk(5, 9))
  traces.write_chunk(tmp_path, "g", *_chunk(5, 9, offset=100.0))  # a resumed run
  out = traces.read_group(tmp_path, "g")
  np.testing.assert_array_equal(out["steps"], np.arange(10))
  np.testing.assert_array_equal(out["rare_fvu"][:, 0, 0, 0],
                                np.concatenate([np.arange(5), np.arange(5, 10) + 100.0]))


def test_groups_are_separate(tmp_path):
  traces.write_chunk(tmp_path, "a", *_chunk(0, 2))
  traces.write_chunk(tmp_path, "b", *_chunk(0, 4))
  assert len(traces.read_group(tmp_path, "a")["steps"]) == 3
  assert len(traces.read_group(tmp_path, "b")["steps"]) == 5


def test_missing_step_raises(tmp_path):
  traces.write_chunk(tmp_path, "g", *_chunk(0, 3))
  traces.write_chunk(tmp_path, "g", *_chunk(5, 7))  # step 4 left out
  with pytest.raises(RuntimeError, match="do not tile"):
    traces.read_group(tmp_path, "g")


def test_repeated_step_raises(tmp_path):
  traces.write_chunk(tmp_path, "g", *_chunk(0, 3))
  traces.write_chunk(tmp_path, "g", *_chunk(2, 5))  # steps 2 and 3 twice
  with pytest.raises(RuntimeError):
    traces.read_group(tmp_path, "g")


def test_no_trace_is_none_and_temporary_files_are_ignored(tmp_path):
  assert traces.read_group(tmp_path, "g") is None
  folder = tmp_path / traces.TRACES_DIR / "g"
  folder.mkdir(parents=True)
  assert traces.read_group(tmp_path, "g") is None
  # An interrupted write leaves only a temporary file: not part of the trace.
  steps, arrays = _chunk(0, 2)
  np.savez(folder / "000000002.tmp.npz", steps=steps, **arrays)
  assert traces.read_group(tmp_path, "g") is None
  traces.write_chunk(tmp_path, "g", *_chunk(0, 1))
  np.testing.assert_array_equal(traces.read_group(tmp_path, "g")["steps"], [0, 1])


def test_a_chunk_written_on_a_full_disk_leaves_no_partial_file(tmp_path, monkeypatch):
  traces.write_chunk(tmp_path, "g", *_chunk(0, 1))
  full_disk.fill_path_writes(monkeypatch, lambda p: p.name.endswith(".tmp"))
  path = tmp_path / traces.TRACES_DIR / "g" / "000000003.npz"
  with pytest.raises(disk.DiskFull, match=f"cannot write {path}: no space left on the device"):
    traces.write_chunk(tmp_path, "g", *_chunk(2, 3))
  assert sorted(p.name for p in path.parent.iterdir()) == ["000000001.npz"]
  monkeypatch.undo()
  traces.write_chunk(tmp_path, "g", *_chunk(2, 3))  # the resume writes it again
  np.testing.assert_array_equal(traces.read_group(tmp_path, "g")["steps"], [0, 1, 2, 3])
