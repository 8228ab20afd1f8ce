import { afterEach, describe, expect, it, vi } from 'vitest'
import type { Socket } from 'socket.io-client'
import { client } from '@/api/client'
import { json, scriptedFetch } from '@/test/http'
import { createConnection } from './sockets'

type Listener = (...args: unknown[]) => void

/** Enough of a socket.io-client Socket to drive the connection's handlers. */
function fakeSocket() {
  const listeners = new Map<string, Listener[]>()
  let authFn: ((cb: (data: object) => void) => void) | null = null
  const socket = {
    connected: false,
    connects: 0,
    on(event: string, fn: Listener) {
      listeners.set(event, [...(listeners.get(event) ?? []), fn])
      return socket
    },
    emit(event: string, ...args: unknown[]) {
      for (const fn of listeners.get(event) ?? []) fn(...args)
    },
    connect() {
      socket.connects++
      return socket
    },
    disconnect() {
      socket.connected = false
      return socket
    },
    auth(): object {
      let sent: object = {}
      authFn?.((data) => (sent = data))
      return sent
    },
  }
  const factory = vi.fn((_url: string, options?: { auth?: unknown }) => {
    authFn = options?.auth as typeof authFn
    return socket as unknown as Socket
  })
  return { socket, factory }
}

describe('namespace connection', () => {
  afterEach(() => {
    vi.unstubAllGlobals()
    client.setSession(null, 'logout')
  })

  it('is created once and sends the newest token on every (re)connect', () => {
    const { socket, factory } = fakeSocket()
    const conn = createConnection('/provider', factory)
    client.setSession({ user: { id: 'u', email: 'e@x.io', role: 'provider', display_name: null }, access_token: 'T1' }, 'login')
    conn.start()
    conn.start()
    expect(factory).toHaveBeenCalledOnce()
    expect(factory.mock.calls[0]![0]).toBe('/provider')
    expect(socket.auth()).toEqual({ token: 'T1' })
    client.setSession({ user: { id: 'u', email: 'e@x.io', role: 'provider', display_name: null }, access_token: 'T2' }, 'refresh')
    expect(socket.auth()).toEqual({ token: 'T2' })
    expect(conn.state.value).toBe('connecting')
    socket.connected = true
    socket.emit('connect')
    expect(conn.state.value).toBe('connected')
  })

  it('refreshes once and connects again when the hub refuses an expired token', async () => {
    const http = scriptedFetch({
      'POST /api/auth/refresh': () => json(200, { user: { id: 'u', email: 'e@x.io', role: 'provider', display_name: null }, access_token: 'FRESH', refresh_token: 'R' }),
    })
    vi.stubGlobal('fetch', http.fetch)
    const { socket, factory } = fakeSocket()
    const conn = createConnection('/provider', factory)
    client.setSession({ user: { id: 'u', email: 'e@x.io', role: 'provider', display_name: null }, access_token: 'OLD' }, 'login')
    conn.start()
    const err = Object.assign(new Error('refused'), { data: { error: { code: 'token_expired', message: 'The token has expired.' } } })
    socket.emit('connect_error', err)
    await vi.waitFor(() => expect(socket.connects).toBe(2))
    expect(http.calls.filter((c) => c.path === '/api/auth/refresh')).toHaveLength(1)
    expect(socket.auth()).toEqual({ token: 'FRESH' })
  })

  it('says so when the refresh is refused too', async () => {
    vi.stubGlobal('fetch', scriptedFetch({ 'POST /api/auth/refresh': () => json(401, { error: { code: 'no_session', message: 'No session.' } }) }).fetch)
    const { socket, factory } = fakeSocket()
    const conn = createConnection('/subscriber', factory)
    conn.start()
    socket.emit('connect_error', Object.assign(new Error('x'), { data: { error: { code: 'invalid_token', message: 'The token is not valid.' } } }))
    await vi.waitFor(() => expect(conn.state.value).toBe('refused'))
    expect(conn.error.value).toMatch(/log in again/)
  })

  it('shows a transport failure as reconnecting, and stops quietly', () => {
    const { socket, factory } = fakeSocket()
    const conn = createConnection('/provider', factory)
    conn.start()
    socket.emit('connect_error', new Error('xhr poll error'))
    expect(conn.state.value).toBe('reconnecting')
    conn.stop()
    expect(conn.state.value).toBe('offline')
    socket.emit('disconnect', 'io client disconnect')
    expect(conn.state.value).toBe('offline')
  })

  it('refuses to emit while not connected', async () => {
    const { factory } = fakeSocket()
    const conn = createConnection('/provider', factory)
    await expect(conn.call('signal', {})).rejects.toThrow(/Not connected/)
  })
})
