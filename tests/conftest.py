"""8 simulated CPU devices for every test, and one compilation cache for the whole session, set
before JAX initialises its backend.

Many tests compile the same small programs (the same tiny grid run on 8 devices, resumed, and
re-reported); JAX's persistent compilation cache, in a directory of this session only (inherited
by the command-line tests' processes), compiles each once. A cached program is the same
executable, so results do not change.
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="rare_tasks_tests_jax_cache_")
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import chex  # noqa: E402

chex.set_n_cpu_devices(8)
