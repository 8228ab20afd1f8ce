/**
 * Every trade status and reason code of the contract, in words.
 *
 * One module, so the provider's feed, the subscriber's trades and the tests read the same
 * sentences. `audience` changes whose limit or pause it was: "your" for a subscriber looking at
 * its own trades, "the subscriber's" for a provider looking at its feed.
 */
import type { Limits, Outcome, PoolWorker, ReaperAction, ReaperKind, TradeStatus } from '@/api/types'
import { number, plural } from '@/lib/format'

export type Audience = 'subscriber' | 'provider'

export const STATUS_WORDS: Record<TradeStatus, string> = {
  placed: 'Placed',
  rejected: 'Rejected',
  skipped: 'Skipped',
  failed: 'Failed',
}

export const OUTCOME_WORDS: Record<Outcome, string> = {
  won: 'Won',
  lost: 'Lost',
  refund: 'Refunded',
}

const BROKER_NAMES: Record<string, string> = { paper: 'Paper', deriv: 'Deriv' }

export function brokerName(broker: string | null | undefined): string {
  if (!broker) return 'the broker'
  return BROKER_NAMES[broker] ?? broker.charAt(0).toUpperCase() + broker.slice(1)
}

/** Reasons the broker itself gives (so the sentence names the broker). */
const BROKER_REASONS = new Set([
  'insufficient_balance',
  'market_closed',
  'invalid_token',
  'rejected',
  'stake_below_minimum',
  'stake_above_maximum',
  'rate_limited',
  'broker_error',
])

interface Context {
  audience?: Audience
  broker?: string | null
  limits?: Limits | null
  currency?: string | null
}

function explain(reason: string, ctx: Context): string {
  const mine = (ctx.audience ?? 'subscriber') === 'subscriber'
  const whose = mine ? 'your' : "the subscriber's"
  const cur = ctx.currency ?? 'USD'
  const broker = brokerName(ctx.broker)
  switch (reason) {
    case 'expired':
      return "the signal's deadline passed before it could be placed"
    case 'cancelled':
      return 'the provider cancelled the signal'
    case 'paused':
      return mine ? 'your copying of this channel is paused' : 'the subscriber has paused copying'
    case 'unsubscribed':
      return mine ? 'you had left this channel' : 'the subscriber had left the channel'
    case 'insufficient_balance':
      return 'insufficient balance'
    case 'daily_loss_limit': {
      const limit = ctx.limits?.daily_loss_limit
      return limit
        ? `${whose} daily loss limit of ${limit} ${cur} was reached`
        : `${whose} daily loss limit was reached`
    }
    case 'max_trades_per_day': {
      const limit = ctx.limits?.max_trades_per_day
      return limit
        ? `${whose} limit of ${limit} trades per day was reached`
        : `${whose} maximum number of trades per day was reached`
    }
    case 'stake_below_minimum':
      return 'the stake is below its minimum'
    case 'stake_above_maximum':
      return 'the stake is above its maximum'
    case 'market_closed':
      return 'the market for this asset is closed'
    case 'invalid_token':
      return mine
        ? 'the API token was refused; add the account again with a token that has the Read and Trade scopes'
        : "the subscriber's API token was refused"
    case 'rejected':
      return 'the purchase was refused'
    case 'broker_unreachable':
      return `${broker} could not be reached in time`
    case 'not_replicated':
      return 'our database was failing over, so it was not sent (nothing was bought)'
    case 'broker_error':
      return 'it answered with an error'
    case 'rate_limited':
      return 'too many purchases in a short time (rate limit)'
    case 'account_missing':
      return mine ? 'the broker account was removed' : "the subscriber's broker account is gone"
    case 'account_unusable':
      return mine
        ? 'the broker account cannot be used; check it on your page'
        : "the subscriber's broker account cannot be used"
    case 'balance_unavailable':
      return `the balance could not be read from ${broker}`
    case 'account_removed':
      return mine ? 'its broker account was removed' : "the subscriber's broker account was removed"
    default:
      return reason.replace(/_/g, ' ')
  }
}

