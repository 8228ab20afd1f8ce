-- uses: signal
-- A signal on K shards, second step, on each shard: the subscribers this shard holds become the
-- signal's work sets (expand.lua's fan_out), with the home shard's instant and deadline. Once per
-- signal and shard: asked again (a retried call, a resend completing it), the same counts. The
-- home shard's signal stays ``expanding`` until the ack (expand_done.lua): the reaper redrives no
-- work of a signal whose hub died before anyone was told of it.
-- KEYS: sig:{S}, active, then per broker (ARGV[12..]) dir:{C}:b, dirspare:{C}:b, work:{S}:b
-- ARGV: as signal_args, then ARGV[10] created ms, ARGV[11] the delay budget (ms), brokers from 12
-- Returns this shard's fan-out, JSON {total, by_broker}.
local a = signal_args()
local created = tonumber(table.remove(a.brokers, 1))
local delay = table.remove(a.brokers, 1)
local done = redis.call('HGET', KEYS[1], 'fanout')
if done then return done end
local status = redis.call('HGET', KEYS[1], 'status')
local record = new_signal(KEYS[1], a)
fan_out(KEYS[1], KEYS[2], 3, a, record, {max_signal_delay_ms = delay}, created)
if status == 'expanding' then redis.call('HSET', KEYS[1], 'status', status) end
local fanout = cjson.encode(record.fanout)
redis.call('HSET', KEYS[1], 'fanout', fanout)
return fanout
