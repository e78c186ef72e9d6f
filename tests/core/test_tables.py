"""Tests of rare_tasks/core/tables.py: CSV round trip, null as NaN, means by key."""

import math

import pytest

from rare_tasks.core import disk, tables
from tests import full_disk


def test_csv_round_trip_keeps_the_column_order_and_writes_atomically(tmp_path):
  rows = [{"b": 1, "a": 0.5, "extra": "ignored"}, {"b": 2, "a": float("nan"), "extra": ""}]
  tables.write_csv(tmp_path / "t.csv", ("b", "a"), rows)
  assert (tmp_path / "t.csv").read_text() == "b,a\n1,0.5\n2,nan\n"
  assert tables.read_csv(tmp_path / "t.csv") == [{"b": "1", "a": "0.5"}, {"b": "2", "a": "nan"}]
  assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_number_turns_null_back_into_nan():
  assert math.isnan(tables.number(None))
  assert tables.number(3) == 3.0


def test_mean_by_ignores_nan_unless_every_value_is():
  rows = [{"w": 1, "v": 1.0}, {"w": 1, "v": 3.0}, {"w": 1, "v": float("nan")},
          {"w": 2, "v": float("nan")}]
  means = tables.mean_by(rows, ("w",), "v")
  assert means[(1,)] == pytest.approx(2.0)
  assert math.isnan(means[(2,)])


def test_a_table_written_on_a_full_disk_keeps_the_old_one_and_leaves_no_tmp(tmp_path,
                                                                             monkeypatch):
  path = tmp_path / "results.csv"
  tables.write_csv(path, ("a",), [{"a": 1}])
  full_disk.fill_path_writes(monkeypatch, lambda p: p.suffix == ".tmp")
  with pytest.raises(disk.DiskFull, match=f"cannot write {path}: no space left on the device"):
    tables.write_csv(path, ("a",), [{"a": i} for i in range(1000)])
  assert path.read_text() == "a\n1\n" and [p.name for p in tmp_path.iterdir()] == ["results.csv"]
