import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { client } from '@/api/client'
import { json, scriptedFetch, token } from '@/test/http'
import { homeFor, useAuthStore } from './auth'

const user = { id: 'u', email: 'p@example.com', role: 'provider', display_name: 'Desk' }

describe('auth store', () => {
  beforeEach(() => {
    setActivePinia(createPinia())
    client.setSession(null, 'logout')
  })
  afterEach(() => vi.unstubAllGlobals())

  it('restores a session from the refresh cookie at start', async () => {
    localStorage.setItem('ctc.session', '1')
    vi.stubGlobal('fetch', scriptedFetch({ 'POST /api/auth/refresh': () => json(200, { user, access_token: token('u'), refresh_token: 'R' }) }).fetch)
    const auth = useAuthStore()
    await auth.restore()
    expect(auth.ready).toBe(true)
    expect(auth.loggedIn).toBe(true)
    expect(auth.displayName).toBe('Desk')
    expect(auth.expired).toBe(false)
  })

  it('does not ask for a refresh in a browser that never had a session', async () => {
    const http = scriptedFetch({})
    vi.stubGlobal('fetch', http.fetch)
    localStorage.removeItem('ctc.session')
    const auth = useAuthStore()
    await auth.restore()
    expect(auth.ready).toBe(true)
    expect(http.calls).toHaveLength(0)
  })

  it('starts logged out without a cookie, and is not "expired" for it', async () => {
    localStorage.setItem('ctc.session', '1')
    vi.stubGlobal('fetch', scriptedFetch({ 'POST /api/auth/refresh': () => json(401, { error: { code: 'no_session', message: 'No session.' } }) }).fetch)
    const auth = useAuthStore()
    await auth.restore()
    expect(auth.ready).toBe(true)
    expect(auth.loggedIn).toBe(false)
    expect(auth.expired).toBe(false)
  })

  it('logs in, then logs out through the API and forgets the token', async () => {
    const http = scriptedFetch({
      'POST /api/auth/login': () => json(200, { user, access_token: token('u'), refresh_token: 'R' }),
      'POST /api/auth/logout': () => json(204),
    })
    vi.stubGlobal('fetch', http.fetch)
    const auth = useAuthStore()
    await auth.login('p@example.com', 'secret-pass')
    expect(auth.role).toBe('provider')
    expect(client.token).not.toBeNull()
    await auth.logout()
    expect(auth.loggedIn).toBe(false)
    expect(client.token).toBeNull()
    expect(http.calls.map((c) => c.path)).toEqual(['/api/auth/login', '/api/auth/logout'])
    expect(http.calls[1]!.credentials).toBe('include')
  })

  it('logs out locally even when the hub cannot be reached', async () => {
    vi.stubGlobal('fetch', () => Promise.reject(new TypeError('offline')))
    const auth = useAuthStore()
    client.setSession({ user: user as never, access_token: 'A' }, 'login')
    await auth.logout()
    expect(auth.loggedIn).toBe(false)
  })

  it('sends each role home', () => {
    expect(homeFor('provider')).toBe('/dashboard')
    expect(homeFor('subscriber')).toBe('/me')
    expect(homeFor('admin')).toBe('/admin')
    expect(homeFor(null)).toBe('/')
  })
})
