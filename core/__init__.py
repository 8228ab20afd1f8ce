"""What the hub (``signal_hub``) and the broker workers (``broker_workers``) share: the Redis key
layout and the Lua scripts over it, the records a signal leaves, the broker catalogue, settings,
logging, credentials encryption, the Redis client and the drain dispatch.

It imports neither side, and neither side imports the other (``tests/test_layout.py``).
"""
