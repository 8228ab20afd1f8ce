import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPoller, type Visibility } from './usePolling'

function fakeVisibility() {
  let hidden = false
  const listeners = new Set<() => void>()
  const visibility: Visibility = {
    hidden: () => hidden,
    onChange(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
  }
  return {
    visibility,
    listeners,
    set(next: boolean) {
      hidden = next
      for (const l of listeners) l()
    },
  }
}

describe('createPoller', () => {
  beforeEach(() => vi.useFakeTimers())
  afterEach(() => vi.useRealTimers())

  it('calls at once, then every interval after each answer, one call at a time', async () => {
    let calls = 0
    let release: () => void = () => undefined
    const task = vi.fn(() => {
      calls++
      return new Promise<void>((resolve) => (release = resolve))
    })
    const poller = createPoller(task, 5000, { visibility: fakeVisibility().visibility })
    expect(calls).toBe(1)
    await vi.advanceTimersByTimeAsync(20_000) // the first call has not answered: nothing more
    expect(calls).toBe(1)
    release()
    await vi.advanceTimersByTimeAsync(4999)
    expect(calls).toBe(1)
    await vi.advanceTimersByTimeAsync(1)
    expect(calls).toBe(2)
    release()
    await vi.advanceTimersByTimeAsync(5000)
    expect(calls).toBe(3)
    poller.stop()
    release()
    await vi.advanceTimersByTimeAsync(60_000)
    expect(calls).toBe(3)
  })

  it('keeps polling after a failed call', async () => {
    const task = vi.fn(async () => {
      throw new Error('down')
    })
    const poller = createPoller(task, 1000, { visibility: fakeVisibility().visibility })
    await vi.advanceTimersByTimeAsync(3000)
    expect(task).toHaveBeenCalledTimes(4)
    poller.stop()
  })

  it('pauses while the page is hidden and calls at once when it shows again', async () => {
    const page = fakeVisibility()
    const task = vi.fn(async () => undefined)
    const poller = createPoller(task, 5000, { visibility: page.visibility })
    await vi.advanceTimersByTimeAsync(0)
    expect(task).toHaveBeenCalledTimes(1)
    page.set(true)
    expect(poller.paused.value).toBe(true)
    await vi.advanceTimersByTimeAsync(60_000)
    expect(task).toHaveBeenCalledTimes(1)
    page.set(false)
    expect(poller.paused.value).toBe(false)
    await vi.advanceTimersByTimeAsync(0)
    expect(task).toHaveBeenCalledTimes(2)
    await vi.advanceTimersByTimeAsync(5000)
    expect(task).toHaveBeenCalledTimes(3)
    poller.stop()
    expect(page.listeners.size).toBe(0)
  })

  it('starts paused on a hidden page', async () => {
    const page = fakeVisibility()
    page.set(true)
    const task = vi.fn(async () => undefined)
    const poller = createPoller(task, 5000, { visibility: page.visibility })
    await vi.advanceTimersByTimeAsync(30_000)
    expect(task).not.toHaveBeenCalled()
    page.set(false)
    await vi.advanceTimersByTimeAsync(0)
    expect(task).toHaveBeenCalledTimes(1)
    poller.stop()
  })

  it('brings the next call forward, never back', async () => {
    const task = vi.fn(async () => undefined)
    const poller = createPoller(task, 10_000, { visibility: fakeVisibility().visibility })
    await vi.advanceTimersByTimeAsync(0)
    expect(task).toHaveBeenCalledTimes(1)
    poller.refreshIn(3000)
    poller.refreshIn(8000) // later than planned: ignored
    await vi.advanceTimersByTimeAsync(3000)
    expect(task).toHaveBeenCalledTimes(2)
    await vi.advanceTimersByTimeAsync(9999)
    expect(task).toHaveBeenCalledTimes(2)
    await vi.advanceTimersByTimeAsync(1)
    expect(task).toHaveBeenCalledTimes(3)
    poller.refreshIn(0)
    await vi.advanceTimersByTimeAsync(0)
    expect(task).toHaveBeenCalledTimes(4)
    poller.stop()
  })

  it('a refresh during a call runs once more after it, not alongside it', async () => {
    let release: () => void = () => undefined
    let running = 0
    let most = 0
    const task = vi.fn(() => {
      running++
      most = Math.max(most, running)
      return new Promise<void>((resolve) => (release = () => { running--; resolve() }))
    })
    const poller = createPoller(task, 10_000, { visibility: fakeVisibility().visibility })
    void poller.refresh()
    void poller.refresh()
    expect(task).toHaveBeenCalledTimes(1)
    release()
    await vi.advanceTimersByTimeAsync(0)
    expect(task).toHaveBeenCalledTimes(2)
    release()
    await vi.advanceTimersByTimeAsync(0)
    expect(task).toHaveBeenCalledTimes(2)
    expect(most).toBe(1)
    poller.stop()
  })
})
