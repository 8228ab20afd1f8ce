/** The shapes of docs/api.md, as the web app reads them. */

export type Role = 'provider' | 'subscriber' | 'admin'
export type Direction = 'CALL' | 'PUT'
export type TradeStatus = 'placed' | 'rejected' | 'skipped' | 'failed'
export type Outcome = 'won' | 'lost' | 'refund'
export type BrokerName = string

export interface User {
  id: string
  email: string
  role: Role
  display_name: string | null
}

export interface Session {
  user: User
  access_token: string
  refresh_token?: string
}

export interface ErrorBody {
  error: { code: string; message: string }
}

export interface LatencyFigures {
  p50: number | null
  p99: number | null
  samples?: number
}

export interface ChannelStats {
  signals: number
  subscribers: number
  settled_trades?: number
  win_rate: number | null
  pnl?: number
}

/** A trader the owner named: by email (docs/api.md); older hubs also gave the user's id and name. */
export interface Trader {
  email: string
  user_id?: string
  display_name?: string | null
}

export interface Channel {
  id: string
  name: string
  description: string
  provider_id: string
  provider_name: string | null
  assets: string[] | null
  max_signal_delay_ms: number
  created_at: string
  brokers?: string[]
  stats?: ChannelStats
  traders?: Trader[] | string[]
  my_role?: 'owner' | 'trader'
}

export interface ChannelInput {
  name: string
  description?: string
  assets?: string[] | null
  max_signal_delay_ms?: number
}

export type Stake = { mode: 'fixed'; amount: number } | { mode: 'percent'; percent: number }

export interface Limits {
  max_stake?: number | null
  daily_loss_limit?: number | null
  max_trades_per_day?: number | null
}

export interface ChannelSubscriber {
  subscription_id: string
  subscriber: string
  broker: string
  stake: Stake
  limits: Limits
  paused: boolean
  since: string
}

export interface ChannelSubscribers {
  counts: { active: number; paused: number; total: number }
  items: ChannelSubscriber[]
}

export interface AssetResult {
  asset: string
  signals: number
  won: number
  lost: number
  refund: number
  win_rate: number | null
  pnl?: number
  /** Public pages: the result of 1 unit staked on each settled signal, per signal. */
  result_per_unit?: number | null
  result?: number
}

export interface EquityPoint {
  t: string
  pnl?: number
  result?: number
}

export interface ChannelPerformance {
  signals: number
  settled_signals: number
  win_rate: number | null
  pnl: number
  staked: number
  roi: number | null
  /** docs/api.md says a number; the hub answers `{active, paused, total}`. */
  subscribers: number | { active: number; paused: number; total: number }
  latency_ms: LatencyFigures
  equity: EquityPoint[]
  by_asset: AssetResult[]
}

export interface SignalCounts {
  placed: number
  rejected: number
  skipped: number
  failed: number
  won: number
  lost: number
  refund: number
}

export interface Fanout {
  total: number
  by_broker: Record<string, number>
}

export interface Signal {
  id: string
  channel_id: string
  sender_id: string | null
  asset: string
  direction: Direction
  expiry_seconds: number
  client_signal_id: string | null
  created_at: string
  deadline_at: string | null
  scheduled_at: string | null
  status: 'active' | 'scheduled' | 'cancelled'
  fanout: Fanout | null
  counts: SignalCounts
}

export interface Trade {
  id: string
  trade_id: string
  signal_id: string
  channel_id: string
  channel_name?: string | null
  subscription_id: string | null
  subscriber_id: string
  subscriber_name?: string | null
  broker: string
  asset: string
  direction: Direction
  expiry_seconds: number
  status: TradeStatus
  reason: string | null
  contract_id: string | null
  stake: number | null
  payout: number | null
  latency_ms: number | null
  outcome: Outcome | null
  profit: number | null
  created_at: string
  settled_at: string | null
}

export interface PublicChannel {
  id: string
  name: string
  description: string
  provider_name: string | null
  created_at: string
  assets: string[] | null
  brokers: string[]
  copiers: number
  settled_signals: number
  win_rate: number | null
  result_per_unit: number | null
  track_record_days: number | null
  first_signal_at: string | null
  score: number | null
  ranked: boolean
}

export interface PublicChannelPage extends PublicChannel {
  equity: EquityPoint[]
  by_asset: AssetResult[]
  latency_ms: LatencyFigures
}

export interface PublicSignal {
  id: string
  asset: string
  direction: Direction
  expiry_seconds: number
  created_at: string
  expires_at: string
  outcome: Outcome
  result: number
}

export type AccountHealthStatus = 'ok' | 'refused' | 'unchecked' | 'unreachable'

export interface BrokerAccount {
  id: string
  broker: string
  label: string | null
  currency: string
  created_at: string
  balance?: number | null
  health?: { status: AccountHealthStatus; checked_at: string | null; message: string | null }
}

export type BrokerAccountInput =
  | { broker: 'paper'; label?: string; starting_balance?: number }
  | { broker: 'deriv'; label?: string; credentials: { token: string } }

