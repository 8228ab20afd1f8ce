/**
 * The subscriber's side: its subscriptions, broker accounts, own trades (live through the
 * `/subscriber` socket, deduplicated by `trade_id`) and its P/L.
 */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { subscriberApi } from '@/api'
import type {
  BrokerAccount,
  BrokerAccountInput,
  ExecutionEvent,
  Limits,
  MyPerformance,
  SettlementEvent,
  Stake,
  SubscribeInput,
  Subscription,
  SubscriptionPatch,
  Trade,
} from '@/api/types'

const KEEP_TRADES = 500
const DETAILS_DELAY_MS = 800

/** A trade row built from a live event before the stored record (asset, direction) is fetched. */
export function tradeFromEvent(event: ExecutionEvent): Trade {
  return {
    id: event.trade_id,
    trade_id: event.trade_id,
    signal_id: event.signal_id,
    channel_id: event.channel_id ?? '',
    subscription_id: null,
    subscriber_id: event.subscriber_id,
    broker: event.broker,
    asset: event.asset ?? '',
    direction: event.direction ?? 'CALL',
    expiry_seconds: event.expiry_seconds ?? 0,
    status: event.status,
    reason: event.reason ?? null,
    contract_id: event.contract_id ?? null,
    stake: event.stake ?? null,
    payout: event.payout ?? null,
    latency_ms: event.latency_ms,
    outcome: null,
    profit: null,
    created_at: new Date().toISOString(),
    settled_at: null,
  }
}

