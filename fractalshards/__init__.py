"""fractalshards: FractalDB-style formula-driven datasets as deterministic WebDataset shards."""

__version__ = "0.1.0"

__all__ = ["__version__"]
