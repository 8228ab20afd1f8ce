import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { client } from '@/api/client'
import type { AdminUser, AuditEntry } from '@/api/types'
import { auditText, budgetText, poolWarning, reaperText, sessionsShort, sessionsText } from '@/lib/reasons'
import { json, scriptedFetch } from '@/test/http'
import { useAdminStore } from './admin'

const user = (id: string, over: Partial<AdminUser> = {}): AdminUser => ({
  id, email: `${id}@example.com`, role: 'provider', display_name: id, created_at: '2026-11-29T10:00:00Z', suspended: null, ...over,
})
const entry = (action: string, detail: Record<string, unknown> = {}): AuditEntry => ({
  id: action, at: '2026-11-29T10:00:00Z', actor_id: 'a', actor_email: 'ops@example.com', action, target_type: 'user', target_id: 'u1', detail,
})

describe('admin store', () => {
  beforeEach(() => {
    setActivePinia(createPinia())
    client.setSession({ user: { id: 'a', email: 'ops@example.com', role: 'admin', display_name: 'ops' }, access_token: 'T' }, 'login')
  })
  afterEach(() => {
    vi.unstubAllGlobals()
    client.setSession(null, 'logout')
  })

  it('searches users by q; a late answer to an older search is dropped', async () => {
    const pending: Record<string, (r: Response) => void> = {}
    const http = scriptedFetch({
      'GET /api/admin/users': (init) => {
        const q = new URL(init.url).searchParams.get('q') ?? ''
        return new Promise<Response>((resolve) => (pending[q] = resolve))
      },
    })
    vi.stubGlobal('fetch', http.fetch)
    const admin = useAdminStore()
    const first = admin.searchUsers('al')
    const second = admin.searchUsers(' alice ')
    await vi.waitFor(() => expect(Object.keys(pending).sort()).toEqual(['al', 'alice']))
    pending.alice!(json(200, { items: [user('alice')] }))
    await second
    pending.al!(json(200, { items: [user('alfred'), user('alice')] }))
    await first
    expect(admin.users.data.map((u) => u.id)).toEqual(['alice'])
    expect(admin.userQuery).toBe(' alice ')
    expect(http.calls.map((c) => c.path)).toEqual(['/api/admin/users?q=al&limit=50', '/api/admin/users?q=alice&limit=50'])
  })

  it('suspends with the reason, puts the answer in place and re-reads the audit log', async () => {
    const suspended = { at: '2026-11-29T11:00:00Z', by: 'ops@example.com', reason: 'Scam reports' }
    let audit: AuditEntry[] = []
    const http = scriptedFetch({
      'GET /api/admin/users': () => json(200, { items: [user('u1'), user('u2')] }),
      'POST /api/admin/users/u1/suspend': () => {
        audit = [entry('suspend_user', { email: 'u1@example.com', reason: 'Scam reports' })]
        return json(200, user('u1', { suspended }))
      },
      'POST /api/admin/users/u1/unsuspend': () => json(200, user('u1')),
      'GET /api/admin/audit': () => json(200, { items: audit }),
    })
    vi.stubGlobal('fetch', http.fetch)
    const admin = useAdminStore()
    await admin.searchUsers('')
    await admin.loadAudit()
    await admin.suspendUser('u1', '  Scam reports ')
    expect(http.calls.find((c) => c.path.endsWith('/suspend'))!.body).toEqual({ reason: 'Scam reports' })
    expect(admin.users.data[0]!.suspended).toEqual(suspended)
    expect(admin.users.data[1]!.suspended).toBeNull()
    await vi.waitFor(() => expect(admin.audit.data).toHaveLength(1))
    await admin.restoreUser('u1')
    expect(admin.users.data[0]!.suspended).toBeNull()
  })

  it('leaves a refused action to the caller and the list as it was', async () => {
    vi.stubGlobal('fetch', scriptedFetch({
      'GET /api/admin/users': () => json(200, { items: [user('a', { role: 'admin' })] }),
      'POST /api/admin/users/a/suspend': () => json(409, { error: { code: 'cannot_suspend_self', message: 'You cannot suspend yourself.' } }),
    }).fetch)
    const admin = useAdminStore()
    await admin.searchUsers('')
    await expect(admin.suspendUser('a', 'x')).rejects.toThrow('You cannot suspend yourself.')
    expect(admin.users.data[0]!.suspended).toBeNull()
  })

  it('suspends and restores channels in place', async () => {
    const channel = { id: 'c1', name: 'Majors', provider_id: 'p', created_at: '2026-11-29T10:00:00Z', suspended: null }
    const mark = { at: '2026-11-29T11:00:00Z', by: 'ops@example.com', reason: 'r' }
    const http = scriptedFetch({
      'GET /api/admin/channels': () => json(200, { items: [channel] }),
      'POST /api/admin/channels/c1/suspend': () => json(200, { ...channel, suspended: mark }),
      'POST /api/admin/channels/c1/unsuspend': () => json(200, channel),
    })
    vi.stubGlobal('fetch', http.fetch)
    const admin = useAdminStore()
    await admin.searchChannels('maj')
    expect(http.calls[0]!.path).toBe('/api/admin/channels?q=maj&limit=50')
    await admin.suspendChannel('c1', 'r')
    expect(admin.channels.data[0]!.suspended).toEqual(mark)
    await admin.restoreChannel('c1')
    expect(admin.channels.data[0]!.suspended).toBeNull()
  })

  it('requeues a failed job and takes it off the list', async () => {
    const http = scriptedFetch({
      'GET /api/admin/jobs/failed': () => json(200, { items: [
        { id: 'j1', broker: 'paper', description: 'drain', error: 'ValueError: x', ended_at: '2026-11-29T10:00:00Z' },
        { id: 'j2', broker: 'deriv', description: 'drain', error: null, ended_at: null },
      ] }),
      'POST /api/admin/jobs/j1/requeue': () => json(200, { id: 'j1', broker: 'paper', status: 'requeued' }),
    })
    vi.stubGlobal('fetch', http.fetch)
    const admin = useAdminStore()
    await admin.loadFailedJobs()
    await expect(admin.requeue('j1')).resolves.toMatchObject({ broker: 'paper' })
    expect(admin.failedJobs.data.map((j) => j.id)).toEqual(['j2'])
  })

  it('reads the reaper\'s recent actions, newest first as the hub sends them', async () => {
    const actions = [
      { kind: 'expired', signal_id: 's2', broker: 'paper', subscribers: 7, worker: null, at: '2026-11-29T10:00:01Z' },
      { kind: 'recovered', signal_id: 's1', broker: 'deriv', subscribers: 4, worker: 'w-dead', at: '2026-11-29T10:00:00Z' },
    ]
    const http = scriptedFetch({ 'GET /api/admin/reaper': () => json(200, { items: actions }) })
    vi.stubGlobal('fetch', http.fetch)
    const admin = useAdminStore()
    await admin.loadReaper()
    expect(http.calls[0]!.path).toBe('/api/admin/reaper?limit=100')
    expect(admin.reaper.data.map((a) => [a.kind, a.subscribers])).toEqual([['expired', 7], ['recovered', 4]])
    expect(admin.reaper.loaded).toBe(true)
    admin.reset()
    expect(admin.reaper.data).toEqual([])
  })

  it('keeps each list\'s error to itself and the last figures on a failed refresh', async () => {
    let up = true
    vi.stubGlobal('fetch', scriptedFetch({
      'GET /api/admin/overview': () =>
        up ? json(200, { brokers: [], active_fanouts: 2, at: '2026-11-29T10:00:00Z' }) : json(503, { error: { code: 'unavailable', message: 'Redis is not answering.' } }),
      'GET /api/admin/failures': () => json(500, { error: { code: 'internal', message: 'Something broke.' } }),
    }).fetch)
    const admin = useAdminStore()
    await admin.loadOverview()
    await admin.loadFailures()
    expect(admin.overview.error).toBeNull()
    expect(admin.failures.error).toBe('Something broke.')
    up = false
    await admin.loadOverview()
    expect(admin.overview.error).toBe('Redis is not answering.')
    expect(admin.overview.data?.active_fanouts).toBe(2)
    expect(admin.overview.loaded).toBe(true)
  })
})