export interface Subscription {
  id: string
  channel_id: string
  channel_name?: string | null
  provider_name?: string | null
  user_id: string
  broker_account_id: string
  broker: string
  stake: Stake
  limits: Limits
  paused: boolean
  state?: 'active' | 'paused' | 'stopped'
  state_reason?: string | null
  paused_reason?: string | null
  /** What counts toward today's limits (UTC day): trades placed and the loss so far. */
  today?: { trades: number; loss: number }
  created_at: string
  updated_at: string
}

export interface SubscribeInput {
  broker_account_id: string
  stake: Stake
  limits?: Limits
}

export interface SubscriptionPatch {
  paused?: boolean
  stake?: Stake
  limits?: Limits
  broker_account_id?: string
}

export interface MyPerformance {
  trades: number
  placed: number
  settled: number
  won: number
  lost: number
  refund: number
  pnl: number
  staked: number
  equity: EquityPoint[]
}

export interface BrokerInfo {
  name: string
  min_stake: number
  max_stake: number
  min_expiry_s: number
  max_expiry_s: number
  currency: string
  credential_fields: string[]
  assets: string[]
}

export type AssetsByBroker = Record<string, string[]>

/** Socket.IO events. */
export interface ExecutionEvent {
  signal_id: string
  trade_id: string
  subscriber_id: string
  subscriber_name?: string | null
  broker: string
  status: TradeStatus
  reason?: string | null
  contract_id?: string | null
  stake?: number | null
  payout?: number | null
  latency_ms: number | null
  channel_id?: string
  asset?: string
  direction?: Direction
  expiry_seconds?: number
}

export interface SettlementEvent {
  signal_id: string
  trade_id: string
  outcome: Outcome
  profit: number
}

export interface SignalRequest {
  channel_id: string
  asset: string
  direction: Direction
  expiry_seconds: number
  client_signal_id: string
  at?: string
}

export type SignalAck =
  | { ok: true; signal_id: string; status?: 'scheduled'; fanout: Fanout }
  | { ok: false; error: { code: string; message: string } }

export type CancelAck =
  | { ok: true; signal_id: string; cancellable: number }
  | { ok: false; error: { code: string; message: string } }

/** GET /api/channels/{id}/readiness: who would not be copied if a signal went now, and why. */
export interface NotCopyable {
  paused: number
  token_refused: number
  balance_below_stake: number
  daily_limit_reached: number
}

export interface ChannelReadiness {
  channel_id?: string
  total: number
  copyable: number
  not_copyable: NotCopyable
  /** Subscribers whose account no worker has checked yet (not counted as misses). */
  unchecked: number
  /** When the oldest account check was made (ms epoch), null when none was. */
  oldest_check_ms: number | null
  at_ms: number
}

/** Operators' console (docs/api.md, "Operators"). */
export interface CopyCounts {
  placed: number
  rejected: number
  skipped: number
  failed: number
}

/** A broker's persistent sessions (Deriv), as a worker recorded them with its heartbeat. */
export interface WorkerSessions {
  connected: number
  total: number
}

/** Purchases the worker's rate budgets allow right now, of their per-minute total. */
export interface WorkerRateBudget {
  available: number
  per_minute: number
  /** Waits for budget since the worker started: ours, or the broker's own RateLimit. */
  waits: number
}

export interface PoolWorker {
  id: string
  last_heartbeat_ms_ago: number
  host?: string | null
  pid?: number | null
  /** Where the worker serves its own /metrics; null when it serves none. */
  metrics_port?: number | null
  draining?: number
  health_checked?: number
  /** null for a broker without sessions (paper). */
  sessions?: WorkerSessions | null
  rate_budget?: WorkerRateBudget | null
  reconnects?: number | null
}

export interface BrokerPool {
  broker: string
  pending_work: number
  queued_jobs: number
  live_workers: number
  workers: PoolWorker[]
  copies: { last_minute: CopyCounts; last_hour: CopyCounts }
  latency_ms: LatencyFigures
}

export interface AdminOverview {
  brokers: BrokerPool[]
  active_fanouts: number
  at: string
}

export interface AdminFailure {
  trade_id: string
  signal_id: string
  channel_id: string
  subscriber_id: string
  broker: string
  status: TradeStatus
  reason: string | null
  latency_ms: number | null
  created_at: string
}

export type ReaperKind = 'recovered' | 'reconciled' | 'expired' | 'redriven'

/** One thing the reaper did to one signal's subscribers on one broker. */
export interface ReaperAction {
  kind: ReaperKind
  signal_id: string
  broker: string
  subscribers: number
  /** The dead worker whose claims were recovered. */
  worker: string | null
  at: string
}

export interface FailedJob {
  id: string
  broker: string
  description: string | null
  error: string | null
  ended_at: string | null
}

/** Who suspended a user or a channel, when and why. */
export interface Suspension {
  at: string
  by: string
  reason: string
}

export interface AdminUser {
  id: string
  email: string
  role: Role
  display_name: string | null
  created_at: string
  suspended: Suspension | null
}

export interface AdminChannel {
  id: string
  name: string
  provider_id: string
  created_at: string
  suspended: Suspension | null
}

export interface AuditEntry {
  id: string
  at: string
  actor_id: string
  actor_email: string
  action: string
  target_type: string
  target_id: string
  detail: Record<string, unknown>
}
