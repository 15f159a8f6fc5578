"""pybuildx: bootstrap BuildKit builders and run container builds from CI, in pure Python."""

__version__ = "0.1.0"
__all__ = ["__version__"]
