"""A loopback Deriv (Binary.com) WebSocket API v3 simulator, for tests, benchmarks and the demo.

It speaks the real message shapes and error codes (authorize, proposal, buy, multi-account buy,
proposal_open_contract, profit_table, portfolio, statement, ...), settles contracts on the shared
seeded price feed, and injects latency and faults on demand through an HTTP control API on the
same port. See :mod:`broker_workers.deriv_sim.app`.
"""
