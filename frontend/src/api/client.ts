/**
 * The one HTTP client of the app.
 *
 * It attaches the in-memory access token, sends cookies (`credentials: "include"`: the refresh
 * token is an httpOnly cookie on `/api/auth`), turns the contract's error shape
 * `{"error": {"code", "message"}}` into an {@link ApiError}, and on a 401 starts ONE refresh that
 * every waiting request shares, then retries each of them once. A failed refresh ends the session.
 */
import { runtimeConfig } from '@/config'
import type { ErrorBody, Session, User } from './types'

export class ApiError extends Error {
  readonly status: number
  readonly code: string

  constructor(status: number, code: string, message: string) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
  }
}

const GENERIC: Record<number, string> = {
  0: 'Cannot reach the server. Check your connection and try again.',
  400: 'The request was not understood.',
  401: 'Please log in again.',
  403: 'You are not allowed to do this.',
  404: 'Not found.',
  409: 'That conflicts with something that already exists.',
  422: 'Some of the values are not valid.',
  429: 'Too many attempts. Wait a moment and try again.',
  500: 'Something went wrong on our side. Try again in a moment.',
  502: 'The server is not answering right now. Try again in a moment.',
  503: 'The service is busy or restarting. Try again in a moment.',
  504: 'The server took too long to answer. Try again.',
}

function isErrorBody(value: unknown): value is ErrorBody {
  if (typeof value !== 'object' || value === null || !('error' in value)) return false
  const error = (value as { error: unknown }).error
  return (
    typeof error === 'object' &&
    error !== null &&
    typeof (error as { code?: unknown }).code === 'string' &&
    typeof (error as { message?: unknown }).message === 'string'
  )
}

/** The contract's error answer as an ApiError; anything else gets a sentence by its status. */
export async function toApiError(response: Response): Promise<ApiError> {
  let body: unknown = null
  try {
    body = await response.json()
  } catch {
    // not JSON: a proxy's page, an empty body
  }
  if (isErrorBody(body)) return new ApiError(response.status, body.error.code, body.error.message)
  const fallback = GENERIC[response.status] ?? GENERIC[response.status >= 500 ? 500 : 400]!
  return new ApiError(response.status, `http_${response.status}`, fallback)
}

export type Query = Record<string, string | number | boolean | null | undefined>

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'PATCH' | 'DELETE'
  body?: unknown
  query?: Query
  /** Send the access token and refresh on a 401 (default true). */
  auth?: boolean
  signal?: AbortSignal
}

/** `expired`: a refused refresh ended the session; `suspended`: the hub refused the token because
 * an operator suspended the account (403 `account_suspended`). */
export type SessionEvent = 'login' | 'refresh' | 'logout' | 'expired' | 'suspended'
export type SessionListener = (user: User | null, event: SessionEvent) => void

type FetchFn = (input: string, init: RequestInit) => Promise<Response>

/** Seconds before the access token's expiry at which it is refreshed ahead of need. */
const REFRESH_AHEAD_S = 60

function tokenExpiry(token: string): number | null {
  try {
    const part = token.split('.')[1]
    if (!part) return null
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'))
    const exp = (JSON.parse(json) as { exp?: unknown }).exp
    return typeof exp === 'number' ? exp * 1000 : null
  } catch {
    return null
  }
}

const HINT = 'ctc.session'

/**
 * Whether this browser had a session: a hint, not a secret (the refresh token itself is an
 * httpOnly cookie no script reads). Without it the start-up restore is skipped, so a visitor who
 * never logged in causes no 401 (which the browser would log as an error).
 */
export function hadSession(): boolean {
  try {
    return localStorage.getItem(HINT) === '1'
  } catch {
    return true
  }
}

function rememberSession(active: boolean): void {
  try {
    if (active) localStorage.setItem(HINT, '1')
    else localStorage.removeItem(HINT)
  } catch {
    // private mode: the restore is simply always tried
  }
}

export function buildQuery(query?: Query): string {
  if (!query) return ''
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') params.set(key, String(value))
  }
  const text = params.toString()
  return text ? `?${text}` : ''
}

export class ApiClient {
  private accessToken: string | null = null
  private user: User | null = null
  private refreshing: Promise<boolean> | null = null
  private refreshTimer: ReturnType<typeof setTimeout> | null = null
  private readonly listeners = new Set<SessionListener>()
  private readonly fetchFn: FetchFn
  private readonly origin: () => string
  private readonly refreshAhead: boolean

