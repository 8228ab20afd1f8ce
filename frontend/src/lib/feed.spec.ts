import { describe, expect, it } from 'vitest'
import type { ExecutionEvent } from '@/api/types'
import { FeedAggregator, percentile, summaryWords } from './feed'

function exec(i: number, over: Partial<ExecutionEvent> = {}): ExecutionEvent {
  return {
    signal_id: 'S',
    trade_id: `t${i}`,
    subscriber_id: `u${i}`,
    broker: i % 2 ? 'deriv' : 'paper',
    status: 'placed',
    stake: 2,
    latency_ms: 100 + i,
    ...over,
  }
}

describe('percentile', () => {
  it('is the nearest rank of an ascending list', () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1)
    expect(percentile(values, 50)).toBe(50)
    expect(percentile(values, 99)).toBe(99)
    expect(percentile(values, 100)).toBe(100)
    expect(percentile([7], 99)).toBe(7)
    expect(percentile([], 50)).toBeNull()
  })
})

describe('FeedAggregator', () => {
  it('counts each status once per trade_id and drops repeats', () => {
    const feed = new FeedAggregator('S', 5)
    expect(feed.applyExecution(exec(1))).toBe(true)
    expect(feed.applyExecution(exec(1))).toBe(false) // a resend after a reconnect
    feed.applyExecution(exec(2, { status: 'rejected', reason: 'insufficient_balance', latency_ms: 900 }))
    feed.applyExecution(exec(3, { status: 'skipped', reason: 'paused' }))
    feed.applyExecution(exec(4, { status: 'failed', reason: 'broker_unreachable' }))
    feed.applyExecution(exec(4, { status: 'placed' })) // same trade, other status: still a repeat
    const s = feed.summary()
    expect(s.counts).toMatchObject({ placed: 1, rejected: 1, skipped: 1, failed: 1 })
    expect(s.received).toBe(4)
    expect(s.complete).toBe(false)
    feed.applyExecution(exec(5))
    expect(feed.summary().complete).toBe(true)
    expect(summaryWords(feed.summary())).toBe('2 placed, 1 rejected, 1 skipped, 1 failed of 5')
  })

  it('ignores events of other signals', () => {
    const feed = new FeedAggregator('S')
    expect(feed.applyExecution(exec(1, { signal_id: 'OTHER' }))).toBe(false)
    expect(feed.applySettlement({ signal_id: 'OTHER', trade_id: 't1', outcome: 'won', profit: 1 })).toBe(false)
    expect(feed.received).toBe(0)
  })

  it('takes latency figures from placed copies: first, last, p50, p99', () => {
    const feed = new FeedAggregator('S', 200)
    for (let i = 1; i <= 200; i++) feed.applyExecution(exec(i, { latency_ms: i * 10 }))
    feed.applyExecution(exec(999, { status: 'rejected', latency_ms: 99_999 }))
    const s = feed.summary()
    expect(s.firstLatency).toBe(10)
    expect(s.lastLatency).toBe(2000)
    expect(s.p50).toBe(1000)
    expect(s.p99).toBe(1980)
  })

  it('settles once, and keeps a settlement that came before its execution', () => {
    const feed = new FeedAggregator('S', 2)
    feed.applyExecution(exec(1, { stake: 10 }))
    expect(feed.applySettlement({ signal_id: 'S', trade_id: 't1', outcome: 'won', profit: 8.5 })).toBe(true)
    expect(feed.applySettlement({ signal_id: 'S', trade_id: 't1', outcome: 'won', profit: 8.5 })).toBe(false)
    expect(feed.applySettlement({ signal_id: 'S', trade_id: 't2', outcome: 'lost', profit: -10 })).toBe(false)
    feed.applyExecution(exec(2, { stake: 10 }))
    const s = feed.summary()
    expect(s.counts.won).toBe(1)
    expect(s.counts.lost).toBe(1)
    expect(s.settled).toBe(2)
    expect(s.pnl).toBeCloseTo(-1.5)
    expect(feed.row('t2')?.outcome).toBe('lost')
  })

  it('seeds from stored trades in time order, with their outcomes', () => {
    const feed = new FeedAggregator('S', 2)
    feed.applyTrades([
      { ...exec(2), id: 't2', trade_id: 't2', channel_id: 'c', subscription_id: null, asset: 'EURUSD', direction: 'CALL', expiry_seconds: 60, reason: null, contract_id: null, payout: null, outcome: 'lost', profit: -2, created_at: '2026-01-01T00:00:02Z', settled_at: null, stake: 2, latency_ms: 120 },
      { ...exec(1), id: 't1', trade_id: 't1', channel_id: 'c', subscription_id: null, asset: 'EURUSD', direction: 'CALL', expiry_seconds: 60, reason: null, contract_id: null, payout: null, outcome: null, profit: null, created_at: '2026-01-01T00:00:01Z', settled_at: null, stake: 2, latency_ms: 110 },
    ])
    expect(feed.rows.map((r) => r.trade_id)).toEqual(['t1', 't2'])
    expect(feed.summary().counts).toMatchObject({ placed: 2, lost: 1 })
  })

  it('takes 10,000 executions in well under a frame budget per batch', () => {
    const feed = new FeedAggregator('S', 10_000)
    const batch = Array.from({ length: 10_000 }, (_, i) => exec(i))
    const started = performance.now()
    for (const e of batch) feed.applyExecution(e)
    const s = feed.summary()
    const took = performance.now() - started
    expect(s.counts.placed).toBe(10_000)
    expect(s.complete).toBe(true)
    expect(took).toBeLessThan(500) // generous: a shared CI core; it is ~10 ms on a quiet one
  })
})