/**
 * "Rejected by Deriv: insufficient balance", "Skipped: your copying of this channel is paused",
 * "Placed"; `null` reason gives the status word alone.
 */
export function tradeReasonText(
  status: TradeStatus,
  reason: string | null | undefined,
  ctx: Context = {},
): string {
  const word = STATUS_WORDS[status] ?? status
  if (!reason) return word
  const by = status === 'rejected' && BROKER_REASONS.has(reason) ? ` by ${brokerName(ctx.broker)}` : ''
  return `${word}${by}: ${explain(reason, ctx)}`
}

/** The reason alone, for a table column beside a status badge ("insufficient balance"). */
export function reasonOnly(reason: string | null | undefined, ctx: Context = {}): string {
  if (!reason) return ''
  const text = explain(reason, ctx)
  return text.charAt(0).toUpperCase() + text.slice(1)
}

/** Why a subscription is stopped or paused, in words. */
export function subscriptionStateText(
  state: 'active' | 'paused' | 'stopped' | undefined,
  reason: string | null | undefined,
  limits?: Limits | null,
  currency?: string | null,
): string {
  if (state === 'active' || !state) return 'Copying every signal'
  if (state === 'paused') {
    if (reason === 'account_removed') return 'Paused: its broker account was removed'
    return 'Paused by you: signals are skipped until you resume'
  }
  switch (reason) {
    case 'daily_loss_limit':
      return `Stopped for today: ${explain('daily_loss_limit', { limits, currency })}`
    case 'max_trades_per_day':
      return `Stopped for today: ${explain('max_trades_per_day', { limits, currency })}`
    case 'account_removed':
      return 'Stopped: its broker account was removed; choose another account'
    default:
      return reason ? `Stopped: ${explain(reason, { limits, currency })}` : 'Stopped'
  }
}

/** Why a subscriber would not be copied now (GET /api/channels/{id}/readiness), in words. */
export const READINESS_WORDS = {
  paused: 'paused',
  token_refused: 'token refused at the last check',
  balance_below_stake: 'balance below the stake',
  daily_limit_reached: 'daily limit reached',
} as const

export interface ReadinessLike {
  total: number
  copyable: number
  not_copyable: Record<keyof typeof READINESS_WORDS, number>
  unchecked: number
}

export interface ReadinessText {
  /** `none`: no subscriber; `ok`: every one would be copied; `warn`: some would not. */
  level: 'none' | 'ok' | 'warn'
  headline: string
  /** "1 paused", "2 balance below the stake", ...: only the reasons that count. */
  parts: string[]
  /** "3 not checked yet", or null. */
  unchecked: string | null
  /** All of it in one sentence: what a screen reader is told when it changes. */
  sentence: string
}

/**
 * "2 of 7 subscribers would not be copied now" with the reasons, "All 7 subscribers can be copied
 * now", or "No subscriber copies this channel yet".
 */
export function readinessText(r: ReadinessLike): ReadinessText {
  const blocked = Math.max(0, r.total - r.copyable)
  const parts = (Object.keys(READINESS_WORDS) as (keyof typeof READINESS_WORDS)[])
    .filter((key) => (r.not_copyable[key] ?? 0) > 0)
    .map((key) => `${r.not_copyable[key]} ${READINESS_WORDS[key]}`)
  const unchecked = r.unchecked > 0 ? `${r.unchecked} not checked yet` : null
  let level: ReadinessText['level']
  let headline: string
  if (r.total === 0) {
    level = 'none'
    headline = 'No subscriber copies this channel yet'
  } else if (blocked > 0) {
    level = 'warn'
    headline = `${blocked} of ${r.total} ${r.total === 1 ? 'subscriber' : 'subscribers'} would not be copied now`
  } else {
    level = 'ok'
    headline = r.total === 1 ? 'The 1 subscriber can be copied now' : `All ${r.total} subscribers can be copied now`
  }
  let sentence = headline
  if (parts.length) sentence += `: ${parts.join(', ')}`
  if (unchecked) sentence += `${parts.length ? ';' : ','} ${unchecked}`
  return { level, headline, parts, unchecked, sentence: `${sentence}.` }
}

