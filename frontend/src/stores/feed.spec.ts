import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import type { ExecutionEvent } from '@/api/types'
import { setFeedScheduler, useFeedStore } from './feed'

function exec(i: number, signal = 'S1'): ExecutionEvent {
  return { signal_id: signal, trade_id: `${signal}-t${i}`, subscriber_id: `u${i}`, broker: 'paper', status: 'placed', latency_ms: 50 + i, stake: 2 }
}

describe('feed store', () => {
  let frames: (() => void)[]
  beforeEach(() => {
    setActivePinia(createPinia())
    frames = []
    setFeedScheduler((run) => frames.push(run))
  })

  it('buffers socket events and applies them once per frame', () => {
    const feed = useFeedStore()
    feed.follow('S1', 300)
    const before = feed.version
    for (let i = 0; i < 3; i++) feed.ingestExecutions(Array.from({ length: 100 }, (_, j) => exec(i * 100 + j)))
    expect(frames).toHaveLength(1) // one frame scheduled for all three emits
    expect(feed.currentSummary?.received).toBe(0)
    frames.shift()!()
    expect(feed.version).toBe(before + 1)
    expect(feed.currentSummary?.counts.placed).toBe(300)
    expect(feed.currentSummary?.complete).toBe(true)
  })

  it('dedupes repeats across batches and keeps events that came before the ack', () => {
    const feed = useFeedStore()
    feed.ingestExecutions([exec(1), exec(2)])
    frames.shift()!()
    feed.follow('S1', 3) // the ack arrives after the first executions
    feed.ingestExecutions([exec(2), exec(3)])
    feed.ingestSettlements({ signal_id: 'S1', trade_id: 'S1-t1', outcome: 'won', profit: 1.7 })
    frames.shift()!()
    const s = feed.currentSummary!
    expect(s.received).toBe(3)
    expect(s.counts.won).toBe(1)
    expect(s.complete).toBe(true)
  })

  it('keeps a few signals apart and forgets the oldest', () => {
    const feed = useFeedStore()
    for (let n = 0; n < 12; n++) feed.ingestExecutions(exec(1, `S${n}`))
    frames.shift()!()
    expect(feed.get('S11')?.received).toBe(1)
    expect(feed.get('S0')).toBeUndefined()
  })

  it('tells listeners which signals a batch touched', () => {
    const feed = useFeedStore()
    const seen: string[][] = []
    feed.onApplied((ids) => seen.push([...ids]))
    feed.ingestExecutions([exec(1, 'A'), exec(1, 'B')])
    frames.shift()!()
    expect(seen).toEqual([['A', 'B']])
  })
})

describe('feed names', () => {
  it('fills the names of rows that arrived live without one', async () => {
    setActivePinia(createPinia())
    setFeedScheduler((run) => run())
    const { client } = await import('@/api/client')
    const { json, scriptedFetch } = await import('@/test/http')
    const http = scriptedFetch({
      'GET /api/trades': () =>
        json(200, { items: [{ id: 'S1-t1', trade_id: 'S1-t1', signal_id: 'S1', subscriber_name: 'Ada' }] }),
    })
    vi.stubGlobal('fetch', http.fetch)
    client.setSession({ user: { id: 'p', email: 'p@x.io', role: 'provider', display_name: 'P' }, access_token: 'T' }, 'login')
    const feed = useFeedStore()
    feed.follow('S1', 1)
    feed.ingestExecutions(exec(1))
    await feed.fillNames('S1')
    expect(feed.get('S1')?.row('S1-t1')?.subscriber_name).toBe('Ada')
    expect(http.calls[0]!.path).toBe('/api/trades?signal_id=S1&limit=1')
    vi.unstubAllGlobals()
    client.setSession(null, 'logout')
  })
})
