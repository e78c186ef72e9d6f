"""The language-model track's built-in background language: a sparse Zipfian order-2 Markov
source, generated on the device from (seed, step), whose entropy rate is known exactly.

Token 0 is EOS (end of document); the ordinary symbols are 1..num_symbols (ids above
num_symbols are reserved for injected tasks and never emitted). The context of the next token is
the last two tokens (a, b), EOS included, mapped into one of num_states states by
`context_state` (the previous token's state, shifted by one of `context_classes` classes of the
token before it). State s emits EOS with probability eos_probability, otherwise one of its
`successors` symbols (drawn once, without replacement, with Zipfian weights rank^-zipf_exponent
over a seeded permutation of the symbols), the j-th with probability proportional to j^-a_s,
a_s ~ U[0.5, 2]. The chain over pairs is irreducible on the pairs reachable from (EOS, EOS) and
aperiodic ((EOS, EOS) -> (EOS, EOS)); its stationary distribution is solved on the host in
float64, and with it the entropy rate and the best achievable loss of a row.

A row has seq_len + 1 tokens: its first pair is drawn from the stationary pair distribution,
the rest from the chain, so every row is a stationary stretch of the source (documents cross row
boundaries, as packed text does). Training batch k uses the key
fold_in(fold_in(key(seed), TRAIN_STREAM), k) and one jax.random.bits draw of shape (batch,
seq_len), so it depends only on (seed, k), not on how steps are grouped or rows are sharded.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from rare_tasks.core.config import check, is_int, is_real

EOS_ID = 0
# Fold-in constants of the training and validation streams of a seed.
TRAIN_STREAM = 0x7472616E
VALID_STREAM = 0x76616C69
# The host keeps (num_symbols + 1)^2 tables of the pairs; the build's time and memory grow with
# the reachable pairs (describe()["reachable_pairs"]): about a second for 2e5 of them.
MAX_SYMBOLS = 4095
MAX_STATES = 1 << 24
# Power iteration: stop when an update moves the distribution less than TOLERANCE (total
# variation), refuse after MAX_ITERATIONS.
TOLERANCE = 1e-12
MAX_ITERATIONS = 20_000
_GUMBEL_CHUNK = 1 << 22
_MIX = (0x9E3779B1, 0x85EBCA6B, 0xC2B2AE35, 0x27D4EB2F, 0x165667B1)


def _mix(xp: Any, x: Any, salt: int) -> Any:
  """A uint32 hash of the uint32 array x (multiplications by odd constants and xor-shifts)."""
  u32 = xp.uint32
  x = (x * u32(_MIX[0])) ^ u32(salt % (1 << 32))
  x = (x ^ (x >> u32(15))) * u32(_MIX[1])
  x = (x ^ (x >> u32(13))) * u32(_MIX[2])
  return x ^ (x >> u32(16))


def context_state(xp: Any, a: Any, b: Any, seed: int, num_states: int,
                  context_classes: int) -> Any:
  """The state in [0, num_states) of the context (a, b), for xp = numpy or jax.numpy.

  state = (h1(b) + h2(class(a))) mod num_states, with class(a) = h3(a) mod context_classes: the
  previous token picks a state, and the token before it shifts that state by one of
  `context_classes` offsets. So a context has at most num_symbols x context_classes distinct
  states (context_classes = 1 is an order-1 source), and a model learns a state per (token,
  class) rather than a random function of every pair. a, b: integer arrays of one shape (token
  ids >= 0); returns int32 of that shape. Wrapping uint32 arithmetic salted by `seed`, so the
  host and the device agree bit for bit.
  """
  shape = xp.shape(a)
  u32 = xp.uint32
  a = xp.reshape(xp.asarray(a), (-1,)).astype(u32)
  b = xp.reshape(xp.asarray(b), (-1,)).astype(u32)
  salt = (seed * _MIX[1] + _MIX[4]) % (1 << 32)
  cls = _mix(xp, a, salt ^ _MIX[3]) % u32(context_classes)
  x = _mix(xp, b, salt) + _mix(xp, cls, salt ^ _MIX[2])
  return xp.reshape((x % u32(num_states)).astype(xp.int32), shape)


def _check_arguments(vocab_size: int, seq_len: int, seed: int, num_states: int, successors: int,
                     zipf_exponent: float, eos_probability: float, num_symbols: int) -> None:
  """ConfigError naming the first field of config.data that is not allowed."""
  check(is_int(vocab_size) and vocab_size >= 3, "data.vocab_size", vocab_size, "an integer >= 3")
  check(is_int(seq_len) and seq_len >= 4, "data.seq_len", seq_len, "an integer >= 4")
  check(is_int(seed) and 0 <= seed < 1 << 63, "data.seed", seed, "an integer in [0, 2^63)")
  high = min(vocab_size - 1, MAX_SYMBOLS)
  check(is_int(num_symbols) and 2 <= num_symbols <= high, "data.num_symbols", num_symbols,
        f"an integer in [2, {high}] (at most vocab_size - 1 and {MAX_SYMBOLS})")
  check(is_int(num_states) and 1 <= num_states <= MAX_STATES, "data.num_states", num_states,
        f"an integer in [1, {MAX_STATES}]")
  check(is_int(successors) and 1 <= successors <= num_symbols, "data.successors", successors,
        f"an integer in [1, num_symbols = {num_symbols}]")
  check(is_real(zipf_exponent) and zipf_exponent >= 0, "data.zipf_exponent", zipf_exponent,
        "a number >= 0")
  check(is_real(eos_probability) and 0 < eos_probability < 1, "data.eos_probability",
        eos_probability, "a number in (0, 1)")


def _state_tables(seed: int, num_states: int, successors: int, num_symbols: int,
                  zipf_exponent: float, eos_probability: float) -> tuple[np.ndarray, np.ndarray]:
  """(succ (num_states, successors) int32, probs (num_states, successors + 1) float64).

  probs[:, 0] is EOS, probs[:, j] the j-th successor succ[:, j - 1]. Successors are drawn
  without replacement with Zipfian weights by the Gumbel top-k trick, in draw order (so the
  likelier symbols tend to take the likelier slots).
  """
  rng = np.random.default_rng(seed)
  by_rank = rng.permutation(num_symbols).astype(np.int32) + 1
  exponents = rng.uniform(0.5, 2.0, num_states)
  log_w = -zipf_exponent * np.log(np.arange(1, num_symbols + 1))
  chunk = max(1, _GUMBEL_CHUNK // num_symbols)
  succ = np.empty((num_states, successors), np.int32)
  for lo in range(0, num_states, chunk):
    keys = log_w + rng.gumbel(size=(min(chunk, num_states - lo), num_symbols))
    top = np.argpartition(-keys, successors - 1, axis=1)[:, :successors]
    order = np.argsort(-np.take_along_axis(keys, top, 1), axis=1, kind="stable")
    succ[lo:lo + len(keys)] = by_rank[np.take_along_axis(top, order, 1)]
  q = np.arange(1, successors + 1, dtype=np.float64) ** -exponents[:, None]
  q /= q.sum(axis=1, keepdims=True)
  probs = np.concatenate([np.full((num_states, 1), eos_probability), (1 - eos_probability) * q],
                         axis=1)
  return succ, probs


def _next_pairs(pairs: np.ndarray, tokens: np.ndarray, seed: int, base: int,
                classes: int) -> np.ndarray:
  """(len(pairs), successors + 1): the pair a*base+b followed by each possible next token."""
  a, b = np.divmod(pairs, base)
  s = context_state(np, a, b, seed, tokens.shape[0], classes)
  return b[:, None] * base + tokens[s]


def _reachable_pairs(tokens: np.ndarray, seed: int, base: int, classes: int) -> np.ndarray:
  """(base * base,) bool: whether the pair a*base+b is reachable from (EOS, EOS)."""
  seen = np.zeros(base * base, bool)
  seen[0] = True
  frontier = np.zeros(1, np.int64)
  while frontier.size:
    nxt = _next_pairs(frontier, tokens, seed, base, classes).ravel()
    frontier = np.unique(nxt[~seen[nxt]])
    seen[frontier] = True
  return seen


def _stationary(seen: np.ndarray, tokens: np.ndarray, probs: np.ndarray, seed: int,
                base: int, classes: int) -> tuple[np.ndarray, np.ndarray, int]:
  """(pairs a*base+b sorted int64, pi over them float64, iterations): power iteration from the
  uniform distribution over the pairs `seen` marks."""
  pairs = np.flatnonzero(seen)
  position = np.cumsum(seen, dtype=np.int32) - 1
  dst = position[_next_pairs(pairs, tokens, seed, base, classes)].ravel().astype(np.intp)
  a, b = np.divmod(pairs, base)
  p = probs[context_state(np, a, b, seed, tokens.shape[0], classes)]
  pi = np.full(len(pairs), 1 / len(pairs))
  for it in range(1, MAX_ITERATIONS + 1):
    new = np.bincount(dst, weights=(pi[:, None] * p).ravel(), minlength=len(pairs))
    new /= new.sum()
    change = 0.5 * np.abs(new - pi).sum()
    pi = new
    if change < TOLERANCE:
      return pairs, pi, it
  raise RuntimeError(f"the Markov source's stationary distribution did not converge in "
                     f"{MAX_ITERATIONS} iterations (last change {change:.3g}); use more "
                     "successors or a larger eos_probability")


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ValueError(f"MarkovSource: {message}")


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
  """Shannon entropy in nats along `axis` (0 log 0 = 0)."""
  return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=axis)


def _cumulative(p: np.ndarray) -> np.ndarray:
  """float32 inverse-CDF table of float64 probabilities along the last axis (last entry 1)."""
  cum = np.cumsum(p, axis=-1).astype(np.float32)
  cum[..., -1] = 1.0
  return cum


def _thresholds(p: np.ndarray) -> np.ndarray:
  """(len(p) - 1,) uint32 inverse-CDF thresholds of a distribution for 32 random bits r: the
  outcome is #{i : thresholds[i] <= r}, outcome i has probability within 2^-32 of p[i]."""
  cum = np.floor(np.cumsum(p)[:-1] * 2.0**32)
  return np.clip(cum, 0, 2.0**32 - 1).astype(np.uint32)


