-- Renew a worker's lease only if it is still the same lease: the heartbeat key holds the lease's
-- token, a random value per lease. A lease that lapsed is never renewed, not even by its own
-- worker, which takes a new one (a new token): nothing sent under the old token can pass as the
-- new lease (broker_workers/fencing.py).
-- KEYS: worker:{W}
-- ARGV: token, TTL (ms)
-- Returns 1 if renewed, 0 if the key is gone or holds another lease.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
