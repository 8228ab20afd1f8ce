import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { client } from '@/api/client'
import type { Trade } from '@/api/types'
import { json, scriptedFetch } from '@/test/http'
import { useSubscriberStore } from './subscriber'

const trade = (id: string, over: Partial<Trade> = {}): Trade => ({
  id, trade_id: id, signal_id: 'S', channel_id: 'C', subscription_id: 'sub', subscriber_id: 'me',
  broker: 'paper', asset: 'EURUSD', direction: 'CALL', expiry_seconds: 60, status: 'placed',
  reason: null, contract_id: null, stake: 2, payout: 3.7, latency_ms: 90, outcome: null, profit: null,
  created_at: '2026-11-29T10:00:00Z', settled_at: null, ...over,
})

describe('subscriber store', () => {
  beforeEach(() => {
    setActivePinia(createPinia())
    vi.useFakeTimers()
    client.setSession({ user: { id: 'me', email: 'me@x.io', role: 'subscriber', display_name: 'me' }, access_token: 'T' }, 'login')
  })
  afterEach(() => {
    vi.useRealTimers()
    vi.unstubAllGlobals()
    client.setSession(null, 'logout')
  })

  it('adds live trades once per trade_id, newest first, then fills their details', async () => {
    const http = scriptedFetch({
      'GET /api/trades': () => json(200, { items: [trade('t2', { created_at: '2026-11-29T10:00:02Z' }), trade('t1')] }),
      'GET /api/me/performance': () => json(404, { error: { code: 'not_found', message: 'No such endpoint.' } }),
    })
    vi.stubGlobal('fetch', http.fetch)
    const store = useSubscriberStore()
    store.ingestExecutions({ signal_id: 'S', trade_id: 't1', subscriber_id: 'me', broker: 'paper', status: 'placed', latency_ms: 90, stake: 2 })
    store.ingestExecutions([
      { signal_id: 'S', trade_id: 't1', subscriber_id: 'me', broker: 'paper', status: 'placed', latency_ms: 90 },
      { signal_id: 'S', trade_id: 't2', subscriber_id: 'me', broker: 'paper', status: 'skipped', reason: 'paused', latency_ms: null },
    ])
    expect(store.trades.map((t) => t.trade_id)).toEqual(['t2', 't1'])
    expect(store.trades[0]!.asset).toBe('') // not known from the event
    await vi.advanceTimersByTimeAsync(1000)
    expect(store.trades.map((t) => t.asset)).toEqual(['EURUSD', 'EURUSD'])
  })

  it('settles a trade once, even when the settlement comes first', () => {
    vi.stubGlobal('fetch', scriptedFetch({}).fetch)
    const store = useSubscriberStore()
    store.ingestSettlements({ signal_id: 'S', trade_id: 't9', outcome: 'won', profit: 1.7 })
    store.ingestExecutions({ signal_id: 'S', trade_id: 't9', subscriber_id: 'me', broker: 'paper', status: 'placed', latency_ms: 80 })
    store.ingestSettlements({ signal_id: 'S', trade_id: 't9', outcome: 'won', profit: 1.7 })
    expect(store.trades).toHaveLength(1)
    expect(store.trades[0]!.outcome).toBe('won')
    expect(store.localPerformance.pnl).toBeCloseTo(1.7)
    expect(store.localPerformance.won).toBe(1)
  })

  it('asks before removing an account in use: 409 first, then confirm=1', async () => {
    const http = scriptedFetch({
      'DELETE /api/broker-accounts/a1': (init) =>
        init.url.includes('confirm=1')
          ? json(204)
          : json(409, { error: { code: 'account_in_use', message: 'Subscriptions use this account.' } }),
      'GET /api/subscriptions': () => json(200, { items: [] }),
    })
    vi.stubGlobal('fetch', http.fetch)
    const store = useSubscriberStore()
    store.accounts = [{ id: 'a1', broker: 'paper', label: 'P', currency: 'USD', created_at: '' }]
    await expect(store.removeAccount('a1')).rejects.toMatchObject({ code: 'account_in_use' })
    expect(store.accounts).toHaveLength(1)
    await store.removeAccount('a1', true)
    expect(store.accounts).toHaveLength(0)
    expect(http.calls.map((c) => `${c.method} ${c.path}`)).toEqual([
      'DELETE /api/broker-accounts/a1',
      'DELETE /api/broker-accounts/a1?confirm=1',
      'GET /api/subscriptions',
    ])
  })

  it('pauses through PATCH and keeps the answer', async () => {
    const http = scriptedFetch({
      'PATCH /api/subscriptions/s1': () => json(200, { id: 's1', channel_id: 'C', paused: true, state: 'paused', stake: { mode: 'fixed', amount: 2 }, limits: {} }),
    })
    vi.stubGlobal('fetch', http.fetch)
    const store = useSubscriberStore()
    store.subscriptions = [{ id: 's1', channel_id: 'C', user_id: 'me', broker_account_id: 'a', broker: 'paper', stake: { mode: 'fixed', amount: 2 }, limits: {}, paused: false, created_at: '', updated_at: '' }]
    await store.setPaused('s1', true)
    expect(http.calls[0]!.body).toEqual({ paused: true })
    expect(store.subscriptions[0]!.state).toBe('paused')
  })
})
