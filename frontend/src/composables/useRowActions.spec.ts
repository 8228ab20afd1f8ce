import { describe, expect, it } from 'vitest'
import { useRowActions } from './useRowActions'

describe('useRowActions', () => {
  it('says what an action did, closes the row form and frees the row', async () => {
    const { suspending, busy, rowError, done, act } = useRowActions()
    suspending.value = 'u1'
    const running = act({ id: 'u1' }, async () => ({ email: 'a@example.com' }), (u) => `${u.email} is suspended.`)
    expect(busy.value).toBe('u1')
    await running
    expect(done.value).toBe('a@example.com is suspended.')
    expect(suspending.value).toBeNull()
    expect(busy.value).toBeNull()
    expect(rowError.value.u1).toBeNull()
  })

  it('keeps a refused action on its row, with the form still open', async () => {
    const { suspending, busy, rowError, done, act } = useRowActions()
    done.value = 'earlier'
    suspending.value = 'c1'
    await act({ id: 'c1' }, async () => Promise.reject(new Error('That channel is gone.')), () => 'never')
    expect(rowError.value.c1).toBe('That channel is gone.')
    expect(done.value).toBeNull()
    expect(suspending.value).toBe('c1')
    expect(busy.value).toBeNull()
  })
})
