"""Tests of rare_tasks/core/disk.py: which errors are a full disk, DiskFull's one line, and
`writing` turning the first into the second."""

import errno
import os
import pickle

import pytest

from rare_tasks.core import disk

# What orbax raised when a checkpoint filled a 200 KB file system (its text, shortened).
ORBAX = ('RESOURCE_EXHAUSTED: Error writing "opt_state.0.mu.encoder.kernel/0.0.0.0" in OCDBT '
         'database at local file "wd/checkpoints/g/600.orbax-checkpoint-tmp/": Failed to write '
         "22084 bytes to file 11: No space left on device [os_error_code='28']")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
def test_an_os_error_of_no_space_quota_or_file_size_is_no_space(code):
  assert disk.no_space(OSError(code, os.strerror(code), "f"))


@pytest.mark.parametrize("error", [
    ValueError(ORBAX), RuntimeError("RESOURCE_EXHAUSTED: Error writing x"),
    RuntimeError("Failed writing x: Disk quota exceeded"),
    RuntimeError("IoError(Os { code: 28, message: \"No space left on device\" })")])
def test_a_native_error_whose_text_says_no_space_is_no_space(error):
  assert disk.no_space(error)


def test_no_space_is_found_in_the_chain_of_causes_and_contexts():
  try:
    try:
      raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as inner:
      raise RuntimeError("save failed") from inner
  except RuntimeError as e:
    assert disk.no_space(e)
  try:
    try:
      raise ValueError(ORBAX)
    except ValueError:
      raise KeyError("while cleaning up")  # noqa: B904 (the implicit context is the point)
  except KeyError as e:
    assert disk.no_space(e)


@pytest.mark.parametrize("error", [
    OSError(errno.EACCES, "Permission denied"), FileNotFoundError(errno.ENOENT, "gone"),
    ValueError("bad value"), RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 4 GiB"),
    KeyboardInterrupt()])
def test_an_unrelated_error_is_not_no_space(error):
  assert not disk.no_space(error)


def test_disk_full_is_one_line_naming_the_path_the_free_space_and_the_resume(tmp_path):
  e = disk.DiskFull(tmp_path / "wd" / "metrics.jsonl", 212_345)
  text = str(e)
  assert "\n" not in text
  assert text.startswith(f"cannot write {tmp_path / 'wd' / 'metrics.jsonl'}: no space left on "
                         "the device (212.3 kB free on ")
  assert text.endswith("free some space and run the same command again to resume")
  assert isinstance(e, OSError) and e.errno == errno.ENOSPC
  assert e.path == str(tmp_path / "wd" / "metrics.jsonl") and e.free_bytes == 212_345
  assert str(pickle.loads(pickle.dumps(e))) == text


def test_disk_full_names_the_mount_point_and_says_when_the_space_is_unknown(tmp_path):
  assert f"0 bytes free on {disk.mount_of(tmp_path)})" in str(disk.DiskFull(tmp_path / "x", 0))
  assert "(unknown space free on " in str(disk.DiskFull(tmp_path / "x", None))
  assert os.path.ismount(disk.mount_of(tmp_path / "not" / "yet"))


def test_free_bytes_reads_the_nearest_existing_parent(tmp_path):
  free = disk.free_bytes(tmp_path / "not" / "yet" / "made")
  assert isinstance(free, int) and free >= 0
  assert disk.existing_parent(tmp_path / "a" / "b") == tmp_path


def test_size_text_is_for_people():
  assert [disk.size_text(n) for n in (0, 999, 212_345, 3_400_000_000)] == [
      "0 bytes", "999 bytes", "212.3 kB", "3.4 GB"]


def test_writing_raises_disk_full_from_the_original_error(tmp_path):
  original = ValueError(ORBAX)
  with pytest.raises(disk.DiskFull) as caught:
    with disk.writing(tmp_path / "checkpoints"):
      raise original
  assert caught.value.path == str(tmp_path / "checkpoints")
  assert caught.value.__cause__ is original
  assert caught.value.free_bytes == disk.free_bytes(tmp_path)


def test_writing_says_which_limit_a_quota_or_a_file_size_hit(tmp_path):
  with pytest.raises(disk.DiskFull, match=r"on the device \(the file exceeds a size limit; "):
    with disk.writing(tmp_path / "f"):
      raise OSError(errno.EFBIG, "File too large")
  with pytest.raises(disk.DiskFull, match=r"\(disk quota exceeded; "):
    with disk.writing(tmp_path / "f"):
      raise OSError(errno.EDQUOT, "Disk quota exceeded")


def test_writing_passes_other_errors_and_an_inner_disk_full_unchanged(tmp_path):
  with pytest.raises(PermissionError):
    with disk.writing(tmp_path / "f"):
      raise PermissionError(errno.EACCES, "Permission denied")
  inner = disk.DiskFull(tmp_path / "inner", 5)
  with pytest.raises(disk.DiskFull) as caught:
    with disk.writing(tmp_path / "outer"):
      raise inner
  assert caught.value is inner
  with disk.writing(tmp_path / "f"):
    pass
