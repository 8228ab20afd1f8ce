import { describe, expect, it, vi } from 'vitest'
import { ApiClient, ApiError, buildQuery, toApiError } from './client'
import { json, scriptedFetch, token } from '@/test/http'

const user = { id: 'u1', email: 'p@example.com', role: 'provider', display_name: 'P' }

function clientWith(routes: Parameters<typeof scriptedFetch>[0]) {
  const http = scriptedFetch(routes)
  const client = new ApiClient({ fetch: http.fetch, origin: () => '', refreshAhead: false })
  return { client, ...http }
}

describe('ApiClient', () => {
  it('attaches the access token and sends cookies', async () => {
    const { client, calls } = clientWith({ 'GET /api/me': () => json(200, user) })
    client.setSession({ user: user as never, access_token: 'A1' }, 'login')
    await expect(client.get('/api/me')).resolves.toEqual(user)
    expect(calls[0]!.headers.Authorization).toBe('Bearer A1')
    expect(calls[0]!.credentials).toBe('include')
  })

  it('turns the contract error shape into an ApiError with its message', async () => {
    const { client } = clientWith({
      'POST /api/broker-accounts': () =>
        json(422, {
          error: {
            code: 'broker_token_refused',
            message: 'This token was refused by Deriv: check it has the Trade scope.',
          },
        }),
    })
    const error = await client.post('/api/broker-accounts', { broker: 'deriv' }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ApiError)
    expect((error as ApiError).status).toBe(422)
    expect((error as ApiError).code).toBe('broker_token_refused')
    expect((error as ApiError).message).toBe('This token was refused by Deriv: check it has the Trade scope.')
  })

  it('gives a sentence by status when the body is not the contract shape', async () => {
    const error = await toApiError(new Response('<html>Bad gateway</html>', { status: 502 }))
    expect(error.code).toBe('http_502')
    expect(error.message).toMatch(/not answering/)
  })

  it('reports an unreachable server in words', async () => {
    const client = new ApiClient({
      fetch: () => Promise.reject(new TypeError('Failed to fetch')),
      origin: () => '',
      refreshAhead: false,
    })
    const error = (await client.get('/api/assets').catch((e: unknown) => e)) as ApiError
    expect(error.code).toBe('network')
    expect(error.message).toMatch(/Cannot reach the server/)
  })

  it('shares ONE refresh among concurrent 401s, then retries each request once', async () => {
    let current = 'A1'
    let refreshes = 0
    let release: () => void = () => undefined
    const gate = new Promise<void>((resolve) => (release = resolve))
    const { client, calls } = clientWith({
      'GET /api/signals': (init) => {
        const auth = (init.headers as Record<string, string>).Authorization
        return auth === `Bearer ${current}` ? json(200, { items: [] }) : json(401, { error: { code: 'token_expired', message: 'The token has expired.' } })
      },
      'POST /api/auth/refresh': async () => {
        refreshes++
        await gate
        current = 'A2'
        return json(200, { user, access_token: 'A2', refresh_token: 'R2' })
      },
    })
    client.setSession({ user: user as never, access_token: 'A0' }, 'login')
    const requests = [1, 2, 3, 4, 5].map((n) => client.get('/api/signals', { channel_id: `c${n}` }))
    await vi.waitFor(() => expect(refreshes).toBe(1))
    release()
    const answers = await Promise.all(requests)
    expect(answers).toHaveLength(5)
    expect(refreshes).toBe(1)
    const signalCalls = calls.filter((c) => c.path.startsWith('/api/signals'))
    expect(signalCalls).toHaveLength(10) // each sent once with A0, retried once with A2
    expect(signalCalls.slice(5).every((c) => c.headers.Authorization === 'Bearer A2')).toBe(true)
    expect(client.token).toBe('A2')
  })

  it('retries only once: a second 401 is the answer', async () => {
    let hits = 0
    const { client } = clientWith({
      'GET /api/me': () => {
        hits++
        return json(401, { error: { code: 'invalid_token', message: 'The token is not valid.' } })
      },
      'POST /api/auth/refresh': () => json(200, { user, access_token: 'B', refresh_token: 'R' }),
    })
    client.setSession({ user: user as never, access_token: 'A' }, 'login')
    const error = (await client.get('/api/me').catch((e: unknown) => e)) as ApiError
    expect(error.status).toBe(401)
    expect(hits).toBe(2)
  })

  it('a refused refresh ends the session and tells the listeners', async () => {
    const { client } = clientWith({
      'GET /api/me': () => json(401, { error: { code: 'token_expired', message: 'The token has expired.' } }),
      'POST /api/auth/refresh': () => json(401, { error: { code: 'no_session', message: 'No session.' } }),
    })
    const events: string[] = []
    client.onSession((u, event) => events.push(`${event}:${u ? u.id : 'none'}`))
    client.setSession({ user: user as never, access_token: 'A' }, 'login')
    const error = (await client.get('/api/me').catch((e: unknown) => e)) as ApiError
    expect(error.status).toBe(401)
    expect(client.token).toBeNull()
    expect(client.currentUser).toBeNull()
    expect(events).toEqual(['login:u1', 'expired:none'])
  })

  it('a request that raced a finished refresh retries with the new token without refreshing again', async () => {
    let refreshes = 0
    let releaseSlow: () => void = () => undefined
    const slowGate = new Promise<void>((resolve) => (releaseSlow = resolve))
    const expired = () => json(401, { error: { code: 'token_expired', message: 'expired' } })
    const isNew = (init: RequestInit) => (init.headers as Record<string, string>).Authorization === 'Bearer NEW'
    const { client } = clientWith({
      'GET /api/slow': async (init) => {
        if (isNew(init)) return json(200, { slow: true })
        await slowGate // its 401 comes back after the other request's refresh finished
        return expired()
      },
      'GET /api/fast': (init) => (isNew(init) ? json(200, { fast: true }) : expired()),
      'POST /api/auth/refresh': () => {
        refreshes++
        return json(200, { user, access_token: 'NEW', refresh_token: 'R' })
      },
    })
    client.setSession({ user: user as never, access_token: 'OLD' }, 'login')
    const slow = client.get('/api/slow')
    await expect(client.get('/api/fast')).resolves.toEqual({ fast: true })
    releaseSlow()
    await expect(slow).resolves.toEqual({ slow: true })
    expect(refreshes).toBe(1)
  })

  it('restores a session from the cookie (refresh with no body)', async () => {
    const { client, calls } = clientWith({
      'POST /api/auth/refresh': () => json(200, { user, access_token: token('u1'), refresh_token: 'R' }),
    })
    await expect(client.refresh()).resolves.toBe(true)
    expect(calls[0]!.body).toBeUndefined()
    expect(calls[0]!.credentials).toBe('include')
    expect(client.currentUser?.email).toBe('p@example.com')
  })

  it('answers 204 with undefined and builds queries without empty values', async () => {
    const { client } = clientWith({ 'DELETE /api/subscriptions/s1': () => json(204) })
    await expect(client.delete('/api/subscriptions/s1')).resolves.toBeUndefined()
    expect(buildQuery({ a: 1, b: '', c: null, d: undefined, e: 'x y' })).toBe('?a=1&e=x+y')
  })
  it('ends the session when the hub says the account is suspended, and says so', async () => {
    const suspended = { error: { code: 'account_suspended', message: 'This account is suspended by the operators.' } }
    const { client } = clientWith({
      'GET /api/me': () => json(403, suspended),
      'GET /api/channels': () => json(403, { error: { code: 'forbidden', message: 'Not yours.' } }),
    })
    const events: string[] = []
    client.onSession((_u, event) => events.push(event))
    client.setSession({ user: user as never, access_token: 'A1' }, 'login')
    await expect(client.get('/api/channels')).rejects.toMatchObject({ status: 403, code: 'forbidden' })
    expect(client.token).toBe('A1') // any other 403 keeps the session
    await expect(client.get('/api/me')).rejects.toMatchObject({ code: 'account_suspended' })
    expect(client.token).toBeNull()
    expect(events).toEqual(['login', 'suspended'])
  })
})
