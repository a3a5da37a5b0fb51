"""fewops: compress neural networks so inference needs far fewer arithmetic operations."""

__version__ = "0.1.0"
