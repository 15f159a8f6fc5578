"""The ``ci-build`` command line: parsing, calling the core, mapping errors to exit codes."""
