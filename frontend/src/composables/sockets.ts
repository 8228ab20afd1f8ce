/**
 * One Socket.IO connection per namespace (`/provider`, `/subscriber`), created once at module
 * level, never inside a component. Its `auth` is a callback, so every (re)connect sends the
 * newest access token; a refusal for an expired or invalid token refreshes the session once and
 * connects again. The connection state is a ref the pages show.
 */
import { io, type Socket } from 'socket.io-client'
import { ref, type Ref } from 'vue'
import { client } from '@/api/client'
import { runtimeConfig } from '@/config'

export type ConnectionState = 'offline' | 'connecting' | 'connected' | 'reconnecting' | 'refused'

const AUTH_CODES = new Set(['token_expired', 'invalid_token', 'missing_token'])

type Handler = (...args: never[]) => void

export interface NamespaceConnection {
  readonly namespace: string
  readonly state: Ref<ConnectionState>
  /** Why the last connect failed, in words. */
  readonly error: Ref<string | null>
  start(): void
  stop(): void
  on(event: string, handler: Handler): void
  /** Emits and waits for the acknowledgement; rejects after `timeoutMs` or while offline. */
  call<T>(event: string, data: unknown, timeoutMs?: number): Promise<T>
  /** Refreshes the session, then reconnects: after a `token_expired` acknowledgement. */
  renew(): Promise<boolean>
}

function refusalCode(err: unknown): string | null {
  const data = (err as { data?: { error?: { code?: unknown } } } | null)?.data
  const code = data?.error?.code
  return typeof code === 'string' ? code : null
}

function refusalMessage(err: unknown): string | null {
  const data = (err as { data?: { error?: { message?: unknown } } } | null)?.data
  const message = data?.error?.message
  return typeof message === 'string' ? message : null
}

export function createConnection(
  namespace: string,
  factory: (url: string, options: Parameters<typeof io>[1]) => Socket = io,
): NamespaceConnection {
  const state = ref<ConnectionState>('offline')
  const error = ref<string | null>(null)
  const handlers: [string, Handler][] = []
  let socket: Socket | null = null
  let wanted = false
  let renewing: Promise<boolean> | null = null
  let authRefusals = 0

  function build(): Socket {
    const s = factory(`${runtimeConfig().apiOrigin}${namespace}`, {
      path: '/socket.io/',
      autoConnect: false,
      transports: ['websocket', 'polling'],
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
      auth: (cb: (data: object) => void) => cb({ token: client.token ?? '' }),
    })
    s.on('connect', () => {
      authRefusals = 0
      state.value = 'connected'
      error.value = null
    })
    s.on('disconnect', (reason: string) => {
      if (!wanted) {
        state.value = 'offline'
        return
      }
      if (reason === 'io server disconnect') {
        // the hub closed it (a token that expired while connected): renew and come back
        if (client.token) void renew()
        else state.value = 'offline'
        return
      }
      state.value = 'reconnecting' // the manager retries by itself
    })
    s.on('connect_error', (err: Error) => {
      if (!wanted) return
      const code = refusalCode(err)
      if (code && AUTH_CODES.has(code) && authRefusals++ < 2) {
        void renew(true)
        return
      }
      if (code) {
        state.value = 'refused'
        error.value = refusalMessage(err) ?? 'The hub refused the connection.'
        return
      }
      state.value = 'reconnecting'
      error.value = 'Cannot reach the hub; retrying.'
    })
    for (const [event, handler] of handlers) s.on(event, handler as never)
    return s
  }

  function renew(fromRefusal = false): Promise<boolean> {
    renewing ??= (async () => {
      state.value = 'reconnecting'
      const ok = await client.refresh()
      if (!ok) {
        state.value = 'refused'
        error.value = fromRefusal
          ? 'Your session has ended: log in again.'
          : 'The hub closed the connection: log in again.'
        return false
      }
      if (wanted && socket) {
        socket.disconnect()
        socket.connect()
      }
      return true
    })().finally(() => {
      renewing = null
    })
    return renewing
  }

  return {
    namespace,
    state,
    error,
    start() {
      wanted = true
      socket ??= build()
      if (!socket.connected) {
        state.value = state.value === 'offline' ? 'connecting' : state.value
        socket.connect()
      }
    },
    stop() {
      wanted = false
      socket?.disconnect()
      state.value = 'offline'
      error.value = null
    },
    on(event, handler) {
      handlers.push([event, handler])
      socket?.on(event, handler as never)
    },
    call<T>(event: string, data: unknown, timeoutMs = 8000): Promise<T> {
      if (!socket || !socket.connected) {
        return Promise.reject(new Error('Not connected to the hub.'))
      }
      return socket.timeout(timeoutMs).emitWithAck(event, data) as Promise<T>
    },
    renew: () => renew(false),
  }
}

export const providerConnection = createConnection('/provider')
export const subscriberConnection = createConnection('/subscriber')

/** Both sockets close when the session ends. */
client.onSession((user) => {
  if (user === null) {
    providerConnection.stop()
    subscriberConnection.stop()
  }
})
