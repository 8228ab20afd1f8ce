import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { effectScope, nextTick, ref } from 'vue'
import { client } from '@/api/client'
import type { ChannelReadiness } from '@/api/types'
import { readinessText } from '@/lib/reasons'
import { json, scriptedFetch } from '@/test/http'
import { nextAnnouncement, READINESS_POLL_MS, useReadiness } from './useReadiness'
import type { Visibility } from './usePolling'

const figures = (over: Partial<ChannelReadiness> = {}): ChannelReadiness => ({
  total: 7,
  copyable: 7,
  not_copyable: { paused: 0, token_refused: 0, balance_below_stake: 0, daily_limit_reached: 0 },
  unchecked: 0,
  oldest_check_ms: null,
  at_ms: 0,
  ...over,
})

const visible: Visibility = { hidden: () => false, onChange: () => () => undefined }

describe('readinessText', () => {
  it('says how many would not be copied and why, in words', () => {
    const t = readinessText(
      figures({
        copyable: 3,
        not_copyable: { paused: 1, token_refused: 1, balance_below_stake: 2, daily_limit_reached: 0 },
        unchecked: 2,
      }),
    )
    expect(t.level).toBe('warn')
    expect(t.headline).toBe('4 of 7 subscribers would not be copied now')
    expect(t.parts).toEqual(['1 paused', '1 token refused at the last check', '2 balance below the stake'])
    expect(t.unchecked).toBe('2 not checked yet')
    expect(t.sentence).toBe(
      '4 of 7 subscribers would not be copied now: 1 paused, 1 token refused at the last check, 2 balance below the stake; 2 not checked yet.',
    )
    expect(readinessText(figures({ total: 1, copyable: 0, not_copyable: { paused: 0, token_refused: 0, balance_below_stake: 0, daily_limit_reached: 1 } })).sentence).toBe(
      '1 of 1 subscriber would not be copied now: 1 daily limit reached.',
    )
  })

  it('is quiet when every subscriber can be copied, and says when there is none', () => {
    expect(readinessText(figures()).sentence).toBe('All 7 subscribers can be copied now.')
    expect(readinessText(figures({ unchecked: 3 })).sentence).toBe('All 7 subscribers can be copied now, 3 not checked yet.')
    expect(readinessText(figures({ total: 1, copyable: 1 })).headline).toBe('The 1 subscriber can be copied now')
    const none = readinessText(figures({ total: 0, copyable: 0 }))
    expect(none.level).toBe('none')
    expect(none.headline).toBe('No subscriber copies this channel yet')
  })
})

describe('nextAnnouncement', () => {
  const ok = readinessText(figures())
  const warn = readinessText(figures({ copyable: 6, not_copyable: { paused: 1, token_refused: 0, balance_below_stake: 0, daily_limit_reached: 0 } }))
  it('says a first reading only when it warns, then only changes', () => {
    expect(nextAnnouncement(null, ok)).toBeNull()
    expect(nextAnnouncement(null, warn)).toBe(warn.sentence)
    expect(nextAnnouncement(warn, readinessText(figures({ copyable: 6, not_copyable: { paused: 1, token_refused: 0, balance_below_stake: 0, daily_limit_reached: 0 } })))).toBeNull()
    expect(nextAnnouncement(warn, ok)).toBe('All 7 subscribers can be copied now.')
    expect(nextAnnouncement(ok, ok)).toBeNull()
  })
})

describe('useReadiness', () => {
  let answers: Record<string, ChannelReadiness[]>
  let http: ReturnType<typeof scriptedFetch>

  beforeEach(() => {
    setActivePinia(createPinia())
    vi.useFakeTimers()
    client.setSession({ user: { id: 'p', email: 'p@x.io', role: 'provider', display_name: 'p' }, access_token: 'T' }, 'login')
    answers = { A: [], B: [] }
    const serve = (channel: string) => () => {
      const list = answers[channel]!
      return json(200, list.length > 1 ? list.shift() : list[0])
    }
    http = scriptedFetch({
      'GET /api/channels/A/readiness': serve('A'),
      'GET /api/channels/B/readiness': serve('B'),
    })
    vi.stubGlobal('fetch', http.fetch)
  })
  afterEach(() => {
    vi.useRealTimers()
    vi.unstubAllGlobals()
    client.setSession(null, 'logout')
  })

  const readinessCalls = () => http.calls.filter((c) => c.path.endsWith('/readiness')).map((c) => c.path.split('/')[3])

  it('polls the selected channel every 10 s and announces only a change', async () => {
    const paused = figures({ copyable: 6, not_copyable: { paused: 1, token_refused: 0, balance_below_stake: 0, daily_limit_reached: 0 } })
    answers.A = [paused, paused, paused, figures()]
    const channel = ref('A')
    const scope = effectScope()
    const r = scope.run(() => useReadiness(channel, { visibility: visible }))!
    const heard: string[] = []
    await vi.advanceTimersByTimeAsync(0)
    await nextTick()
    expect(r.text.value?.headline).toBe('1 of 7 subscribers would not be copied now')
    heard.push(r.announcement.value)
    for (let i = 0; i < 2; i++) {
      await vi.advanceTimersByTimeAsync(READINESS_POLL_MS)
      await nextTick()
      heard.push(r.announcement.value)
    }
    expect(readinessCalls()).toEqual(['A', 'A', 'A'])
    // the same figures three times: said once
    expect(new Set(heard)).toEqual(new Set(['1 of 7 subscribers would not be copied now: 1 paused.']))
    await vi.advanceTimersByTimeAsync(READINESS_POLL_MS)
    await nextTick()
    expect(r.announcement.value).toBe('All 7 subscribers can be copied now.')
    scope.stop()
    await vi.advanceTimersByTimeAsync(READINESS_POLL_MS * 3)
    expect(readinessCalls()).toHaveLength(4)
  })

  it('reads the new channel at once when the pad switches, and after a signal once the hub\'s 5 s figures ran out', async () => {
    answers.A = [figures()]
    answers.B = [figures({ total: 2, copyable: 2 })]
    const channel = ref('A')
    const scope = effectScope()
    const r = scope.run(() => useReadiness(channel, { visibility: visible }))!
    await vi.advanceTimersByTimeAsync(0)
    expect(r.announcement.value).toBe('') // all fine at first: nothing to say
    channel.value = 'B'
    await nextTick()
    await vi.advanceTimersByTimeAsync(0)
    expect(readinessCalls()).toEqual(['A', 'B'])
    expect(r.text.value?.headline).toBe('All 2 subscribers can be copied now')
    await vi.advanceTimersByTimeAsync(1000)
    r.afterSignal()
    await vi.advanceTimersByTimeAsync(4000)
    expect(readinessCalls()).toEqual(['A', 'B'])
    await vi.advanceTimersByTimeAsync(200)
    expect(readinessCalls()).toEqual(['A', 'B', 'B'])
    scope.stop()
  })

  it('keeps quiet about a failed read and keeps polling', async () => {
    vi.stubGlobal('fetch', scriptedFetch({
      'GET /api/channels/A/readiness': () => json(503, { error: { code: 'unavailable', message: 'Busy.' } }),
    }).fetch)
    const scope = effectScope()
    const r = scope.run(() => useReadiness(ref('A'), { visibility: visible }))!
    await vi.advanceTimersByTimeAsync(0)
    expect(r.error.value).toBe('Busy.')
    expect(r.text.value).toBeNull()
    expect(r.announcement.value).toBe('')
    scope.stop()
  })
})
