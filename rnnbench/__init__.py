"""rnnbench: scan-based recurrent networks in JAX/Flax NNX, benchmarked on speech."""

__version__ = "0.1.0"
