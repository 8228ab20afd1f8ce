/** The session: who is logged in. The access token itself stays inside the API client. */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { authApi, client } from '@/api'
import type { Role, User } from '@/api/types'

export function homeFor(role: Role | null | undefined): string {
  if (role === 'provider') return '/dashboard'
  if (role === 'admin') return '/admin'
  if (role === 'subscriber') return '/me'
  return '/'
}

export const useAuthStore = defineStore('auth', () => {
  const user = ref<User | null>(client.currentUser)
  /** The start-up refresh has been tried (the router waits for it). */
  const ready = ref(false)
  /** The last session ended by itself (a refused refresh), not by logging out. */
  const expired = ref(false)
  let restoring: Promise<void> | null = null

  client.onSession((next, event) => {
    user.value = next
    if (event === 'expired' || event === 'suspended') expired.value = true
    if (event === 'login' || event === 'refresh') expired.value = false
  })

  const role = computed<Role | null>(() => user.value?.role ?? null)
  const loggedIn = computed(() => user.value !== null)
  const displayName = computed(
    () => user.value?.display_name || user.value?.email.split('@')[0] || '',
  )

  function restore(): Promise<void> {
    if (ready.value) return Promise.resolve()
    restoring ??= authApi
      .restore()
      .then(() => undefined)
      .catch(() => undefined)
      .finally(() => {
        ready.value = true
        expired.value = false // nothing to regret at start: there was no session to lose
      })
    return restoring
  }

  async function login(email: string, password: string): Promise<User> {
    const session = await authApi.login(email, password)
    ready.value = true
    return session.user
  }

  async function signup(input: {
    email: string
    password: string
    role: 'provider' | 'subscriber'
    display_name?: string
  }): Promise<User> {
    const session = await authApi.signup(input)
    ready.value = true
    return session.user
  }

  async function logout(): Promise<void> {
    try {
      await authApi.logout()
    } catch {
      // the session is cleared here whatever the server said
    }
    expired.value = false
  }

  function hasRole(...roles: Role[]): boolean {
    return user.value !== null && roles.includes(user.value.role)
  }

  return { user, ready, expired, role, loggedIn, displayName, restore, login, signup, logout, hasRole }
})