def _rows(tables: dict[str, jax.Array], bits: jax.Array, seed: int, classes: int) -> jax.Array:
  """(rows, seq_len + 1) int32 from random uint32 bits (rows, seq_len), by inverse CDF: bits[:,
  0] draws the first pair (32-bit thresholds), the top 23 bits of bits[:, t] as a float32
  uniform in [0, 1) (as jax.random.uniform makes them) draw token t + 1."""
  first = jnp.searchsorted(tables["pair_thresholds"], bits[:, 0], side="right")
  u = (bits[:, 1:] >> 9).astype(jnp.float32) * jnp.float32(2.0**-23)
  a, b = tables["pair_first"][first], tables["pair_second"][first]
  num_states = tables["cum"].shape[0]

  def step(carry, u_t):
    a, b = carry
    s = context_state(jnp, a, b, seed, num_states, classes)
    j = jnp.sum(tables["cum"][s] <= u_t[:, None], axis=-1)
    succ = jnp.take_along_axis(tables["succ"][s], jnp.maximum(j - 1, 0)[:, None], axis=1)
    c = jnp.where(j == 0, EOS_ID, succ[:, 0]).astype(jnp.int32)
    return (b, c), c

  _, rest = jax.lax.scan(step, (a, b), u.T)
  return jnp.concatenate([a[:, None], b[:, None], rest.T], axis=1)


