/**
 * Polling that a person can afford to leave open: one call at a time (the next is scheduled when
 * the last has answered), paused while the page is hidden (another tab, a locked phone) and run
 * at once when it shows again, stopped with the component that uses it.
 */
import { getCurrentScope, onScopeDispose, ref, type Ref } from 'vue'

export interface Visibility {
  hidden(): boolean
  onChange(listener: () => void): () => void
}

const documentVisibility: Visibility = {
  hidden: () => typeof document !== 'undefined' && document.visibilityState === 'hidden',
  onChange(listener) {
    if (typeof document === 'undefined') return () => undefined
    document.addEventListener('visibilitychange', listener)
    return () => document.removeEventListener('visibilitychange', listener)
  },
}

export interface Poller {
  /** A call is out now. */
  readonly busy: Ref<boolean>
  /** Hidden page: no call until it shows again. */
  readonly paused: Ref<boolean>
  /** When the last call answered (ms epoch), null before the first. */
  readonly lastRun: Ref<number | null>
  /** Calls now (after the one in flight, if any) and restarts the interval from its answer. */
  refresh(): Promise<void>
  /** Brings the next call forward to `delayMs` from now, if that is sooner than planned. */
  refreshIn(delayMs: number): void
  start(): void
  stop(): void
}

export interface PollingOptions {
  /** Start at once (default true). */
  immediate?: boolean
  visibility?: Visibility
}

export function createPoller(
  task: () => Promise<unknown>,
  intervalMs: number,
  options: PollingOptions = {},
): Poller {
  const visibility = options.visibility ?? documentVisibility
  const busy = ref(false)
  const paused = ref(false)
  const lastRun = ref<number | null>(null)
  let timer: ReturnType<typeof setTimeout> | null = null
  let dueAt = 0
  let running = false
  let inFlight: Promise<void> | null = null
  let again = false
  let unlisten: (() => void) | null = null

  function clear(): void {
    if (timer) clearTimeout(timer)
    timer = null
  }

  function schedule(delayMs: number): void {
    clear()
    if (!running || paused.value) return
    dueAt = Date.now() + delayMs
    timer = setTimeout(() => void refresh(), delayMs)
  }

  async function runOnce(): Promise<void> {
    busy.value = true
    try {
      await task()
    } catch {
      // the task keeps its own error for the page to show; polling goes on
    } finally {
      busy.value = false
      lastRun.value = Date.now()
    }
  }

  function refresh(): Promise<void> {
    if (!running || paused.value) return Promise.resolve()
    if (inFlight) {
      again = true
      return inFlight
    }
    clear()
    inFlight = (async () => {
      do {
        again = false
        await runOnce()
      } while (again && running && !paused.value)
    })().finally(() => {
      inFlight = null
      schedule(intervalMs)
    })
    return inFlight
  }

  function refreshIn(delayMs: number): void {
    if (!running || paused.value) return
    if (delayMs <= 0) {
      void refresh()
      return
    }
    if (inFlight) {
      // its answer schedules the next call: make sure that one is early enough
      void inFlight.then(() => refreshIn(delayMs))
      return
    }
    if (!timer || Date.now() + delayMs < dueAt) schedule(delayMs)
  }

  function onVisibility(): void {
    if (!running) return
    if (visibility.hidden()) {
      paused.value = true
      clear()
    } else if (paused.value) {
      paused.value = false
      void refresh()
    }
  }

  function start(): void {
    if (running) return
    running = true
    unlisten = visibility.onChange(onVisibility)
    paused.value = visibility.hidden()
    void refresh()
  }

  function stop(): void {
    running = false
    clear()
    unlisten?.()
    unlisten = null
  }

  if (options.immediate ?? true) start()
  return { busy, paused, lastRun, refresh, refreshIn, start, stop }
}

/** {@link createPoller}, stopped when the calling component (or effect scope) goes away. */
export function usePolling(
  task: () => Promise<unknown>,
  intervalMs: number,
  options: PollingOptions = {},
): Poller {
  const poller = createPoller(task, intervalMs, options)
  if (getCurrentScope()) onScopeDispose(() => poller.stop())
  return poller
}
