-- A spare copy of each of a channel's subscriber sets, for the next expansion to rename into its
-- work set: COPY is O(subscribers) inside the expansion (16 ms for 50,000, on the ack's path),
-- RENAME is O(1). A spare exists only while it equals its set: every change of the set deletes it
-- in the same transaction (signal_hub/directory.py).
-- KEYS: per broker, dir:{C}:b and dirspare:{C}:b.
for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    redis.call('COPY', KEYS[i], KEYS[i + 1])
  end
end
return 0
