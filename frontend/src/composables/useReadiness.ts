/**
 * The signal pad's broker-health warning for the selected channel: polled every 10 s while the
 * pad is visible, again as soon as a signal's copies have all answered, never in the way of
 * sending. `announcement` is what the pad's live region says: only a change, never the same
 * figures again on every refresh.
 */
import { computed, ref, watch, type Ref } from 'vue'
import type { ChannelReadiness } from '@/api/types'
import { readinessText, type ReadinessText } from '@/lib/reasons'
import { READINESS_CACHE_MS, useReadinessStore } from '@/stores/readiness'
import { usePolling, type PollingOptions } from './usePolling'

export const READINESS_POLL_MS = 10_000

/**
 * What the live region should say after a new reading, or null to leave it as it is. The first
 * reading of a channel is said only when it warns (a quiet "all can be copied" is no news).
 */
export function nextAnnouncement(previous: ReadinessText | null, next: ReadinessText): string | null {
  if (previous === null) return next.level === 'warn' ? next.sentence : null
  return previous.sentence === next.sentence ? null : next.sentence
}

export function useReadiness(channelId: Ref<string>, options: PollingOptions = {}) {
  const store = useReadinessStore()
  const announcement = ref('')
  const readiness = computed<ChannelReadiness | null>(() => store.byChannel[channelId.value] ?? null)
  const text = computed<ReadinessText | null>(() => (readiness.value ? readinessText(readiness.value) : null))
  const error = computed(() => store.errors[channelId.value] ?? null)

  const poller = usePolling(
    async () => {
      if (channelId.value) await store.load(channelId.value)
    },
    READINESS_POLL_MS,
    options,
  )

  let heard: { channel: string; text: ReadinessText } | null = null
  watch(
    [channelId, text],
    ([channel, next]) => {
      if (!next) return
      const previous = heard && heard.channel === channel ? heard.text : null
      const say = nextAnnouncement(previous, next)
      if (say !== null) announcement.value = say
      heard = { channel, text: next }
    },
    { immediate: true },
  )

  watch(channelId, (id, before) => {
    if (id && id !== before) void poller.refresh()
  })

  /** After a signal's copies complete: read again once the hub's 5 s figures have run out. */
  function afterSignal(): void {
    const last = store.fetchedAt[channelId.value] ?? 0
    poller.refreshIn(Math.max(0, last + READINESS_CACHE_MS + 100 - Date.now()))
  }

  return { readiness, text, error, announcement, poller, afterSignal }
}
