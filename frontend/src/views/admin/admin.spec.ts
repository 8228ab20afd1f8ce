import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { client } from '@/api/client'
import type { AdminOverview, BrokerPool } from '@/api/types'
import { json, scriptedFetch } from '@/test/http'
import PoolsView from './PoolsView.vue'
import ReaperView from './ReaperView.vue'

const copies = { placed: 0, rejected: 0, skipped: 0, failed: 0 }
const pool = (broker: string, over: Partial<BrokerPool> = {}): BrokerPool => ({
  broker, pending_work: 0, queued_jobs: 0, live_workers: 1, workers: [],
  copies: { last_minute: copies, last_hour: copies }, latency_ms: { p50: 120, p99: 480, samples: 9 }, ...over,
})

describe('operations views', () => {
  beforeEach(() => {
    setActivePinia(createPinia())
    client.setSession({ user: { id: 'a', email: 'ops@example.com', role: 'admin', display_name: 'ops' }, access_token: 'T' }, 'login')
  })
  afterEach(() => {
    vi.unstubAllGlobals()
    client.setSession(null, 'logout')
  })

  it('shows each Deriv worker\'s sessions and rate budget, and no such columns for paper', async () => {
    const overview: AdminOverview = {
      active_fanouts: 0,
      at: '2026-11-29T10:00:00Z',
      brokers: [
        pool('deriv', { workers: [{
          id: 'wd', last_heartbeat_ms_ago: 300, host: 'node-a', pid: 42, metrics_port: 9101,
          sessions: { connected: 1, total: 2 }, rate_budget: { available: 300, per_minute: 648, waits: 2 }, reconnects: 1,
        }] }),
        pool('paper', { workers: [{ id: 'wp', last_heartbeat_ms_ago: 100, host: 'node-b', pid: 7, metrics_port: null, sessions: null, rate_budget: null }] }),
      ],
    }
    vi.stubGlobal('fetch', scriptedFetch({ 'GET /api/admin/overview': () => json(200, overview) }).fetch)
    const wrapper = mount(PoolsView, { attachTo: document.body })
    await flushPromises()
    const deriv = wrapper.get('table[aria-label="Deriv workers and their last heartbeat"]')
    expect(deriv.findAll('th').map((th) => th.text())).toEqual(['Worker', 'Last heartbeat', 'Sessions', 'Rate budget', 'State'])
    expect(deriv.text()).toContain('1 of 2 connected')
    expect(deriv.text()).toContain('300 of 648 a minute left · waited 2 times')
    expect(deriv.text()).toContain('node-a · pid 42 · metrics :9101')
    expect(deriv.find('.ops-bad').text()).toBe('1 of 2 connected')
    const paper = wrapper.get('table[aria-label="Paper workers and their last heartbeat"]')
    expect(paper.findAll('th').map((th) => th.text())).toEqual(['Worker', 'Last heartbeat', 'State'])
    wrapper.unmount()
  })

  it('lists the reaper\'s actions in words, with totals by kind, or says there were none', async () => {
    let items = [
      { kind: 'recovered', signal_id: 'sig-000001', broker: 'paper', subscribers: 4, worker: 'worker-dead-1', at: '2026-11-29T10:00:00Z' },
      { kind: 'expired', signal_id: 'sig-000002', broker: 'deriv', subscribers: 2, worker: null, at: '2026-11-29T09:59:00Z' },
    ]
    vi.stubGlobal('fetch', scriptedFetch({ 'GET /api/admin/reaper': () => json(200, { items }) }).fetch)
    const wrapper = mount(ReaperView, { attachTo: document.body })
    await flushPromises()
    const rows = wrapper.findAll('tbody tr')
    expect(rows).toHaveLength(2)
    expect(rows[0]!.text()).toContain('Recovered')
    expect(rows[0]!.text()).toContain('4 claims of a dead worker taken back')
    expect(rows[0]!.text()).toContain('Paper')
    expect(rows[1]!.text()).toContain('2 copies past the deadline ended as skipped (expired)')
    const figures = wrapper.get('[aria-label="Reaper actions shown, by kind"]').text()
    expect(figures).toContain('Recovered4')
    expect(figures).toContain('Expired2')
    wrapper.unmount()

    items = []
    const empty = mount(ReaperView, { attachTo: document.body })
    await flushPromises()
    expect(empty.text()).toContain('Nothing for the reaper lately')
    empty.unmount()
  })
})
