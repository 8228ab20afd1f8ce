/**
 * The provider's live feed: `execution` and `settlement` events of the `/provider` socket,
 * buffered and applied once per animation frame into one {@link FeedAggregator} per signal.
 *
 * The aggregators are plain objects (not reactive); `version` goes up once per applied batch and
 * the components' computed values read it, so 10,000 rows cost one re-render per frame, not one
 * per event.
 */
import { defineStore } from 'pinia'
import { computed, markRaw, ref } from 'vue'
import { signalsApi } from '@/api'
import type { ExecutionEvent, SettlementEvent, Trade } from '@/api/types'
import { FeedAggregator, type FeedSummary } from '@/lib/feed'
import { FrameBatcher, type Scheduler, frameScheduler } from '@/lib/frameBatcher'

/** Signals whose feed is kept in memory (the current one and a few before it). */
const KEEP = 8

type FeedEvent = { kind: 'execution'; event: ExecutionEvent } | { kind: 'settlement'; event: SettlementEvent }

let scheduler: Scheduler = frameScheduler

/** Tests apply batches at once. */
export function setFeedScheduler(next: Scheduler): void {
  scheduler = next
}

export const useFeedStore = defineStore('feed', () => {
  const feeds = markRaw(new Map<string, FeedAggregator>())
  const version = ref(0)
  const currentId = ref<string | null>(null)
  const listeners = new Set<(signalIds: Set<string>) => void>()

  function feed(signalId: string, total?: number | null): FeedAggregator {
    let aggregator = feeds.get(signalId)
    if (!aggregator) {
      aggregator = markRaw(new FeedAggregator(signalId, total ?? null))
      feeds.set(signalId, aggregator)
      while (feeds.size > KEEP) {
        const oldest = [...feeds.keys()].find((id) => id !== currentId.value)
        if (oldest === undefined) break
        feeds.delete(oldest)
      }
    } else if (total !== undefined && total !== null) {
      aggregator.total = total
    }
    return aggregator
  }

  function apply(batch: FeedEvent[]): void {
    const signals = new Set<string>()
    for (const item of batch) {
      const aggregator = feed(item.event.signal_id)
      if (item.kind === 'execution') aggregator.applyExecution(item.event)
      else aggregator.applySettlement(item.event)
      signals.add(item.event.signal_id)
    }
    version.value++
    for (const listener of listeners) listener(signals)
  }

  let batcher = new FrameBatcher<FeedEvent>(apply, (run) => scheduler(run))

  function ingestExecutions(data: ExecutionEvent | ExecutionEvent[]): void {
    const list = Array.isArray(data) ? data : [data]
    batcher.push(list.map((event) => ({ kind: 'execution' as const, event })))
  }

  function ingestSettlements(data: SettlementEvent | SettlementEvent[]): void {
    const list = Array.isArray(data) ? data : [data]
    batcher.push(list.map((event) => ({ kind: 'settlement' as const, event })))
  }

  /** Applies what is buffered now (tests; leaving a page). */
  function flush(): void {
    batcher.flush()
  }

  /** Starts following a signal: its ack's fan-out total, and what arrived before the ack. */
  function follow(signalId: string, total: number | null): void {
    feed(signalId, total)
    currentId.value = signalId
    version.value++
  }

  /** Seeds a signal's feed from its stored trades (a signal's page, after a reload). */
  function seed(signalId: string, trades: Trade[], total: number | null): void {
    feed(signalId, total).applyTrades(trades)
    version.value++
  }

  /**
   * Live events carry no subscriber name: once a signal's copies have all answered, its stored
   * records (which have the names) fill them in. Skipped above `maxRows`, where the table's
   * masked ids stay (one request of that many records is not worth it).
   */
  const named = new Set<string>()
  async function fillNames(signalId: string, maxRows = 2000): Promise<void> {
    const aggregator = feeds.get(signalId)
    if (!aggregator || named.has(signalId) || aggregator.received > maxRows) return
    if (aggregator.rows.every((r) => r.subscriber_name)) return
    named.add(signalId)
    try {
      const { items } = await signalsApi.trades(signalId, Math.max(aggregator.received, 1))
      if (aggregator.applyNames(items)) version.value++
    } catch {
      named.delete(signalId) // masked ids stay; a later call may try again
    }
  }

  function clear(): void {
    feeds.clear()
    currentId.value = null
    batcher = new FrameBatcher<FeedEvent>(apply, (run) => scheduler(run))
    version.value++
  }

  function onApplied(listener: (signalIds: Set<string>) => void): () => void {
    listeners.add(listener)
    return () => listeners.delete(listener)
  }

  const current = computed<FeedAggregator | null>(() => {
    void version.value
    return currentId.value ? (feeds.get(currentId.value) ?? null) : null
  })

  function summaryOf(signalId: string | null): FeedSummary | null {
    void version.value
    if (!signalId) return null
    return feeds.get(signalId)?.summary() ?? null
  }

  const currentSummary = computed(() => summaryOf(currentId.value))

  function get(signalId: string): FeedAggregator | undefined {
    void version.value
    return feeds.get(signalId)
  }

  return {
    version,
    currentId,
    current,
    currentSummary,
    feed,
    get,
    summaryOf,
    follow,
    seed,
    ingestExecutions,
    ingestSettlements,
    fillNames,
    flush,
    clear,
    onApplied,
  }
})
