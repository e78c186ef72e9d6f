"""rare_tasks: why larger models learn rare tasks that smaller ones never learn."""

from setuptools import find_packages, setup

setup(
    name="rare_tasks",
    version="0.1.0",
    description="JAX/Flax framework for the science of rare-task learning across model sizes.",
    python_requires=">=3.11",
    packages=find_packages(include=["rare_tasks", "rare_tasks.*"]),
    install_requires=[
        "jax>=0.10",
        "flax>=0.12",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12",
        "chex>=0.1.92",
        "ml-collections>=1.1",
        "tensorflow-datasets>=4.9.10",
        "array-record>=0.8",
        # Real text: seeded random-access shuffles (grain), tokenizer.json files and byte-level
        # BPE (tokenizers), Hugging Face checkpoints without torch (safetensors), .zst shards.
        "grain>=0.2.18",
        "tokenizers>=0.22",
        "safetensors>=0.5",
        "zstandard>=0.23",
        "absl-py>=2.5",
        "numpy>=2.0",
        "matplotlib>=3.9",
        # Caps numpy's BLAS threads in host-side measurements, which otherwise fight XLA for cores.
        "threadpoolctl>=3.1",
    ],
    extras_require={"test": ["pytest>=8", "ruff>=0.6"]},
)