export const useSubscriberStore = defineStore('subscriber', () => {
  const subscriptions = ref<Subscription[]>([])
  const accounts = ref<BrokerAccount[]>([])
  const trades = ref<Trade[]>([])
  const performance = ref<MyPerformance | null>(null)
  const loaded = ref(false)
  const loading = ref(false)
  const error = ref<string | null>(null)
  /** Trades that arrived live and still miss their stored details. */
  const partial = new Set<string>()
  const earlySettlements = new Map<string, SettlementEvent>()
  let detailsTimer: ReturnType<typeof setTimeout> | null = null

  const byChannel = computed(() => new Map(subscriptions.value.map((s) => [s.channel_id, s])))
  const accountById = computed(() => new Map(accounts.value.map((a) => [a.id, a])))

  async function load(): Promise<void> {
    loading.value = true
    error.value = null
    try {
      const [subs, accs, mine] = await Promise.all([
        subscriberApi.subscriptions(),
        subscriberApi.accounts(),
        subscriberApi.trades(200),
      ])
      subscriptions.value = subs.items
      accounts.value = accs.items
      mergeTrades(mine.items)
      loaded.value = true
    } catch (e) {
      error.value = e instanceof Error ? e.message : String(e)
      throw e
    } finally {
      loading.value = false
    }
    await loadPerformance()
  }

  async function loadPerformance(): Promise<void> {
    try {
      performance.value = await subscriberApi.performance()
    } catch {
      performance.value = null // older hub: the page sums the trades it has instead
    }
  }

  async function loadAccounts(): Promise<BrokerAccount[]> {
    accounts.value = (await subscriberApi.accounts()).items
    return accounts.value
  }

  async function loadSubscriptions(): Promise<Subscription[]> {
    subscriptions.value = (await subscriberApi.subscriptions()).items
    return subscriptions.value
  }

  /** Stored records replace live rows of the same `trade_id`, newest first. */
  function mergeTrades(records: Trade[]): void {
    const index = new Map(trades.value.map((t) => [t.trade_id, t]))
    for (const record of records) {
      const live = index.get(record.trade_id)
      index.set(record.trade_id, {
        ...record,
        // a settlement seen live before the record was written
        outcome: record.outcome ?? live?.outcome ?? null,
        profit: record.profit ?? live?.profit ?? null,
      })
      partial.delete(record.trade_id)
    }
    trades.value = [...index.values()]
      .sort((a, b) => (a.created_at < b.created_at ? 1 : -1))
      .slice(0, KEEP_TRADES)
  }

  function scheduleDetails(): void {
    if (detailsTimer) return
    detailsTimer = setTimeout(async () => {
      detailsTimer = null
      try {
        mergeTrades((await subscriberApi.trades(Math.max(50, partial.size + 20))).items)
      } catch {
        // the live rows stay as they are
      }
      void loadPerformance()
    }, DETAILS_DELAY_MS)
  }

  function ingestExecutions(data: ExecutionEvent | ExecutionEvent[]): void {
    const list = Array.isArray(data) ? data : [data]
    const known = new Set(trades.value.map((t) => t.trade_id))
    const fresh: Trade[] = []
    for (const event of list) {
      if (!event.trade_id || known.has(event.trade_id)) continue
      known.add(event.trade_id)
      const trade = tradeFromEvent(event)
      const early = earlySettlements.get(event.trade_id)
      if (early) {
        trade.outcome = early.outcome
        trade.profit = early.profit
        earlySettlements.delete(event.trade_id)
      }
      partial.add(trade.trade_id)
      fresh.push(trade)
    }
    if (fresh.length) {
      trades.value = [...fresh.reverse(), ...trades.value].slice(0, KEEP_TRADES)
      scheduleDetails()
    }
  }

  function ingestSettlements(data: SettlementEvent | SettlementEvent[]): void {
    const list = Array.isArray(data) ? data : [data]
    let changed = false
    for (const event of list) {
      const trade = trades.value.find((t) => t.trade_id === event.trade_id)
      if (!trade) {
        earlySettlements.set(event.trade_id, event)
        continue
      }
      if (trade.outcome) continue
      trade.outcome = event.outcome
      trade.profit = event.profit
      trade.settled_at = new Date().toISOString()
      changed = true
    }
    if (changed) scheduleDetails()
  }

  async function addAccount(input: BrokerAccountInput): Promise<BrokerAccount> {
    const account = await subscriberApi.addAccount(input)
    accounts.value = [...accounts.value.filter((a) => a.id !== account.id), account]
    return account
  }

  async function checkAccount(accountId: string): Promise<BrokerAccount> {
    const account = await subscriberApi.checkAccount(accountId)
    accounts.value = accounts.value.map((a) => (a.id === account.id ? account : a))
    return account
  }

  /** Without `confirm`, an account in use answers 409 `account_in_use` (the page asks first). */
  async function removeAccount(accountId: string, confirm = false): Promise<void> {
    await subscriberApi.removeAccount(accountId, confirm)
    accounts.value = accounts.value.filter((a) => a.id !== accountId)
    if (confirm) await loadSubscriptions()
  }

  async function subscribe(channelId: string, input: SubscribeInput): Promise<Subscription> {
    const sub = await subscriberApi.subscribe(channelId, input)
    subscriptions.value = [...subscriptions.value.filter((s) => s.id !== sub.id), sub]
    return sub
  }

  async function update(subscriptionId: string, patch: SubscriptionPatch): Promise<Subscription> {
    const sub = await subscriberApi.updateSubscription(subscriptionId, patch)
    subscriptions.value = subscriptions.value.map((s) => (s.id === sub.id ? { ...s, ...sub } : s))
    return sub
  }

  const setPaused = (subscriptionId: string, paused: boolean) => update(subscriptionId, { paused })
  const setStake = (subscriptionId: string, stake: Stake, limits: Limits) =>
    update(subscriptionId, { stake, limits })

  async function leave(subscriptionId: string): Promise<void> {
    await subscriberApi.leave(subscriptionId)
    subscriptions.value = subscriptions.value.filter((s) => s.id !== subscriptionId)
  }

  /** P/L from the trades in hand, when the hub has no /api/me/performance. */
  const localPerformance = computed<MyPerformance>(() => {
    const settled = trades.value.filter((t) => t.outcome)
    let running = 0
    const equity = [...settled]
      .sort((a, b) => ((a.settled_at ?? a.created_at) < (b.settled_at ?? b.created_at) ? -1 : 1))
      .map((t) => {
        running += t.profit ?? 0
        return { t: t.settled_at ?? t.created_at, pnl: Number(running.toFixed(2)) }
      })
    return {
      trades: trades.value.length,
      placed: trades.value.filter((t) => t.status === 'placed').length,
      settled: settled.length,
      won: settled.filter((t) => t.outcome === 'won').length,
      lost: settled.filter((t) => t.outcome === 'lost').length,
      refund: settled.filter((t) => t.outcome === 'refund').length,
      pnl: settled.reduce((sum, t) => sum + (t.profit ?? 0), 0),
      staked: settled.reduce((sum, t) => sum + (t.stake ?? 0), 0),
      equity,
    }
  })

  function reset(): void {
    subscriptions.value = []
    accounts.value = []
    trades.value = []
    performance.value = null
    loaded.value = false
    partial.clear()
    earlySettlements.clear()
  }

  return {
    subscriptions,
    accounts,
    trades,
    performance,
    localPerformance,
    loaded,
    loading,
    error,
    byChannel,
    accountById,
    load,
    loadAccounts,
    loadSubscriptions,
    loadPerformance,
    mergeTrades,
    ingestExecutions,
    ingestSettlements,
    addAccount,
    checkAccount,
    removeAccount,
    subscribe,
    update,
    setPaused,
    setStake,
    leave,
    reset,
  }
})
