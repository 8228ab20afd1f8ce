/**
 * Sending signals and the history of each channel: the pad's current signal (its ack, cancel and
 * what the cancel stopped) and the recent signals with their per-status counts.
 */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { signalsApi } from '@/api'
import type { CancelAck, Direction, Fanout, Signal, SignalAck } from '@/api/types'
import { providerConnection, type NamespaceConnection } from '@/composables/sockets'
import { useFeedStore } from './feed'

export interface SignalOrder {
  channel_id: string
  asset: string
  direction: Direction
  expiry_seconds: number
  /** ISO-8601 with a zone: schedules the signal. */
  at?: string
  /** The channel's maximum delay: how long after sending a cancel can still stop something. */
  max_delay_ms?: number
}

export type SentState = 'sending' | 'active' | 'scheduled' | 'cancelling' | 'cancelled' | 'failed'

export interface SentSignal {
  clientSignalId: string
  order: SignalOrder
  state: SentState
  signalId: string | null
  fanout: Fanout | null
  error: string | null
  errorCode: string | null
  /** Purchases the cancel stopped. */
  stopped: number | null
  sentAt: number
  /** Until when a cancel may still stop purchases (ms epoch). */
  cancellableUntil: number
}

let connection: NamespaceConnection = providerConnection

/** Tests give a connection of their own. */
export function setSignalConnection(next: NamespaceConnection): void {
  connection = next
}

function newClientSignalId(): string {
  if (typeof crypto !== 'undefined' && 'randomUUID' in crypto) return crypto.randomUUID()
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`
}

const RETRYABLE = new Set(['token_expired'])

function waitConnected(timeoutMs: number): Promise<boolean> {
  if (connection.state.value === 'connected') return Promise.resolve(true)
  return new Promise((resolve) => {
    const started = Date.now()
    const timer = setInterval(() => {
      if (connection.state.value === 'connected') {
        clearInterval(timer)
        resolve(true)
      } else if (Date.now() - started > timeoutMs) {
        clearInterval(timer)
        resolve(false)
      }
    }, 100)
  })
}

export const useSignalsStore = defineStore('signals', () => {
  const current = ref<SentSignal | null>(null)
  const recent = ref<Record<string, Signal[]>>({})
  const recentLoading = ref<Record<string, boolean>>({})
  const recentError = ref<Record<string, string | null>>({})
  const now = ref(Date.now())
  let ticker: ReturnType<typeof setInterval> | null = null

  function tick(): void {
    if (ticker) return
    ticker = setInterval(() => {
      now.value = Date.now()
      if (!cancellable.value && ticker) {
        clearInterval(ticker)
        ticker = null
      }
    }, 250)
  }

  const cancellable = computed(() => {
    const sent = current.value
    if (!sent || !sent.signalId) return false
    if (sent.state === 'scheduled') return true
    return sent.state === 'active' && now.value < sent.cancellableUntil
  })

  /** Sends the signal with a fresh `client_signal_id`; a resend after a reconnect reuses it. */
  async function send(order: SignalOrder): Promise<SentSignal> {
    const sent: SentSignal = {
      clientSignalId: newClientSignalId(),
      order,
      state: 'sending',
      signalId: null,
      fanout: null,
      error: null,
      errorCode: null,
      stopped: null,
      sentAt: Date.now(),
      cancellableUntil: 0,
    }
    current.value = sent
    const payload = {
      channel_id: order.channel_id,
      asset: order.asset,
      direction: order.direction,
      expiry_seconds: order.expiry_seconds,
      client_signal_id: sent.clientSignalId,
      ...(order.at ? { at: order.at } : {}),
    }
    let ack: SignalAck | null = null
    for (let attempt = 0; attempt < 2 && ack === null; attempt++) {
      try {
        const answer = await connection.call<SignalAck>('signal', payload)
        if (!answer.ok && RETRYABLE.has(answer.error.code) && attempt === 0) {
          await connection.renew()
          await waitConnected(5000)
          continue
        }
        ack = answer
      } catch {
        // no answer (timeout, connection lost): the same client_signal_id again cannot copy twice
        if (attempt === 0 && (await waitConnected(5000))) continue
        ack = {
          ok: false,
          error: { code: 'no_answer', message: 'The hub did not answer. Check the connection and try again.' },
        }
      }
    }
    const target = current.value?.clientSignalId === sent.clientSignalId ? current.value : sent
    if (!ack || !ack.ok) {
      target.state = 'failed'
      target.error = ack && !ack.ok ? ack.error.message : 'The signal was not taken.'
      target.errorCode = ack && !ack.ok ? ack.error.code : null
      return target
    }
    target.signalId = ack.signal_id
    target.fanout = ack.fanout
    const delay = order.max_delay_ms ?? 2000
    if (ack.status === 'scheduled') {
      target.state = 'scheduled'
      target.cancellableUntil = order.at ? new Date(order.at).getTime() + delay : Date.now() + delay
    } else {
      target.state = 'active'
      target.cancellableUntil = sent.sentAt + delay
    }
    useFeedStore().follow(ack.signal_id, ack.fanout?.total ?? null)
    addRecent(order, ack.signal_id, target)
    tick()
    return target
  }

  async function cancel(): Promise<void> {
    const sent = current.value
    if (!sent?.signalId) return
    const before = sent.state
    sent.state = 'cancelling'
    try {
      const ack = await connection.call<CancelAck>('cancel', { signal_id: sent.signalId })
      if (ack.ok) {
        sent.state = 'cancelled'
        sent.stopped = ack.cancellable
        const list = recent.value[sent.order.channel_id]
        const row = list?.find((s) => s.id === sent.signalId)
        if (row) row.status = 'cancelled'
      } else {
        sent.state = before
        sent.error = ack.error.message
      }
    } catch {
      sent.state = before
      sent.error = 'The hub did not answer the cancel. Try again.'
    }
  }

  function dismiss(): void {
    current.value = null
  }

  function addRecent(order: SignalOrder, signalId: string, sent: SentSignal): void {
    const list = recent.value[order.channel_id] ?? []
    if (list.some((s) => s.id === signalId)) return
    const now = new Date(sent.sentAt).toISOString()
    const row: Signal = {
      id: signalId,
      channel_id: order.channel_id,
      sender_id: null,
      asset: order.asset,
      direction: order.direction,
      expiry_seconds: order.expiry_seconds,
      client_signal_id: sent.clientSignalId,
      created_at: now,
      deadline_at: null,
      scheduled_at: order.at ?? null,
      status: sent.state === 'scheduled' ? 'scheduled' : 'active',
      fanout: sent.fanout,
      counts: { placed: 0, rejected: 0, skipped: 0, failed: 0, won: 0, lost: 0, refund: 0 },
    }
    recent.value = { ...recent.value, [order.channel_id]: [row, ...list].slice(0, 50) }
  }

  async function loadRecent(channelId: string, limit = 20): Promise<void> {
    recentLoading.value = { ...recentLoading.value, [channelId]: true }
    try {
      const { items } = await signalsApi.list(channelId, limit)
      recent.value = { ...recent.value, [channelId]: items }
      recentError.value = { ...recentError.value, [channelId]: null }
    } catch (e) {
      recentError.value = { ...recentError.value, [channelId]: e instanceof Error ? e.message : String(e) }
    } finally {
      recentLoading.value = { ...recentLoading.value, [channelId]: false }
    }
  }

  function reset(): void {
    current.value = null
    recent.value = {}
  }

  return {
    current,
    recent,
    recentLoading,
    recentError,
    cancellable,
    now,
    send,
    cancel,
    dismiss,
    loadRecent,
    reset,
  }
})
