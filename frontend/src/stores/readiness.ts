/**
 * Before a signal: how many of a channel's subscribers would not be copied now, and why (from the
 * workers' last account checks and today's counters; the hub computes it at most every 5 s).
 */
import { defineStore } from 'pinia'
import { ref } from 'vue'
import { channelsApi } from '@/api'
import type { ChannelReadiness } from '@/api/types'

/** The hub answers the same figures for this long (docs/api.md: "refreshed at most every 5 s"). */
export const READINESS_CACHE_MS = 5000

export const useReadinessStore = defineStore('readiness', () => {
  const byChannel = ref<Record<string, ChannelReadiness>>({})
  const errors = ref<Record<string, string | null>>({})
  /** When each channel's figures were last asked for (ms epoch). */
  const fetchedAt = ref<Record<string, number>>({})

  async function load(channelId: string): Promise<ChannelReadiness | null> {
    fetchedAt.value = { ...fetchedAt.value, [channelId]: Date.now() }
    try {
      const figures = await channelsApi.readiness(channelId)
      byChannel.value = { ...byChannel.value, [channelId]: figures }
      errors.value = { ...errors.value, [channelId]: null }
      return figures
    } catch (e) {
      errors.value = { ...errors.value, [channelId]: e instanceof Error ? e.message : String(e) }
      return null
    }
  }

  function reset(): void {
    byChannel.value = {}
    errors.value = {}
    fetchedAt.value = {}
  }

  return { byChannel, errors, fetchedAt, load, reset }
})
