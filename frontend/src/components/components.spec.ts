import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import type { Channel } from '@/api/types'
import { FeedAggregator } from '@/lib/feed'
import FeedSummary from './FeedSummary.vue'
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
