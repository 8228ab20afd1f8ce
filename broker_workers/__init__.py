"""Broker worker pools: RQ drain jobs, the process and send phases, broker adapters."""
