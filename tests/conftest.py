"""8 simulated CPU devices for every test, set before JAX initialises its backend."""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=8"

import chex  # noqa: E402

chex.set_n_cpu_devices(8)