describe('operator texts', () => {
  it('says each audit action in words', () => {
    expect(auditText(entry('suspend_user', { email: 'x@example.com', reason: 'Chargebacks' }))).toEqual({
      action: 'Suspended user', target: 'x@example.com', note: 'Reason: Chargebacks',
    })
    expect(auditText(entry('suspend_channel', { name: 'Majors', reason: '' })).note).toBe('No reason given')
    expect(auditText(entry('unsuspend_channel', { name: 'Majors' }))).toEqual({ action: 'Restored channel', target: 'Majors', note: null })
    expect(auditText({ ...entry('requeue_job', { broker: 'deriv' }), target_id: 'job1' })).toEqual({
      action: 'Requeued job', target: 'job1', note: 'On the Deriv queue',
    })
    expect(auditText(entry('create_admin', { email: 'ops@example.com' })).action).toBe('Created admin')
    expect(auditText(entry('rotate_keys')).action).toBe('Rotate keys')
  })

  it('warns of a pool with no live worker', () => {
    expect(poolWarning({ broker: 'paper', live_workers: 2, pending_work: 9, queued_jobs: 1 })).toBeNull()
    expect(poolWarning({ broker: 'deriv', live_workers: 0, pending_work: 4, queued_jobs: 1 })).toBe(
      'No live worker while 5 items wait: start a worker_deriv process.',
    )
    expect(poolWarning({ broker: 'deriv', live_workers: 0, pending_work: 0, queued_jobs: 0 })).toMatch(/^No live worker: copies on Deriv would wait/)
  })
})

