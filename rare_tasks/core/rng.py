"""The random-number generators a run may draw with, and their keys.

A run records its generator in its config: the streams of numbers differ between generators, so
a run resumes and re-reports only with the one it was made with. Both generators offered give a
key the same numbers under `jax.vmap` as alone, so an ensemble member draws what it would draw
trained by itself.

philox4x32 draws its numbers with a high-half multiply (`lax.mulhi`). jaxlib 0.10 lowers that to
an operation its sharded compilation cannot convert ("Unable to convert MHLO to StableHLO"), so
every program that draws philox numbers over a mesh of several devices fails to compile. JAX
keeps its exact older lowering (widen, multiply, shift) for older jaxlibs; importing this module
registers it for every platform. It computes the same bits, as fast on CPU.
"""

from __future__ import annotations

import jax
from jax._src.interpreters import mlir
from jax._src.lax import lax as _lax

# "philox4x32", the default of new runs, draws normals about twice as fast as "threefry2x32" on
# CPU. JAX's "rbg" is not offered: under vmap it draws other numbers than one key at a time.
GENERATORS = ("philox4x32", "threefry2x32")

mlir.register_lowering(_lax.mulhi_p, mlir.lower_fun(_lax._mulhi_impl, multiple_results=False))


def key(seed: int | jax.Array, generator: str) -> jax.Array:
  """A typed PRNG key of `generator` (one of GENERATORS) from an integer seed."""
  if generator not in GENERATORS:
    raise ValueError(f"generator {generator!r} is not one of {GENERATORS}")
  return jax.random.key(seed, impl=generator)
