/**
 * The operators' console: the pools' state, the reaper's recent actions, recent failures, RQ's
 * failed jobs, users and channels found by a search, and the audit log. Each list keeps its own loading and error state, so one
 * failing endpoint leaves the others usable. Actions (suspend, restore, requeue) put the hub's
 * answer in place and re-read the audit log, where each of them is recorded.
 */
import { defineStore } from 'pinia'
import { ref } from 'vue'
import { adminApi } from '@/api'
import type {
  AdminChannel,
  AdminFailure,
  AdminOverview,
  AdminUser,
  AuditEntry,
  FailedJob,
  ReaperAction,
} from '@/api/types'

export interface Loadable<T> {
  data: T
  loading: boolean
  loaded: boolean
  error: string | null
  /** When the last answer came (ms epoch). */
  at: number | null
}

function loadable<T>(data: T): Loadable<T> {
  return { data, loading: false, loaded: false, error: null, at: null }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

async function fill<T>(target: Loadable<T>, fetch: () => Promise<T>): Promise<void> {
  target.loading = true
  try {
    target.data = await fetch()
    target.loaded = true
    target.error = null
    target.at = Date.now()
  } catch (e) {
    target.error = message(e)
  } finally {
    target.loading = false
  }
}

export const useAdminStore = defineStore('admin', () => {
  const overview = ref(loadable<AdminOverview | null>(null))
  const failures = ref(loadable<AdminFailure[]>([]))
  const reaper = ref(loadable<ReaperAction[]>([]))
  const failedJobs = ref(loadable<FailedJob[]>([]))
  const users = ref(loadable<AdminUser[]>([]))
  const channels = ref(loadable<AdminChannel[]>([]))
  const audit = ref(loadable<AuditEntry[]>([]))
  const userQuery = ref('')
  const channelQuery = ref('')
  let userSearch = 0
  let channelSearch = 0

  const loadOverview = () => fill(overview.value, adminApi.overview)
  const loadFailures = () => fill(failures.value, async () => (await adminApi.failures()).items)
  const loadReaper = () => fill(reaper.value, async () => (await adminApi.reaper()).items)
  const loadFailedJobs = () => fill(failedJobs.value, async () => (await adminApi.failedJobs()).items)
  const loadAudit = () => fill(audit.value, async () => (await adminApi.audit()).items)

  /** The latest search wins: an older answer that arrives late is dropped. */
  async function searchUsers(q = userQuery.value): Promise<void> {
    userQuery.value = q
    const mine = ++userSearch
    await fill(users.value, async () => {
      const { items } = await adminApi.users(q.trim())
      if (mine !== userSearch) return users.value.data
      return items
    })
  }

  async function searchChannels(q = channelQuery.value): Promise<void> {
    channelQuery.value = q
    const mine = ++channelSearch
    await fill(channels.value, async () => {
      const { items } = await adminApi.channels(q.trim())
      if (mine !== channelSearch) return channels.value.data
      return items
    })
  }

  function put<T extends { id: string }>(list: T[], item: T): void {
    const index = list.findIndex((x) => x.id === item.id)
    if (index === -1) list.unshift(item)
    else list.splice(index, 1, item)
  }

  function audited(): void {
    if (audit.value.loaded) void loadAudit()
  }

  /** An operator's change to a user or a channel: the answer replaces the row, the audit log reloads. */
  async function changed<T extends { id: string }>(list: () => T[], change: Promise<T>): Promise<T> {
    const item = await change
    put(list(), item)
    audited()
    return item
  }

  const suspendUser = (userId: string, reason: string): Promise<AdminUser> =>
    changed(() => users.value.data, adminApi.suspendUser(userId, reason.trim()))
  const restoreUser = (userId: string): Promise<AdminUser> => changed(() => users.value.data, adminApi.restoreUser(userId))
  const suspendChannel = (channelId: string, reason: string): Promise<AdminChannel> =>
    changed(() => channels.value.data, adminApi.suspendChannel(channelId, reason.trim()))
  const restoreChannel = (channelId: string): Promise<AdminChannel> =>
    changed(() => channels.value.data, adminApi.restoreChannel(channelId))

  /** Requeues a failed job; it leaves the failed list. */
  async function requeue(jobId: string): Promise<{ id: string; broker: string }> {
    const answer = await adminApi.requeue(jobId)
    failedJobs.value.data = failedJobs.value.data.filter((j) => j.id !== jobId)
    audited()
    return answer
  }

  function reset(): void {
    overview.value = loadable<AdminOverview | null>(null)
    failures.value = loadable<AdminFailure[]>([])
    reaper.value = loadable<ReaperAction[]>([])
    failedJobs.value = loadable<FailedJob[]>([])
    users.value = loadable<AdminUser[]>([])
    channels.value = loadable<AdminChannel[]>([])
    audit.value = loadable<AuditEntry[]>([])
    userQuery.value = ''
    channelQuery.value = ''
  }

  return {
    overview,
    failures,
    reaper,
    failedJobs,
    users,
    channels,
    audit,
    userQuery,
    channelQuery,
    loadOverview,
    loadFailures,
    loadReaper,
    loadFailedJobs,
    loadAudit,
    searchUsers,
    searchChannels,
    suspendUser,
    restoreUser,
    suspendChannel,
    restoreChannel,
    requeue,
    reset,
  }
})