class MarkovSource:
  """The sparse Zipfian order-2 Markov source (module docstring), its exact entropies and its
  rows on the device.

  Host tables (numpy): succ (num_states, successors) int32; log_probs and cum_probs
  (num_states, successors + 1) float32, column 0 EOS and column j the successor succ[:, j - 1];
  pairs (reachable_pairs,) int64 a * vocab_size + b, sorted, with their stationary
  probabilities pair_probs float64 and pair_thresholds (reachable_pairs - 1,) uint32 (inverse
  CDF of 32 random bits).
  """

  eos_id: int = EOS_ID

  def __init__(self, *, vocab_size: int, seq_len: int, seed: int = 0, num_states: int = 2048,
               successors: int = 8, zipf_exponent: float = 1.0, eos_probability: float = 0.01,
               num_symbols: int | None = None, context_classes: int = 4):
    num_symbols = vocab_size - 1 if num_symbols is None and is_int(vocab_size) else num_symbols
    _check_arguments(vocab_size, seq_len, seed, num_states, successors, zipf_exponent,
                     eos_probability, num_symbols)
    check(is_int(context_classes) and context_classes >= 1, "data.context_classes",
          context_classes, "an integer >= 1")
    self.context_classes = context_classes
    self.vocab_size, self.seq_len, self.seed = vocab_size, seq_len, seed
    self.num_states, self.successors, self.num_symbols = num_states, successors, num_symbols
    self.zipf_exponent, self.eos_probability = float(zipf_exponent), float(eos_probability)
    self.succ, self._probs = _state_tables(seed, num_states, successors, num_symbols,
                                           self.zipf_exponent, self.eos_probability)
    self._tokens = np.concatenate([np.full((num_states, 1), EOS_ID, np.int32), self.succ], 1)
    self.log_probs = np.log(self._probs).astype(np.float32)
    self.cum_probs = _cumulative(self._probs)
    base = num_symbols + 1
    pairs, self.pair_probs, self.stationary_iterations = _stationary(
        _reachable_pairs(self._tokens, seed, base, context_classes), self._tokens, self._probs,
        seed, base, context_classes)
    self._first, self._second = (x.astype(np.int32) for x in np.divmod(pairs, base))
    self.pairs = self._first.astype(np.int64) * vocab_size + self._second
    self.pair_thresholds = _thresholds(self.pair_probs)
    self._marginal = np.bincount(self._first, weights=self.pair_probs, minlength=vocab_size)
    self.state_entropy = _entropy(self._probs)
    states = context_state(np, self._first, self._second, seed, num_states, context_classes)
    self.entropy_rate = float(self.pair_probs @ self.state_entropy[states])
    self.first_token_entropy = float(_entropy(self.pair_probs) - _entropy(self._marginal))
    self._device: dict[NamedSharding | None, dict[str, jax.Array]] = {}
    self._fns: dict[tuple, Any] = {}

  def loss_floor(self, seq_len: int | None = None) -> float:
    """The best achievable mean next-token cross-entropy (nats) over a row of seq_len + 1
    tokens (default self.seq_len) whose first pair is stationary, predicting tokens 1..seq_len
    from all earlier tokens of the row: (H(X1 | X0) + (seq_len - 1) * entropy_rate) / seq_len.
    Token 1 sees one token of context (first_token_entropy); every later token sees its full
    order-2 context (entropy_rate)."""
    n = self.seq_len if seq_len is None else seq_len
    return (self.first_token_entropy + (n - 1) * self.entropy_rate) / n

  def state(self, a: Any, b: Any) -> np.ndarray:
    """The states of contexts (a, b) (numpy arrays of one shape), int32 of that shape."""
    return context_state(np, np.asarray(a), np.asarray(b), self.seed, self.num_states,
                         self.context_classes)

  def log_prob_table(self) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, log_probs), both (num_states, successors + 1): state s emits tokens[s, j] with
    log-probability log_probs[s, j] (float64, exact); column 0 is EOS; every other token has
    probability 0."""
    return self._tokens.copy(), np.log(self._probs)

  def next_token_log_probs(self, a: Any, b: Any) -> np.ndarray:
    """(..., vocab_size) float64 log P(next | context (a, b)), -inf where impossible."""
    s = self.state(a, b)
    out = np.full(s.shape + (self.vocab_size,), -np.inf)
    np.put_along_axis(out, self._tokens[s], np.log(self._probs[s]), axis=-1)
    return out

  def surprisal(self, tokens: Any) -> np.ndarray:
    """(..., L) float64 -log p of each token of rows (..., L), L >= 2, under the stationary
    source: position 0 -log P(X0), position 1 -log P(X1 | X0), position t >= 2
    -log P(X_t | X_{t-2}, X_{t-1}); inf for a token the source cannot emit there."""
    x = np.asarray(tokens, np.int64)
    if x.ndim < 1 or x.shape[-1] < 2 or x.min() < 0 or x.max() >= self.vocab_size:
      raise ValueError(f"surprisal: rows of >= 2 token ids in [0, {self.vocab_size}) expected")
    with np.errstate(divide="ignore"):
      out = np.empty(x.shape)
      m = self._marginal[x[..., 0]]
      out[..., 0] = -np.log(m)
      key = x[..., 0] * self.vocab_size + x[..., 1]
      i = np.minimum(np.searchsorted(self.pairs, key), len(self.pairs) - 1)
      joint = np.where(self.pairs[i] == key, self.pair_probs[i], 0.0)
      out[..., 1] = np.where(joint > 0, np.log(m) - np.log(joint), np.inf)
      s = self.state(x[..., :-2], x[..., 1:-1])
      hit = self._tokens[s] == x[..., 2:, None]
      out[..., 2:] = -np.log(np.sum(np.where(hit, self._probs[s], 0.0), axis=-1))
    return out

  def _tables(self, sharding: jax.sharding.Sharding | None) -> dict[str, jax.Array]:
    """The device tables generation reads, put once per place: replicated over the mesh of a
    NamedSharding, else on the default device (uncommitted, so jit may move them)."""
    place = (NamedSharding(sharding.mesh, PartitionSpec())
             if isinstance(sharding, NamedSharding) else None)
    if place not in self._device:
      tables = dict(succ=self.succ, cum=self.cum_probs, pair_first=self._first,
                    pair_second=self._second, pair_thresholds=self.pair_thresholds)
      self._device[place] = {k: jnp.asarray(v) if place is None else jax.device_put(v, place)
                             for k, v in tables.items()}
    return self._device[place]

  def _train_fn(self, num_steps: int, batch_size: int, sharding: jax.sharding.Sharding | None):
    """The jitted (tables, first_step uint32) -> (num_steps, batch_size, seq_len + 1)."""
    def batches(tables, first_step):
      base = jax.random.fold_in(jax.random.key(self.seed), TRAIN_STREAM)
      steps = first_step + jnp.arange(num_steps, dtype=jnp.uint32)
      keys = jax.vmap(lambda k: jax.random.fold_in(base, k))(steps)
      bits = jax.vmap(lambda k: jax.random.bits(k, (batch_size, self.seq_len), jnp.uint32))(keys)
      rows = _rows(tables, bits.reshape(num_steps * batch_size, self.seq_len), self.seed,
                   self.context_classes)
      return rows.reshape(num_steps, batch_size, self.seq_len + 1)
    return jax.jit(batches, out_shardings=sharding)

  def _validation_fn(self, num_rows: int, sharding: jax.sharding.Sharding | None):
    """The jitted tables -> (num_rows, seq_len + 1); row i from its own key, so a longer set
    extends a shorter one."""
    def rows(tables):
      base = jax.random.fold_in(jax.random.key(self.seed), VALID_STREAM)
      keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(num_rows,
                                                                        dtype=jnp.uint32))
      bits = jax.vmap(lambda k: jax.random.bits(k, (self.seq_len,), jnp.uint32))(keys)
      return _rows(tables, bits, self.seed, self.context_classes)
    return jax.jit(rows, out_shardings=sharding)

  def train_batches(self, first_step: int, num_steps: int, batch_size: int,
                    sharding: jax.sharding.Sharding | None = None) -> jax.Array:
    """Training batches first_step .. first_step + num_steps - 1, (num_steps, batch_size,
    seq_len + 1) int32 on the device (placed by `sharding` when given). Batch k depends only on
    (seed, k). One compiled program per (num_steps, batch_size, sharding); first_step is traced.
    """
    _require(is_int(num_steps) and num_steps >= 1 and is_int(batch_size) and batch_size >= 1,
             f"num_steps = {num_steps!r}, batch_size = {batch_size!r}: integers >= 1 expected")
    _require(is_int(first_step) and 0 <= first_step and first_step + num_steps <= 1 << 32,
             f"first_step = {first_step!r}: an integer >= 0, first_step + num_steps <= 2^32")
    key = ("train", num_steps, batch_size, sharding)
    if key not in self._fns:
      self._fns[key] = self._train_fn(num_steps, batch_size, sharding)
    return self._fns[key](self._tables(sharding), np.uint32(first_step))

  def validation(self, num_rows: int, sharding: jax.sharding.Sharding | None = None) -> jax.Array:
    """The held-out rows (num_rows, seq_len + 1) int32 (their own stream of the seed), the same
    on every call; validation(n)[:m] == validation(m)."""
    _require(is_int(num_rows) and num_rows >= 1, f"num_rows = {num_rows!r}: an integer >= 1")
    key = ("validation", num_rows, sharding)
    if key not in self._fns:
      self._fns[key] = self._validation_fn(num_rows, sharding)
    return self._fns[key](self._tables(sharding))

  def table_bytes(self) -> int:
    """Bytes of the tables (host float32/int32 state tables and the pair tables)."""
    arrays = (self.succ, self.log_probs, self.cum_probs, self._first, self._second,
              self.pair_thresholds)
    return int(sum(x.nbytes for x in arrays))

  def describe(self) -> dict[str, float | int]:
    """Numbers for the summary and config.json: the source's fields and its exact entropies
    (nats per token)."""
    return dict(
        vocab_size=self.vocab_size, num_symbols=self.num_symbols, seq_len=self.seq_len,
        seed=self.seed, num_states=self.num_states, context_classes=self.context_classes,
        successors=self.successors,
        zipf_exponent=self.zipf_exponent, eos_probability=self.eos_probability,
        entropy_rate=self.entropy_rate, first_token_entropy=self.first_token_entropy,
        loss_floor=self.loss_floor(), unigram_entropy=float(_entropy(self._marginal)),
        reachable_pairs=len(self.pairs), table_bytes=self.table_bytes(),
        stationary_iterations=self.stationary_iterations, bits_per_token=self.entropy_rate
        / math.log(2))