/** An operator's action in the audit log, in words: "Suspended channel", its target, its reason. */
export function auditText(entry: {
  action: string
  target_type: string
  target_id: string
  detail: Record<string, unknown>
}): { action: string; target: string; note: string | null } {
  const detail = entry.detail ?? {}
  const str = (key: string) => (typeof detail[key] === 'string' && detail[key] ? (detail[key] as string) : null)
  const reason = str('reason')
  const note = reason ? `Reason: ${reason}` : null
  switch (entry.action) {
    case 'create_admin':
      return { action: 'Created admin', target: str('email') ?? entry.target_id, note: null }
    case 'suspend_user':
      return { action: 'Suspended user', target: str('email') ?? entry.target_id, note: note ?? 'No reason given' }
    case 'unsuspend_user':
      return { action: 'Restored user', target: str('email') ?? entry.target_id, note: null }
    case 'suspend_channel':
      return { action: 'Suspended channel', target: str('name') ?? entry.target_id, note: note ?? 'No reason given' }
    case 'unsuspend_channel':
      return { action: 'Restored channel', target: str('name') ?? entry.target_id, note: null }
    case 'requeue_job': {
      const broker = str('broker')
      return { action: 'Requeued job', target: entry.target_id, note: broker ? `On the ${brokerName(broker)} queue` : null }
    }
    default: {
      const words = entry.action.replace(/_/g, ' ')
      return { action: words.charAt(0).toUpperCase() + words.slice(1), target: entry.target_id, note }
    }
  }
}

/** A worker whose last heartbeat is older than this is shown as late (they beat every second). */
export const LATE_HEARTBEAT_MS = 3000

/** "No live worker: start worker_paper" when work waits for a pool that has nobody to do it. */
export function poolWarning(pool: { broker: string; live_workers: number; pending_work: number; queued_jobs: number }): string | null {
  if (pool.live_workers > 0) return null
  const waiting = pool.pending_work + pool.queued_jobs
  const start = `start a worker_${pool.broker} process`
  return waiting > 0
    ? `No live worker while ${waiting} ${waiting === 1 ? 'item waits' : 'items wait'}: ${start}.`
    : `No live worker: copies on ${brokerName(pool.broker)} would wait; ${start}.`
}

/** The reaper's kinds of action, in a word. */
export const REAPER_WORDS: Record<ReaperKind, string> = {
  recovered: 'Recovered',
  reconciled: 'Reconciled',
  expired: 'Expired',
  redriven: 'Redriven',
}

/** What one action of the reaper did, in a sentence ("4 claims of a dead worker handed back"). */
export function reaperText(action: Pick<ReaperAction, 'kind' | 'subscribers'>): string {
  const n = action.subscribers
  switch (action.kind) {
    case 'recovered':
      return `${plural(n, 'claim')} of a dead worker taken back`
    case 'reconciled':
      return `${plural(n, 'unanswered purchase')} looked up at the broker and recorded`
    case 'expired':
      return `${plural(n, 'copy', 'copies')} past the deadline ended as skipped (expired)`
    case 'redriven':
      return `${plural(n, 'waiting subscriber')} handed to a new drain job`
    default:
      return `${plural(n, 'subscriber')} (${String(action.kind)})`
  }
}

/** A worker's broker sessions ("2 of 2 connected"); null for a broker without sessions. */
export function sessionsText(worker: PoolWorker): string | null {
  const s = worker.sessions
  if (!s) return null
  return `${number(s.connected)} of ${number(s.total)} connected`
}

/** Is a worker short of sessions (some not connected)? */
export function sessionsShort(worker: PoolWorker): boolean {
  return !!worker.sessions && worker.sessions.connected < worker.sessions.total
}

/** A worker's rate budget now ("301 of 324 a minute left · waited 3 times"); null without one. */
export function budgetText(worker: PoolWorker): string | null {
  const b = worker.rate_budget
  if (!b) return null
  const waits = b.waits ? ` · waited ${b.waits === 1 ? 'once' : `${number(b.waits)} times`}` : ''
  return `${number(b.available)} of ${number(b.per_minute)} a minute left${waits}`
}
