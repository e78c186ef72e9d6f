"""Tests of the synthetic background language: its exact entropies against an independent dense
computation, its rows against those entropies and its stationary distribution, and batches that
are pure functions of (seed, step) however they are grouped or sharded."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rare_tasks.core.config import ConfigError
from rare_tasks.lm.data.markov import MarkovSource, context_state

TINY = dict(vocab_size=6, seq_len=8, num_states=5, successors=2, eos_probability=0.1)
SMALL = dict(vocab_size=8, seq_len=6, num_states=6, successors=3, eos_probability=0.2)


@pytest.fixture(scope="module")
def default() -> MarkovSource:
  return MarkovSource(vocab_size=512, seq_len=64, seed=3)


@pytest.fixture(scope="module")
def small() -> MarkovSource:
  return MarkovSource(**SMALL)


def _dense_chain(source: MarkovSource) -> tuple[np.ndarray, np.ndarray]:
  """(T (V*V, V*V) pair transition matrix, P (V*V, V) next-token probabilities), built pair by
  pair from next_token_log_probs."""
  v = source.vocab_size
  a, b = np.divmod(np.arange(v * v), v)
  p = np.exp(source.next_token_log_probs(a, b))
  t = np.zeros((v * v, v * v))
  for i in range(v * v):
    t[i, b[i] * v + np.arange(v)] = p[i]
  return t, p


def _entropy(p: np.ndarray) -> np.ndarray:
  return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=-1)


@pytest.mark.parametrize("kwargs", [TINY, dict(TINY, seed=5, zipf_exponent=0.0),
                                    dict(vocab_size=12, seq_len=8, num_states=9, successors=3,
                                         num_symbols=7, eos_probability=0.05)])
def test_exact_entropies_match_a_dense_eigenvector_computation(kwargs):
  source = MarkovSource(**kwargs)
  t, p = _dense_chain(source)
  np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-12)
  values, vectors = np.linalg.eig(t.T)
  k = np.argmin(np.abs(values - 1))
  assert np.sort(np.abs(values - 1))[1] > 1e-6  # eigenvalue 1 is simple: one stationary law
  pi = np.real(vectors[:, k])
  pi /= pi.sum()
  v = source.vocab_size
  dense = np.zeros(v * v)
  dense[source.pairs] = source.pair_probs
  np.testing.assert_allclose(dense, pi, atol=1e-10)
  rate = float(pi @ _entropy(p))
  marginal = pi.reshape(v, v).sum(axis=1)
  first = float(_entropy(pi) - _entropy(marginal))
  assert abs(source.entropy_rate - rate) < 1e-9
  assert abs(source.first_token_entropy - first) < 1e-9
  assert abs(source.loss_floor() - (first + (source.seq_len - 1) * rate) / source.seq_len) < 1e-9
  assert source.describe()["reachable_pairs"] == np.count_nonzero(pi > 1e-13)


def test_state_tables_follow_the_spec(default):
  tokens, log_probs = default.log_prob_table()
  chex.assert_shape([tokens, log_probs], (2048, 9))
  np.testing.assert_allclose(np.exp(log_probs).sum(axis=1), 1, atol=1e-12)
  np.testing.assert_allclose(np.exp(log_probs[:, 0]), 0.01, rtol=1e-12)
  assert (tokens[:, 0] == 0).all() and (tokens[:, 1:] == default.succ).all()
  assert ((default.succ >= 1) & (default.succ <= 511)).all()
  assert all(len(set(row)) == 8 for row in default.succ)
  # q_j proportional to j^-a_s: log q_j - log q_1 = -a_s log j, with a_s in [0.5, 2].
  slopes = (log_probs[:, 2:] - log_probs[:, 1:2]) / np.log(np.arange(2, 9))
  np.testing.assert_allclose(slopes, np.broadcast_to(slopes[:, :1], slopes.shape), atol=1e-10)
  assert slopes.min() >= -2 and slopes.max() <= -0.5 and np.ptp(slopes[:, 0]) > 1
  np.testing.assert_allclose(np.exp(default.log_probs), np.exp(log_probs), rtol=1e-6)
  assert default.cum_probs[:, -1].tolist() == [1.0] * 2048


def test_zipf_exponent_concentrates_the_unigram_distribution():
  def top_mass(zipf):
    source = MarkovSource(vocab_size=256, seq_len=8, num_states=256, successors=4,
                          zipf_exponent=zipf)
    m = np.bincount(source.pairs // 256, weights=source.pair_probs, minlength=256)[1:]
    return np.sort(m)[::-1][:12].sum() / m.sum()
  flat, zipf = top_mass(0.0), top_mass(1.5)
  assert zipf > 0.5 > 0.2 > flat


def test_the_context_hash_agrees_on_host_and_device():
  rng = np.random.default_rng(0)
  a, b = rng.integers(0, 1 << 17, (2, 5000)).astype(np.int32)
  for seed, n, k in [(0, 2048, 4), (7, 5, 1), (2**40 + 1, 1000003, 64)]:
    host = context_state(np, a, b, seed, n, k)
    device = jax.jit(lambda a, b, s=seed, n=n, k=k: context_state(jnp, a, b, s, n, k))(a, b)
    np.testing.assert_array_equal(host, np.asarray(device))
    assert host.dtype == np.int32 and 0 <= host.min() and host.max() < n
  counts = np.bincount(context_state(np, a, b, 0, 16, 4), minlength=16)
  assert counts.min() > 0.8 * 5000 / 16 and counts.max() < 1.2 * 5000 / 16
  assert (context_state(np, a, b, 0, 2048, 4) != context_state(np, a, b, 1, 2048, 4)).mean() > 0.99


def test_the_token_two_back_acts_only_through_its_class():
  b = np.arange(1, 300)
  states = {int(a): context_state(np, np.full_like(b, a), b, 3, 4096, 3) for a in range(1, 60)}
  distinct = {tuple(v) for v in states.values()}
  assert len(distinct) == 3  # three classes of a: three maps from b to a state
  one = {tuple(context_state(np, np.full_like(b, a), b, 3, 4096, 1)) for a in range(1, 60)}
  assert len(one) == 1  # one class: an order-1 source


def test_rows_have_the_exact_entropy_rate_and_first_token_entropy(default):
  rows = np.concatenate([np.asarray(default.train_batches(0, 4, 64)).reshape(-1, 65),
                         np.asarray(default.validation(768))])
  s = default.surprisal(rows)
  assert np.isfinite(s).all()  # every token is one the chain can emit in its context
  later = s[:, 2:].mean(axis=1)
  se = later.std() / np.sqrt(len(later))
  assert abs(later.mean() - default.entropy_rate) < 4 * se < 0.05
  first = s[:, 1]
  se1 = first.std() / np.sqrt(len(first))
  assert abs(first.mean() - default.first_token_entropy) < 4 * se1 < 0.3
  whole = s[:, 1:].mean(axis=1)
  assert abs(whole.mean() - default.loss_floor()) < 4 * whole.std() / np.sqrt(len(whole))
  assert default.first_token_entropy > default.entropy_rate + 0.5


def test_first_pairs_follow_the_stationary_distribution(small):
  rows = np.asarray(small.train_batches(0, 4, 2048)).reshape(-1, small.seq_len + 1)
  n = len(rows)
  key = rows[:, 0] * small.vocab_size + rows[:, 1]
  i = np.searchsorted(small.pairs, key)
  assert (small.pairs[np.minimum(i, len(small.pairs) - 1)] == key).all()  # all reachable
  observed = np.bincount(i, minlength=len(small.pairs))
  expected = n * small.pair_probs
  big = expected >= 5
  assert expected[big].sum() > 0.99 * n
  chi2 = np.sum((observed[big] - expected[big]) ** 2 / expected[big])
  df = big.sum() - 1
  assert chi2 < df + 5 * np.sqrt(2 * df)
  # The test has power: the pairs one step later (also stationary) pass, uniform ones do not.
  uniform = np.full(len(small.pairs), n / len(small.pairs))
  assert np.sum((uniform[big] - expected[big]) ** 2 / expected[big]) > 10 * (df + 5 * np.sqrt(
      2 * df))
  later = np.searchsorted(small.pairs, rows[:, 3] * small.vocab_size + rows[:, 4])
  later_counts = np.bincount(later, minlength=len(small.pairs))
  assert np.sum((later_counts[big] - expected[big]) ** 2 / expected[big]) < df + 5 * np.sqrt(
      2 * df)


def test_a_batch_is_a_pure_function_of_seed_and_step(small):
  four = np.asarray(small.train_batches(0, 4, 16))
  chex.assert_shape(four, (4, 16, small.seq_len + 1))
  assert four.dtype == np.int32
  np.testing.assert_array_equal(four[2], np.asarray(small.train_batches(2, 1, 16))[0])
  np.testing.assert_array_equal(four, np.asarray(small.train_batches(0, 4, 16)))
  assert not (four[0] == four[1]).all()
  other = MarkovSource(**dict(SMALL, seed=1))
  assert (np.asarray(other.train_batches(0, 4, 16)) != four).mean() > 0.3
  valid = np.asarray(small.validation(16))
  np.testing.assert_array_equal(valid, np.asarray(small.validation(16)))
  np.testing.assert_array_equal(valid[:8], np.asarray(small.validation(8)))
  assert (valid != four[0]).mean() > 0.3 and (valid != four[1]).mean() > 0.3
  # first_step is traced: new steps reuse one compiled program.
  for first in (5, 1000, 2**32 - 4):
    small.train_batches(first, 4, 16)
  fn = small._fns[("train", 4, 16, None)]
  assert fn._cache_size() == 1


def test_sharded_batches_equal_unsharded_ones(small):
  chex.assert_equal(jax.device_count(), 8)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  rows = NamedSharding(mesh, PartitionSpec(None, "data"))
  sharded = small.train_batches(3, 2, 16, sharding=rows)
  assert sharded.sharding.is_equivalent_to(rows, 3)
  assert len(sharded.addressable_shards) == 8
  np.testing.assert_array_equal(np.asarray(sharded), np.asarray(small.train_batches(3, 2, 16)))
  valid_rows = NamedSharding(mesh, PartitionSpec("data"))
  valid = small.validation(16, sharding=valid_rows)
  assert valid.sharding.is_equivalent_to(valid_rows, 2)
  np.testing.assert_array_equal(np.asarray(valid), np.asarray(small.validation(16)))


def test_tokens_in_range_eos_at_its_rate_and_no_reserved_ids():
  source = MarkovSource(vocab_size=32, seq_len=64, num_states=64, successors=4, num_symbols=20,
                        eos_probability=0.05)
  rows = np.asarray(source.train_batches(0, 2, 128)).reshape(-1, 65)
  assert rows.min() >= 0 and rows.max() <= 20
  assert len(np.unique(rows)) > 10
  later = rows[:, 2:]  # every state ends a document with probability eos_probability
  n = later.size
  assert abs((later == 0).mean() - 0.05) < 4 * np.sqrt(0.05 * 0.95 / n)
  assert np.isfinite(source.surprisal(rows)).all()
  assert np.isinf(source.next_token_log_probs(np.array([3]), np.array([4]))[0, 21:]).all()
  bad = rows[:2].copy()
  bad[:, 5] = 25
  assert np.isinf(source.surprisal(bad)[:, 5]).all()


def test_default_eos_rate(default):
  rows = np.asarray(default.train_batches(0, 4, 64))[..., 2:]
  assert abs((rows == 0).mean() - 0.01) < 4 * np.sqrt(0.01 * 0.99 / rows.size)


@pytest.mark.parametrize("change, field", [
    (dict(vocab_size=2), "data.vocab_size"), (dict(vocab_size=8.0), "data.vocab_size"),
    (dict(seq_len=3), "data.seq_len"), (dict(seed=-1), "data.seed"),
    (dict(num_states=0), "data.num_states"), (dict(successors=0), "data.successors"),
    (dict(successors=8), "data.successors"), (dict(num_symbols=5, successors=6),
                                              "data.successors"),
    (dict(zipf_exponent=-0.5), "data.zipf_exponent"),
    (dict(zipf_exponent=float("nan")), "data.zipf_exponent"),
    (dict(eos_probability=0.0), "data.eos_probability"),
    (dict(eos_probability=1.0), "data.eos_probability"),
    (dict(num_symbols=8), "data.num_symbols"), (dict(num_symbols=1), "data.num_symbols"),
    (dict(vocab_size=5000), "data.num_symbols"),
])
def test_each_bad_argument_names_its_field(change, field):
  with pytest.raises(ConfigError, match=rf"^config\.{field} = "):
    MarkovSource(**dict(SMALL, **change))


def test_bad_batch_requests_are_refused(small):
  with pytest.raises(ValueError, match="first_step"):
    small.train_batches(-1, 1, 4)
  with pytest.raises(ValueError, match="first_step"):
    small.train_batches(2**32 - 1, 2, 4)
  with pytest.raises(ValueError, match="batch_size"):
    small.train_batches(0, 1, 0)
  with pytest.raises(ValueError, match="num_rows"):
    small.validation(0)


def test_loss_floor_and_describe(default):
  h, h1 = default.entropy_rate, default.first_token_entropy
  assert default.loss_floor() == pytest.approx((h1 + 63 * h) / 64, rel=1e-12)
  assert default.loss_floor(1) == pytest.approx(h1, rel=1e-12)
  assert default.loss_floor(10**9) == pytest.approx(h, rel=1e-6)
  d = default.describe()
  assert d["entropy_rate"] == h and d["loss_floor"] == default.loss_floor()
  assert d["first_token_entropy"] == h1 and d["num_states"] == 2048 and d["successors"] == 8
  assert d["reachable_pairs"] == len(default.pairs) > 10_000
  assert 0 < d["table_bytes"] < 8 * 2**20
  assert all(isinstance(v, (int, float)) for v in d.values())
  np.testing.assert_allclose(default.pair_probs.sum(), 1, atol=1e-12)
  assert h < d["unigram_entropy"] < np.log(511)