  constructor(options: { fetch?: FetchFn; origin?: () => string; refreshAhead?: boolean } = {}) {
    this.fetchFn = options.fetch ?? ((input, init) => fetch(input, init))
    this.origin = options.origin ?? (() => runtimeConfig().apiOrigin)
    this.refreshAhead = options.refreshAhead ?? true
  }

  get token(): string | null {
    return this.accessToken
  }

  get currentUser(): User | null {
    return this.user
  }

  onSession(listener: SessionListener): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** Keeps a session (login, signup, refresh) or ends it (null). */
  setSession(session: Session | null, event: SessionEvent): void {
    this.accessToken = session?.access_token ?? null
    this.user = session?.user ?? (session ? this.user : null)
    rememberSession(session !== null)
    this.schedule()
    for (const listener of this.listeners) listener(this.user, event)
  }

  private schedule(): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer)
    this.refreshTimer = null
    if (!this.refreshAhead || !this.accessToken) return
    const expiry = tokenExpiry(this.accessToken)
    if (expiry === null) return
    const wait = Math.max(5_000, expiry - Date.now() - REFRESH_AHEAD_S * 1000)
    this.refreshTimer = setTimeout(() => void this.refresh(), wait)
  }

  /**
   * Asks for a new access token with the refresh cookie. Concurrent callers share one request;
   * a refusal ends the session (`expired` when there was one to end).
   */
  refresh(): Promise<boolean> {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = null
      })
    }
    return this.refreshing
  }

  private async doRefresh(): Promise<boolean> {
    const hadSession = this.accessToken !== null
    let response: Response
    try {
      response = await this.fetchFn(`${this.origin()}/api/auth/refresh`, {
        method: 'POST',
        credentials: 'include',
        headers: { Accept: 'application/json' },
      })
    } catch {
      return false // offline: keep what we have, the next request tries again
    }
    if (!response.ok) {
      if (hadSession || this.user) this.setSession(null, 'expired')
      return false
    }
    const body = (await response.json()) as Session
    this.setSession(body, 'refresh')
    return true
  }

  async request<T>(path: string, options: RequestOptions = {}): Promise<T> {
    const { method = 'GET', body, query, auth = true, signal } = options
    const url = `${this.origin()}${path}${buildQuery(query)}`
    const send = async (): Promise<{ response: Response; token: string | null }> => {
      const token = auth ? this.accessToken : null
      const headers: Record<string, string> = { Accept: 'application/json' }
      if (body !== undefined) headers['Content-Type'] = 'application/json'
      if (token) headers.Authorization = `Bearer ${token}`
      try {
        const response = await this.fetchFn(url, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          credentials: 'include',
          signal,
        })
        return { response, token }
      } catch (error) {
        if (error instanceof DOMException && error.name === 'AbortError') throw error
        throw new ApiError(0, 'network', GENERIC[0]!)
      }
    }
    const first = await send()
    const token = first.token
    let response = first.response
    let sentWith = token
    if (response.status === 401 && auth) {
      // A refresh finished while this request was out: the new token needs no second refresh.
      const renewed = this.accessToken !== null && this.accessToken !== token
      if (renewed || (await this.refresh())) {
        const again = await send()
        response = again.response
        sentWith = again.token
      }
    }
    if (!response.ok) {
      const error = await toApiError(response)
      // An operator suspended this account: every token of it is refused from now on.
      if (error.code === 'account_suspended' && sentWith && this.accessToken === sentWith) {
        this.setSession(null, 'suspended')
      }
      throw error
    }
    if (response.status === 204) return undefined as T
    const text = await response.text()
    return (text ? JSON.parse(text) : undefined) as T
  }

  get<T>(path: string, query?: Query, options: Omit<RequestOptions, 'method' | 'query'> = {}) {
    return this.request<T>(path, { ...options, method: 'GET', query })
  }

  post<T>(path: string, body?: unknown, options: Omit<RequestOptions, 'method' | 'body'> = {}) {
    return this.request<T>(path, { ...options, method: 'POST', body })
  }

  patch<T>(path: string, body: unknown) {
    return this.request<T>(path, { method: 'PATCH', body })
  }

  delete<T = void>(path: string, query?: Query) {
    return this.request<T>(path, { method: 'DELETE', query })
  }
}

/** The app's client; tests build their own. */
export const client = new ApiClient()
