import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import type { Channel } from '@/api/types'
import { FeedAggregator } from '@/lib/feed'
import { readinessText } from '@/lib/reasons'
import FeedSummary from './FeedSummary.vue'
import ReadinessNote from './ReadinessNote.vue'
import SignalPad from './SignalPad.vue'

const channel: Channel = {
  id: 'C', name: 'Majors', description: '', provider_id: 'p', provider_name: 'P', assets: ['EURUSD', 'GBPUSD'],
  max_signal_delay_ms: 2000, created_at: '',
}

describe('FeedSummary', () => {
  it('says the counts in words', () => {
    const feed = new FeedAggregator('S', 6)
    for (let i = 0; i < 5; i++) feed.applyExecution({ signal_id: 'S', trade_id: `t${i}`, subscriber_id: `u${i}`, broker: 'paper', status: 'placed', latency_ms: 100 + i })
    feed.applyExecution({ signal_id: 'S', trade_id: 'x', subscriber_id: 'x', broker: 'deriv', status: 'rejected', reason: 'insufficient_balance', latency_ms: 300 })
    const wrapper = mount(FeedSummary, { props: { summary: feed.summary() } })
    const items = wrapper.findAll('li').map((li) => li.text())
    expect(items).toEqual(['5 placed', '1 rejected', '0 skipped', '0 failed', 'of 6'])
    expect(wrapper.text()).toContain('Every copy has answered.')
    expect(wrapper.text()).toContain('Latency p99')
  })
})

describe('SignalPad', () => {
  function pad(connected = true) {
    return mount(SignalPad, {
      attachTo: document.body,
      props: {
        channels: [channel],
        assetsFor: (c: Channel | undefined) => c?.assets ?? [],
        connected,
        busy: false,
        channelId: 'C',
      },
    })
  }

  it('sends CALL on the C key, but not while typing in a field', async () => {
    const wrapper = pad()
    window.dispatchEvent(new KeyboardEvent('keydown', { key: 'c' }))
    expect(wrapper.emitted('send')?.[0]?.[0]).toMatchObject({ channel_id: 'C', asset: 'EURUSD', direction: 'CALL', expiry_seconds: 60 })
    await wrapper.find('#pad-schedule').setValue(true)
    const at = wrapper.find('#pad-at')
    at.element.dispatchEvent(new KeyboardEvent('keydown', { key: 'p', bubbles: true }))
    expect(wrapper.emitted('send')).toHaveLength(1)
    wrapper.unmount()
  })

  it('disables CALL and PUT while disconnected', () => {
    const wrapper = pad(false)
    const buttons = wrapper.findAll('button.btn-direction')
    expect(buttons.map((b) => b.attributes('aria-label'))).toEqual(['CALL', 'PUT'])
    expect(buttons.every((b) => b.attributes('disabled') !== undefined)).toBe(true)
    window.dispatchEvent(new KeyboardEvent('keydown', { key: 'p' }))
    expect(wrapper.emitted('send')).toBeUndefined()
    wrapper.unmount()
  })

  it('asks first when "Ask before sending" is on', async () => {
    const wrapper = pad()
    await wrapper.find('#pad-confirm').setValue(true)
    await wrapper.findAll('button.btn-direction')[1]!.trigger('click')
    expect(wrapper.emitted('send')).toBeUndefined()
    expect(wrapper.text()).toContain('Send PUT EURUSD, 1 min, to Majors?')
    await wrapper.find('.alert button').trigger('click')
    expect(wrapper.emitted('send')?.[0]?.[0]).toMatchObject({ direction: 'PUT' })
    localStorage.clear()
    wrapper.unmount()
  })
})

describe('ReadinessNote', () => {
  const base = {
    total: 4, copyable: 3, unchecked: 1, oldest_check_ms: Date.now() - 3 * 60_000, at_ms: Date.now(),
    not_copyable: { paused: 0, token_refused: 1, balance_below_stake: 0, daily_limit_reached: 0 },
  }

  it('warns in words beside the buttons and says in its live region only what it is given', async () => {
    const text = readinessText(base)
    const wrapper = mount(ReadinessNote, { props: { id: 'r', readiness: base, text, announcement: '', now: Date.now() } })
    expect(wrapper.find('#r strong').text()).toBe('1 of 4 subscribers would not be copied now')
    expect(wrapper.findAll('li').map((li) => li.text())).toEqual(['1 token refused at the last check', '1 not checked yet'])
    expect(wrapper.text()).toContain('the oldest 3 min ago')
    expect(wrapper.find('[aria-live=polite]').text()).toBe('')
    await wrapper.setProps({ announcement: text.sentence })
    expect(wrapper.find('[aria-live=polite]').text()).toBe(text.sentence)
  })

  it('is one quiet line when every subscriber can be copied', () => {
    const ok = { ...base, copyable: 4, unchecked: 0, not_copyable: { ...base.not_copyable, token_refused: 0 } }
    const wrapper = mount(ReadinessNote, { props: { id: 'r', readiness: ok, text: readinessText(ok), announcement: '', now: Date.now() } })
    expect(wrapper.find('#r').text()).toBe('All 4 subscribers can be copied now.')
    expect(wrapper.find('#r').classes()).toContain('readiness-ok')
    expect(wrapper.find('ul').exists()).toBe(false)
  })
})
