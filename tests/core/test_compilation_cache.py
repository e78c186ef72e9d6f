"""Tests of rare_tasks/core/compilation_cache.py: programs kept on disk and read back by a later
process (each case in a fresh process: the cache is process-wide JAX configuration)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from rare_tasks.core import compilation_cache

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp
    from jax import monitoring
    from rare_tasks.core import compilation_cache
    events = []
    monitoring.register_event_listener(lambda name, **kw: events.append(name))
    if sys.argv[2] == "on":
      compilation_cache.enable(sys.argv[1])
    else:
      compilation_cache.disable()
    out = jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((4, 4)))
    print(json.dumps({"hits": events.count("/jax/compilation_cache/cache_hits"),
                      "value": float(out[0, 0])}))
""")


def _run(cache_dir: Path, mode: str) -> dict:
  proc = subprocess.run([sys.executable, "-c", PROGRAM, str(cache_dir), mode], cwd=ROOT,
                        capture_output=True, text=True, check=True)
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_program_compiled_once_is_read_back_by_the_next_process(tmp_path):
  first = _run(tmp_path / "cache", "on")
  assert first["hits"] == 0 and any((tmp_path / "cache").iterdir())
  second = _run(tmp_path / "cache", "on")
  assert second["hits"] >= 1 and second["value"] == first["value"]


def test_a_disabled_cache_writes_nothing(tmp_path):
  assert _run(tmp_path / "cache", "off")["hits"] == 0
  assert not (tmp_path / "cache").exists()


def test_the_default_folder_follows_xdg_cache_home(monkeypatch, tmp_path):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert compilation_cache.default_dir() == tmp_path / "rare_tasks" / "compiled"
  monkeypatch.delenv("XDG_CACHE_HOME")
  assert compilation_cache.default_dir() == Path.home() / ".cache" / "rare_tasks" / "compiled"


# A cache on a full disk: every entry's file takes half its bytes, then ENOSPC (JAX writes an
# entry in place, with LRUCache.put), for three programs.
FULL = textwrap.dedent("""
    import errno, json, sys
    import jax, jax.numpy as jnp
    from jax._src import lru_cache
    from rare_tasks.core import compilation_cache
    def put(self, key, value):
      with open(self.path / f"{key}-cache", "wb") as f:
        f.write(value[:len(value) // 2])
      raise OSError(errno.ENOSPC, "No space left on device")
    lru_cache.LRUCache.put = put
    compilation_cache.enable(sys.argv[1])
    x = jnp.ones((4, 4))
    outs = [float(jax.jit(f)(x)[0, 0]) for f in (jnp.sin, jnp.cos, lambda a: a @ a)]
    print(json.dumps(outs))
""")


def test_a_full_cache_is_one_line_and_the_run_goes_on_without_it(tmp_path):
  cache = tmp_path / "cache"
  proc = subprocess.run([sys.executable, "-c", FULL, str(cache)], cwd=ROOT, capture_output=True,
                        text=True, check=True)
  assert json.loads(proc.stdout.strip().splitlines()[-1])[2] == 4.0
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert f"compilation cache {cache}: no room for more programs" in lines[0]
  assert "compiling without the cache for the rest of this run" in lines[0]
  assert list(cache.iterdir()) == []  # the half-written entry is gone, none written after it
  # Space freed: the next runs write the cache and read it back.
  assert _run(cache, "on")["hits"] == 0 and any(cache.iterdir())
  assert _run(cache, "on")["hits"] >= 1
