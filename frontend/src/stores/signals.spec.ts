import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import { ref } from 'vue'
import type { NamespaceConnection } from '@/composables/sockets'
import { setFeedScheduler, useFeedStore } from './feed'
import { setSignalConnection, useSignalsStore } from './signals'

function fakeConnection(answers: ((event: string, data: Record<string, unknown>) => unknown)[]) {
  const sent: { event: string; data: Record<string, unknown> }[] = []
  const connection: NamespaceConnection = {
    namespace: '/provider',
    state: ref('connected'),
    error: ref(null),
    start: vi.fn(),
    stop: vi.fn(),
    on: vi.fn(),
    renew: vi.fn(async () => true),
    call: vi.fn(async (event: string, data: unknown) => {
      sent.push({ event, data: data as Record<string, unknown> })
      const answer = answers.shift()
      if (!answer) throw new Error('no answer scripted')
      return answer(event, data as Record<string, unknown>)
    }) as NamespaceConnection['call'],
  }
  return { connection, sent }
}

const order = { channel_id: 'C', asset: 'EURUSD', direction: 'CALL' as const, expiry_seconds: 60, max_delay_ms: 2000 }
const ok = (_e: string, d: Record<string, unknown>) => ({ ok: true, signal_id: `sig-${String(d.client_signal_id).slice(0, 4)}`, fanout: { total: 5, by_broker: { paper: 5 } } })

describe('signals store', () => {
  beforeEach(() => {
    setActivePinia(createPinia())
    setFeedScheduler((run) => run())
  })

  it('sends every click with a fresh client_signal_id and follows its feed', async () => {
    const { connection, sent } = fakeConnection([ok, ok])
    setSignalConnection(connection)
    const signals = useSignalsStore()
    const first = await signals.send(order)
    const second = await signals.send({ ...order, direction: 'PUT' })
    expect(sent).toHaveLength(2)
    expect(sent[0]!.data.client_signal_id).not.toBe(sent[1]!.data.client_signal_id)
    expect(String(sent[0]!.data.client_signal_id)).toMatch(/^[0-9a-f-]{36}$/)
    expect(first.state).toBe('active')
    expect(second.fanout?.total).toBe(5)
    expect(useFeedStore().currentId).toBe(second.signalId)
    expect(signals.cancellable).toBe(true)
    expect(signals.recent.C).toHaveLength(2)
  })

  it('resends with the SAME client_signal_id after a token_expired refusal', async () => {
    const { connection, sent } = fakeConnection([
      () => ({ ok: false, error: { code: 'token_expired', message: 'The token has expired.' } }),
      ok,
    ])
    setSignalConnection(connection)
    const sent1 = await useSignalsStore().send(order)
    expect(connection.renew).toHaveBeenCalledOnce()
    expect(sent).toHaveLength(2)
    expect(sent[1]!.data.client_signal_id).toBe(sent[0]!.data.client_signal_id)
    expect(sent1.state).toBe('active')
  })

  it('shows the refusal in words', async () => {
    const { connection } = fakeConnection([
      () => ({ ok: false, error: { code: 'forbidden', message: 'You may not send to this channel.' } }),
    ])
    setSignalConnection(connection)
    const result = await useSignalsStore().send(order)
    expect(result.state).toBe('failed')
    expect(result.error).toBe('You may not send to this channel.')
  })

  it('schedules with `at`, cancels, and reports what the cancel stopped', async () => {
    const at = new Date(Date.now() + 3_600_000).toISOString()
    const { connection, sent } = fakeConnection([
      () => ({ ok: true, signal_id: 'S9', status: 'scheduled', fanout: { total: 0, by_broker: {} } }),
      () => ({ ok: true, signal_id: 'S9', cancellable: 7 }),
    ])
    setSignalConnection(connection)
    const signals = useSignalsStore()
    const result = await signals.send({ ...order, at })
    expect(sent[0]!.data.at).toBe(at)
    expect(result.state).toBe('scheduled')
    expect(signals.cancellable).toBe(true)
    await signals.cancel()
    expect(sent[1]).toEqual({ event: 'cancel', data: { signal_id: 'S9' } })
    expect(signals.current?.state).toBe('cancelled')
    expect(signals.current?.stopped).toBe(7)
    expect(signals.cancellable).toBe(false)
  })
})
