"""Fixtures for the ci/ test bed (buildkitd, registries, dockerd). Filled in by the bed work."""
