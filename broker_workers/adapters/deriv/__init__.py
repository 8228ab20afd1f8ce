"""Deriv (formerly Binary.com) through its WebSocket API v3.

``broker.py`` is the adapter; ``client.py`` its connections (the session pool, each session's rate
budget, the socket that matches replies to requests); ``execution.py`` how it buys;
``reconciliation.py`` how it finds a purchase whose answer was lost; ``errors.py`` Deriv's error
codes as our error tree; ``settings.py`` its settings and tunables.

How it works, and why:

- A pool of ``DERIV_CONNECTIONS`` persistent connections per worker process (a session each),
  opened and authorized by ``open``, each kept alive with ``ping`` and re-opened by its own
  supervisor task with exponential backoff and jitter, so no signal waits for a login. Replies
  are matched to requests by ``req_id``, never by order. Each batch goes out on the session that
  can send soonest (connected, most budget left, fewest requests in flight), so the batches of one
  signal spread over every connection and every connection's rate budget.
- Orders sharing (signal, asset, direction, expiry, stake, currency) go out together as one
  ``buy_contract_for_multiple_accounts`` (at most ``max_orders_per_request`` tokens, and a
  passthrough within Deriv's 3500 bytes), each token answered by a receipt or an error. A lone
  order on the account a session is authorized as is a single ``buy`` with ``parameters``.
  Deriv's ``buy`` acts only on an authorized account, and one session authorizes one user's
  accounts, so a lone order of any other subscriber is a one-token multi-account buy: same
  message, same per-token answer.
- Reads about one account (outcome, reconciliation, balance) use a session when it is that
  account, and otherwise a short-lived connection authorized with that account's token.
- A buy that was sent and not answered (timeout, dropped socket) is reconciled with the broker
  before anything is retried, and retried only while its deadline allows. Its connection is
  closed first, and buys for the same accounts still in flight on other sessions are waited for,
  so that each answered purchase is claimed by its own order before we look. Deriv stores no
  passthrough with a contract (its profit_table, portfolio and statement rows have no such field),
  so the purchase is recognised in the account's ``statement`` by its details: contract type,
  symbol, duration, stake, and a purchase time inside the order's window.
- Rate limits: Deriv budgets calls per connection, in groups; ``buy`` shares one with
  ``proposal``, ``proposal_open_contract`` and ``sell`` (documented: 360 a minute, 14,400 an
  hour), and a multi-account buy of up to 100 tokens is one call. Each new connection asks
  ``website_status`` once and keeps to 90 % of its group's limits in local token buckets per
  minute and per hour (the defaults, the same share of the documented figures, when the call
  fails), so the worker's budget grows with its pool. A ``RateLimit`` answer is retried with
  backoff until the deadline, and an order whose turn would come after its deadline fails
  ``rate_limited``.

Tokens are never logged and never put in an exception message.
"""
