"""Fixtures for the ci/kube cluster. Filled in by the Kubernetes bed work."""
