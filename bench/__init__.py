"""Benchmarks: run by hand, printing figures; never timing assertions in the test suite."""
