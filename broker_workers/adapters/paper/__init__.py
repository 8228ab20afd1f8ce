"""The paper broker: virtual balances and the seeded price feed, so anyone can copy risk-free.

``broker.py`` is the adapter, ``ledger.py`` its ledger in Redis (``buy.lua``, ``settle.lua``),
``settings.py`` its settings.
"""
