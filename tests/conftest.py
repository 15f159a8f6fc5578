"""Test configuration: the fixture layers for the ci/ test bed and the ci/kube cluster."""

pytest_plugins = ["tests.testbed", "tests.kubebed"]
