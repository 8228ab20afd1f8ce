/** The channels the caller owns or trades for, and what their management pages load. */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { channelsApi } from '@/api'
import { providerConnection } from '@/composables/sockets'
import type {
  AssetsByBroker,
  Channel,
  ChannelInput,
  ChannelPerformance,
  ChannelSubscribers,
  Trader,
} from '@/api/types'

/** The assets a channel may be sent on: its own list, else every tradable one. */
export function channelAssets(channel: Channel | undefined, assets: AssetsByBroker): string[] {
  if (!channel) return []
  if (channel.assets && channel.assets.length) return [...channel.assets].sort()
  const brokers = channel.brokers?.length ? channel.brokers : Object.keys(assets)
  return [...new Set(brokers.flatMap((b) => assets[b] ?? []))].sort()
}

/** Traders are `{email}` (an older hub sent bare user ids). */
export function traderList(channel: Channel | undefined): Trader[] {
  return (channel?.traders ?? []).map((t) => (typeof t === 'string' ? { email: t, user_id: t } : t))
}

/** What DELETE /api/channels/{id}/traders/{user_id or email} takes for a trader. */
export function traderKey(trader: Trader): string {
  return trader.email || trader.user_id || ''
}

export const useChannelsStore = defineStore('channels', () => {
  const items = ref<Channel[]>([])
  const loaded = ref(false)
  const loading = ref(false)
  const error = ref<string | null>(null)
  const subscribers = ref<Record<string, ChannelSubscribers>>({})
  const performance = ref<Record<string, ChannelPerformance>>({})

  const byId = computed(() => new Map(items.value.map((c) => [c.id, c])))
  const owned = computed(() => items.value.filter((c) => (c.my_role ?? 'owner') === 'owner'))

  async function load(force = false): Promise<void> {
    if (loaded.value && !force) return
    loading.value = true
    error.value = null
    try {
      items.value = (await channelsApi.mine()).items
      loaded.value = true
    } catch (e) {
      error.value = e instanceof Error ? e.message : String(e)
      throw e
    } finally {
      loading.value = false
    }
  }

  function upsert(channel: Channel): Channel {
    const merged = { my_role: 'owner' as const, ...byId.value.get(channel.id), ...channel }
    const index = items.value.findIndex((c) => c.id === channel.id)
    if (index === -1) items.value = [merged, ...items.value]
    else items.value.splice(index, 1, merged)
    return merged
  }

  async function create(input: ChannelInput): Promise<Channel> {
    const channel = upsert(await channelsApi.create(input))
    // The provider socket joined its channels' rooms when it connected: join the new one too,
    // so executions of signals sent to it from elsewhere (a trader) reach this feed.
    if (providerConnection.state.value === 'connected') {
      providerConnection.call('join', { channel_id: channel.id }).catch(() => undefined)
    }
    return channel
  }

  async function update(channelId: string, input: Partial<ChannelInput>): Promise<Channel> {
    return upsert(await channelsApi.update(channelId, input))
  }

  /** Fresh channel view (its traders with emails), into the list. */
  async function refresh(channelId: string): Promise<Channel> {
    return upsert(await channelsApi.get(channelId))
  }

  async function addTrader(channelId: string, email: string): Promise<void> {
    await channelsApi.addTrader(channelId, email)
    await refresh(channelId)
  }

  async function removeTrader(channelId: string, key: string): Promise<void> {
    await channelsApi.removeTrader(channelId, key)
    const channel = byId.value.get(channelId)
    if (channel) {
      upsert({ ...channel, traders: traderList(channel).filter((t) => traderKey(t) !== key) })
    }
  }

  async function loadSubscribers(channelId: string): Promise<ChannelSubscribers> {
    const list = await channelsApi.subscribers(channelId)
    subscribers.value = { ...subscribers.value, [channelId]: list }
    return list
  }

  async function loadPerformance(channelId: string): Promise<ChannelPerformance> {
    const figures = await channelsApi.performance(channelId)
    performance.value = { ...performance.value, [channelId]: figures }
    return figures
  }

  function reset(): void {
    items.value = []
    loaded.value = false
    subscribers.value = {}
    performance.value = {}
  }

  return {
    items,
    loaded,
    loading,
    error,
    byId,
    owned,
    subscribers,
    performance,
    load,
    create,
    update,
    refresh,
    addTrader,
    removeTrader,
    loadSubscribers,
    loadPerformance,
    reset,
  }
})
