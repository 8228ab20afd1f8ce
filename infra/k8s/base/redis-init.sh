#!/bin/sh
# Writes this pod's redis.conf and sentinel.conf into /conf (an emptyDir) before both start.
# The master is whoever the other sentinels name; with none answering (a cold start) it is
# redis-0. Every node announces its stable DNS name, never its pod IP, so a restarted pod with a
# new address is still the same node to Sentinel and to clients.
set -eu
MASTER_GROUP=ctc
DOMAIN="redis.${POD_NAMESPACE}.svc.${CLUSTER_DOMAIN:-cluster.local}"
SELF="${POD_NAME}.${DOMAIN}"
MASTER=""
for i in 0 1 2; do
  peer="redis-${i}.${DOMAIN}"
  [ "$peer" = "$SELF" ] && continue
  answer=$(timeout 3 redis-cli -h "$peer" -p 26379 sentinel get-master-addr-by-name "$MASTER_GROUP" 2>/dev/null || true)
  addr=$(printf '%s\n' "$answer" | head -n 1)
  if [ -n "$addr" ]; then
    MASTER="$addr"
    break
  fi
done
[ -n "$MASTER" ] || MASTER="redis-0.${DOMAIN}"
echo "redis-init: self ${SELF}, master ${MASTER}"

cat > /conf/redis.conf <<CONF
port 6379
bind * -::*
protected-mode no
dir /data
appendonly yes
appendfsync everysec
# The hot path's keys are never evicted: a full Redis refuses writes instead.
maxmemory ${REDIS_MAXMEMORY:-1536mb}
maxmemory-policy noeviction
# A master cut off from every replica stops taking writes within 10 s rather than accept
# writes a failover will discard (DESIGN.md, invariant 6).
min-replicas-to-write 1
min-replicas-max-lag 10
replica-announce-ip ${SELF}
replica-announce-port 6379
CONF
if [ "$MASTER" != "$SELF" ]; then
  echo "replicaof ${MASTER} 6379" >> /conf/redis.conf
fi

cat > /conf/sentinel.conf <<CONF
port 26379
bind * -::*
protected-mode no
dir /conf
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip ${SELF}
sentinel announce-port 26379
sentinel monitor ${MASTER_GROUP} ${MASTER} 6379 2
sentinel down-after-milliseconds ${MASTER_GROUP} 5000
sentinel failover-timeout ${MASTER_GROUP} 30000
sentinel parallel-syncs ${MASTER_GROUP} 1
CONF
