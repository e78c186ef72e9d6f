"""Reading TensorBoard event files back in the tests (tensorboardX has no reader): the TFRecord
framing parsed here (uint64 length, uint32 masked CRC-32C of it, the data, uint32 masked CRC-32C
of the data, little-endian), each record decoded as tensorboardX's Event proto; and the scalars
TensorBoard shows of a run, its files read in name order, a SessionLog START at step s dropping
the points at steps >= s read before it (TensorBoard's purge of a restarted run)."""

import struct
from pathlib import Path

import numpy as np
from tensorboardX.proto.event_pb2 import Event, SessionLog


def _crc32c_table() -> list[int]:
  table = []
  for n in range(256):
    c = n
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
  return table


_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
  """The TFRecord checksum: CRC-32C (Castagnoli), rotated right by 15 bits plus a constant."""
  c = 0xFFFFFFFF
  for b in data:
    c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
  c ^= 0xFFFFFFFF
  return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(path: Path) -> list[Event]:
  """Every Event of one event file, in order; AssertionError for a bad checksum or a cut
  record."""
  data, i, out = Path(path).read_bytes(), 0, []
  while i < len(data):
    header = data[i:i + 8]
    (length,) = struct.unpack("<Q", header)
    (header_crc,) = struct.unpack("<I", data[i + 8:i + 12])
    assert header_crc == masked_crc32c(header), f"{path}: bad length checksum at byte {i}"
    body = data[i + 12:i + 12 + length]
    assert len(body) == length, f"{path}: record cut short at byte {i}"
    (body_crc,) = struct.unpack("<I", data[i + 12 + length:i + 16 + length])
    assert body_crc == masked_crc32c(body), f"{path}: bad data checksum at byte {i}"
    out.append(Event.FromString(body))
    i += 16 + length
  return out


def event_files(run: Path) -> list[Path]:
  """A run directory's event files in the order TensorBoard reads them (by name)."""
  return sorted(Path(run).glob("events.out.tfevents.*"))


def runs(directory: Path) -> list[str]:
  """The runs under a folder, as TensorBoard lists them: every directory holding event files,
  its path relative to the folder, sorted."""
  return sorted({str(p.parent.relative_to(directory))
                 for p in Path(directory).rglob("events.out.tfevents.*")
                 if p.parent != Path(directory)})


def shown(run: Path) -> dict[str, dict[int, float]]:
  """The scalars TensorBoard shows of a run directory: {tag: {step: value}}. A point written
  twice without a purge between (a duplicated or stale point) raises AssertionError."""
  out: dict[str, dict[int, float]] = {}
  for path in event_files(run):
    for e in read_events(path):
      if e.HasField("session_log") and e.session_log.status == SessionLog.START:
        out = {tag: {s: v for s, v in points.items() if s < e.step}
               for tag, points in out.items()}
      for v in e.summary.value:
        points = out.setdefault(v.tag, {})
        assert e.step not in points, f"{run}: {v.tag} at step {e.step} written twice"
        points[e.step] = v.simple_value
  return {tag: points for tag, points in out.items() if points}


def purge_steps(run: Path) -> list[int]:
  """The step of each SessionLog START (purge) of a run, in file order."""
  return [e.step for path in event_files(run) for e in read_events(path)
          if e.HasField("session_log") and e.session_log.status == SessionLog.START]


def as_float32(value: float) -> float:
  """A record's number as an event holds it (simple_value is float32)."""
  return float(np.float32(value))


def numbers_by_step(records: list[dict], skip: set[str]) -> dict[str, dict[int, float]]:
  """What a run of these records (one model's) shows when its scalars are their numbers:
  {field: {step: float32 value}}, the fields in `skip`, bools, lists, None and NaN left out."""
  out: dict[str, dict[int, float]] = {}
  for r in records:
    for k, v in r.items():
      if (k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)
          and np.isfinite(v)):
        out.setdefault(k, {})[r["step"]] = as_float32(v)
  return out
