"""Benchmarks run by ``basketagent bench``: each prints a ratio against a raw baseline measured
in the same run. They live in the package (not a top-level folder) so an installed Pi can run them.
"""
