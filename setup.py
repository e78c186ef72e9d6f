"""rare_tasks: why larger models learn rare tasks that smaller ones never learn."""

from setuptools import find_packages, setup

setup(
    name="rare_tasks",
    version="0.1.0",
    description="JAX/Flax framework for the science of rare-task learning across model sizes.",
    url="https://github.com/rare-tasks/rare_tasks",
    python_requires=">=3.11",
    packages=find_packages(include=["rare_tasks", "rare_tasks.*"]),
    install_requires=[
        "jax>=0.10",
        "flax>=0.12",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12",
        "ml-collections>=1.1",
        "tensorflow-datasets>=4.9.10",
        # TFDS's array_record reader and writer (never imported here; tfds needs it only on Linux).
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
        # bfloat16 arrays of Hugging Face checkpoints (numpy has no bfloat16).
        "ml-dtypes>=0.5",
        # TensorBoard event files of a run's metrics, without TensorFlow.
        "tensorboardX>=2.6",
    ],
    extras_require={
        # Accelerators: jax's own builds, pinned by jax to its version (same range as above).
        "cuda": ["jax[cuda12]>=0.10"],  # NVIDIA GPU, CUDA 12 driver
        "cuda13": ["jax[cuda13]>=0.10"],  # NVIDIA GPU, CUDA 13 driver
        "tpu": ["jax[tpu]>=0.10"],  # Cloud TPU VM
        # The tests: runner, linter, test-only imports, and the notebook test's kernel.
        "test": ["pytest>=8", "ruff>=0.6", "chex>=0.1.92", "packaging>=24", "nbclient>=0.10",
                 "nbformat>=5.10", "ipykernel>=6.29"],
    },
)
