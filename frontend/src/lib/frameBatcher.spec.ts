import { describe, expect, it } from 'vitest'
import { FrameBatcher } from './frameBatcher'

describe('FrameBatcher', () => {
  it('hands everything buffered since the last frame over in one call', () => {
    const frames: (() => void)[] = []
    const batches: number[][] = []
    const batcher = new FrameBatcher<number>((items) => batches.push(items), (run) => frames.push(run))
    batcher.push(1)
    batcher.push([2, 3])
    expect(frames).toHaveLength(1)
    expect(batcher.pending).toBe(3)
    frames.shift()!()
    batcher.push(4)
    frames.shift()!()
    expect(batches).toEqual([[1, 2, 3], [4]])
  })
})
