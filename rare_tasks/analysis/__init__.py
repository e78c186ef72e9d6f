"""Pure measurements that both tracks use (numpy and jax functions of arrays; no config, no
files): allocation, interference, retention, learning order, scaling fits, frequency search."""
