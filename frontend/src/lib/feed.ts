/**
 * The live feed of one signal: every subscriber's execution and settlement, deduplicated by
 * `trade_id`, with the counts and latency percentiles the summary shows.
 *
 * Plain data, no Vue reactivity: a 10,000-subscriber signal is 10,000 rows, and the store bumps a
 * version number once per animation frame instead of making every row reactive.
 */
import type { ExecutionEvent, Outcome, SettlementEvent, Trade, TradeStatus } from '@/api/types'

export interface FeedRow {
  trade_id: string
  subscriber_id: string
  subscriber_name: string | null
  broker: string
  status: TradeStatus
  reason: string | null
  stake: number | null
  payout: number | null
  latency_ms: number | null
  outcome: Outcome | null
  profit: number | null
  seq: number
}

export interface FeedCounts {
  placed: number
  rejected: number
  skipped: number
  failed: number
  won: number
  lost: number
  refund: number
}

export interface FeedSummary {
  total: number | null
  received: number
  counts: FeedCounts
  settled: number
  pnl: number
  firstLatency: number | null
  lastLatency: number | null
  p50: number | null
  p99: number | null
  complete: boolean
}

export function emptyCounts(): FeedCounts {
  return { placed: 0, rejected: 0, skipped: 0, failed: 0, won: 0, lost: 0, refund: 0 }
}

/** Nearest-rank percentile of an ascending list (p in 0..100). */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!
}

const STATUSES: readonly TradeStatus[] = ['placed', 'rejected', 'skipped', 'failed']

export class FeedAggregator {
  readonly signalId: string
  total: number | null = null
  readonly rows: FeedRow[] = []
  readonly counts: FeedCounts = emptyCounts()
  pnl = 0
  private readonly byTrade = new Map<string, FeedRow>()
  private readonly earlySettlements = new Map<string, SettlementEvent>()
  private latencies: number[] = []
  private sorted: number[] | null = []
  private minLatency: number | null = null
  private maxLatency: number | null = null
  private seq = 0

  constructor(signalId: string, total: number | null = null) {
    this.signalId = signalId
    this.total = total
  }

  get received(): number {
    return this.rows.length
  }

  has(tradeId: string): boolean {
    return this.byTrade.has(tradeId)
  }

  row(tradeId: string): FeedRow | undefined {
    return this.byTrade.get(tradeId)
  }

  /** Adds one execution; false when it is a repeat (same `trade_id`) or of another signal. */
  applyExecution(event: ExecutionEvent): boolean {
    if (event.signal_id !== this.signalId || !event.trade_id) return false
    if (this.byTrade.has(event.trade_id)) return false
    if (!STATUSES.includes(event.status)) return false
    const row: FeedRow = {
      trade_id: event.trade_id,
      subscriber_id: event.subscriber_id,
      subscriber_name: event.subscriber_name ?? null,
      broker: event.broker,
      status: event.status,
      reason: event.reason ?? null,
      stake: event.stake ?? null,
      payout: event.payout ?? null,
      latency_ms: event.latency_ms ?? null,
      outcome: null,
      profit: null,
      seq: this.seq++,
    }
    this.byTrade.set(row.trade_id, row)
    this.rows.push(row)
    this.counts[row.status] += 1
    if (row.latency_ms !== null && row.status === 'placed') this.addLatency(row.latency_ms)
    const early = this.earlySettlements.get(row.trade_id)
    if (early) {
      this.earlySettlements.delete(row.trade_id)
      this.applySettlement(early)
    }
    return true
  }

  /** Adds a settlement; a repeat is dropped, one ahead of its execution waits for it. */
  applySettlement(event: SettlementEvent): boolean {
    if (event.signal_id !== this.signalId) return false
    const row = this.byTrade.get(event.trade_id)
    if (!row) {
      this.earlySettlements.set(event.trade_id, event)
      return false
    }
    if (row.outcome !== null) return false
    row.outcome = event.outcome
    row.profit = event.profit
    this.counts[event.outcome] += 1
    this.pnl += event.profit ?? 0
    return true
  }

  /** Names from stored records for rows that arrived live without one; true if any changed. */
  applyNames(trades: readonly Trade[]): boolean {
    let changed = false
    for (const trade of trades) {
      const row = this.byTrade.get(trade.trade_id ?? trade.id)
      if (row && !row.subscriber_name && trade.subscriber_name) {
        row.subscriber_name = trade.subscriber_name
        changed = true
      }
    }
    return changed
  }

  /** Seeds the feed from stored trade records (the signal's page, a reload). */
  applyTrades(trades: readonly Trade[]): void {
    const ordered = [...trades].sort((a, b) => (a.created_at < b.created_at ? -1 : 1))
    for (const trade of ordered) {
      this.applyExecution({
        signal_id: trade.signal_id,
        trade_id: trade.trade_id ?? trade.id,
        subscriber_id: trade.subscriber_id,
        subscriber_name: trade.subscriber_name ?? null,
        broker: trade.broker,
        status: trade.status,
        reason: trade.reason,
        stake: trade.stake,
        payout: trade.payout,
        latency_ms: trade.latency_ms,
      })
      if (trade.outcome) {
        this.applySettlement({
          signal_id: trade.signal_id,
          trade_id: trade.trade_id ?? trade.id,
          outcome: trade.outcome,
          profit: trade.profit ?? 0,
        })
      }
    }
  }

  private addLatency(value: number): void {
    this.latencies.push(value)
    this.sorted = null
    this.minLatency = this.minLatency === null ? value : Math.min(this.minLatency, value)
    this.maxLatency = this.maxLatency === null ? value : Math.max(this.maxLatency, value)
  }

  percentile(p: number): number | null {
    if (this.sorted === null) this.sorted = [...this.latencies].sort((a, b) => a - b)
    return percentile(this.sorted, p)
  }

  get terminal(): number {
    return this.counts.placed + this.counts.rejected + this.counts.skipped + this.counts.failed
  }

  summary(): FeedSummary {
    const settled = this.counts.won + this.counts.lost + this.counts.refund
    return {
      total: this.total,
      received: this.rows.length,
      counts: { ...this.counts },
      settled,
      pnl: this.pnl,
      firstLatency: this.minLatency,
      lastLatency: this.maxLatency,
      p50: this.percentile(50),
      p99: this.percentile(99),
      complete: this.total !== null && this.terminal >= this.total,
    }
  }
}

/** "48 placed · 1 rejected · 0 skipped · 1 failed of 50": the summary in words. */
export function summaryWords(summary: FeedSummary): string {
  const c = summary.counts
  const parts = [`${c.placed} placed`, `${c.rejected} rejected`, `${c.skipped} skipped`, `${c.failed} failed`]
  const of = summary.total === null ? '' : ` of ${summary.total}`
  return `${parts.join(', ')}${of}`
}
