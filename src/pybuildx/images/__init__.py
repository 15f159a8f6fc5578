"""Image results across nodes: registry client, index merge, exporter attributes, metadata."""

from pybuildx.images.merge import merge_index

__all__ = ["merge_index"]
