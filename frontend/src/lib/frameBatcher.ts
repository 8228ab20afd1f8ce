/**
 * Buffers items that arrive faster than the screen can show them (socket events) and hands them
 * over once per animation frame; in a hidden tab, where frames stop, every 250 ms instead.
 */
export type Scheduler = (run: () => void) => void

export const frameScheduler: Scheduler = (run) => {
  const hidden = typeof document !== 'undefined' && document.visibilityState === 'hidden'
  if (!hidden && typeof requestAnimationFrame === 'function') requestAnimationFrame(() => run())
  else setTimeout(run, hidden ? 250 : 16)
}

export class FrameBatcher<T> {
  private buffer: T[] = []
  private scheduled = false

  constructor(
    private readonly apply: (items: T[]) => void,
    private readonly schedule: Scheduler = frameScheduler,
  ) {}

  push(item: T | readonly T[]): void {
    if (Array.isArray(item)) {
      for (const one of item as readonly T[]) this.buffer.push(one)
    } else {
      this.buffer.push(item as T)
    }
    if (!this.scheduled) {
      this.scheduled = true
      this.schedule(() => this.flush())
    }
  }

  get pending(): number {
    return this.buffer.length
  }

  flush(): void {
    this.scheduled = false
    if (this.buffer.length === 0) return
    const items = this.buffer
    this.buffer = []
    this.apply(items)
  }
}
