"""zipfrmt: spectral flattening of quantized embeddings — Zipf's law, random-matrix theory and low-bit quantization."""

__version__ = "0.2.0"