describe('pool and reaper texts', () => {
  const worker = { id: 'w1', last_heartbeat_ms_ago: 200 }

  it('says a worker\'s sessions and rate budget, or nothing for a broker without them', () => {
    const deriv = { ...worker, sessions: { connected: 1, total: 2 }, rate_budget: { available: 301, per_minute: 648, waits: 3 } }
    expect(sessionsText(deriv)).toBe('1 of 2 connected')
    expect(sessionsShort(deriv)).toBe(true)
    expect(budgetText(deriv)).toBe('301 of 648 a minute left · waited 3 times')
    expect(budgetText({ ...deriv, rate_budget: { available: 5, per_minute: 5, waits: 1 } })).toBe('5 of 5 a minute left · waited once')
    expect(budgetText({ ...deriv, rate_budget: { available: 5, per_minute: 5, waits: 0 } })).toBe('5 of 5 a minute left')
    const paper = { ...worker, sessions: null, rate_budget: null }
    expect(sessionsText(paper)).toBeNull()
    expect(sessionsShort(paper)).toBe(false)
    expect(budgetText(paper)).toBeNull()
    expect(sessionsText(worker)).toBeNull()
  })

  it('says each reaper action in a sentence', () => {
    expect(reaperText({ kind: 'recovered', subscribers: 4 })).toBe('4 claims of a dead worker taken back')
    expect(reaperText({ kind: 'reconciled', subscribers: 1 })).toBe('1 unanswered purchase looked up at the broker and recorded')
    expect(reaperText({ kind: 'expired', subscribers: 2 })).toBe('2 copies past the deadline ended as skipped (expired)')
    expect(reaperText({ kind: 'redriven', subscribers: 1200 })).toBe('1,200 waiting subscribers handed to a new drain job')
  })
})
