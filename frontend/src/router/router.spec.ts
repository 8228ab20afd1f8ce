import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { client } from '@/api/client'
import { json, scriptedFetch } from '@/test/http'
import { createAppRouter, safeRedirect } from './index'

describe('router', () => {
  beforeEach(() => {
    setActivePinia(createPinia())
    client.setSession(null, 'logout')
    window.history.replaceState({}, '', '/')
  })
  afterEach(() => vi.unstubAllGlobals())

  it('sends a visitor without a session to /login with the path to come back to', async () => {
    vi.stubGlobal('fetch', scriptedFetch({}).fetch)
    const router = createAppRouter()
    await router.push('/dashboard/channels')
    expect(router.currentRoute.value.name).toBe('login')
    expect(router.currentRoute.value.query.redirect).toBe('/dashboard/channels')
  })

  it('sends a session of another role to its own home', async () => {
    localStorage.setItem('ctc.session', '1')
    vi.stubGlobal('fetch', scriptedFetch({
      'POST /api/auth/refresh': () => json(200, { user: { id: 's', email: 's@x.io', role: 'subscriber', display_name: 's' }, access_token: 'T', refresh_token: 'R' }),
    }).fetch)
    const router = createAppRouter()
    await router.push('/admin')
    expect(router.currentRoute.value.path).toBe('/me')
    await router.push('/login')
    expect(router.currentRoute.value.path).toBe('/me')
  })

  it('keeps /admin to admins: anyone else goes home without one call to /api/admin', async () => {
    localStorage.setItem('ctc.session', '1')
    const as = (role: string) =>
      scriptedFetch({
        'POST /api/auth/refresh': () => json(200, { user: { id: 'u', email: 'u@x.io', role, display_name: 'u' }, access_token: 'T', refresh_token: 'R' }),
      })
    const provider = as('provider')
    vi.stubGlobal('fetch', provider.fetch)
    let router = createAppRouter()
    await router.push('/admin/users')
    expect(router.currentRoute.value.path).toBe('/dashboard')
    expect(provider.calls.some((c) => c.path.startsWith('/api/admin'))).toBe(false)

    setActivePinia(createPinia())
    client.setSession(null, 'logout')
    localStorage.setItem('ctc.session', '1')
    vi.stubGlobal('fetch', as('admin').fetch)
    router = createAppRouter()
    await router.push('/admin/users')
    expect(router.currentRoute.value.name).toBe('admin-users')
    await router.push('/admin')
    expect(router.currentRoute.value.name).toBe('admin')
  })

  it('lets anyone see the public pages and answers unknown paths with the not-found view', async () => {
    vi.stubGlobal('fetch', scriptedFetch({}).fetch)
    const router = createAppRouter()
    await router.push('/c/abc')
    expect(router.currentRoute.value.name).toBe('channel')
    await router.push('/no/such/page')
    expect(router.currentRoute.value.name).toBe('not-found')
  })

  it('follows only paths of this app after login', () => {
    expect(safeRedirect('/me')).toBe('/me')
    expect(safeRedirect('//evil.example')).toBeNull()
    expect(safeRedirect('https://evil.example')).toBeNull()
    expect(safeRedirect('/\\evil')).toBeNull()
    expect(safeRedirect(undefined)).toBeNull()
  })
})
