/** A scripted fetch for the client's tests: answers by method and path, records every call. */
import { vi } from 'vitest'

export type Handler = (init: RequestInit & { url: string }) => Response | Promise<Response>

export function json(status: number, body?: unknown, headers: Record<string, string> = {}): Response {
  if (status === 204) return new Response(null, { status })
  return new Response(body === undefined ? '' : JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json', ...headers },
  })
}

/** A JWT-shaped token (unsigned) whose `exp` is far ahead: the client only reads its expiry. */
export function token(name: string, expInS = 900): string {
  const b64 = (o: object) => btoa(JSON.stringify(o)).replace(/=+$/, '')
  return `${b64({ alg: 'HS256' })}.${b64({ sub: name, exp: Math.floor(Date.now() / 1000) + expInS })}.sig`
}

export function scriptedFetch(routes: Record<string, Handler>) {
  const calls: { method: string; path: string; headers: Record<string, string>; body: unknown; credentials?: string }[] = []
  const fn = vi.fn(async (input: string, init: RequestInit = {}) => {
    const url = new URL(input, 'http://app.test')
    const method = (init.method ?? 'GET').toUpperCase()
    const headers = (init.headers ?? {}) as Record<string, string>
    calls.push({
      method,
      path: url.pathname + url.search,
      headers,
      body: init.body ? JSON.parse(String(init.body)) : undefined,
      credentials: init.credentials,
    })
    const handler = routes[`${method} ${url.pathname}`]
    if (!handler) return json(404, { error: { code: 'not_found', message: 'No such endpoint.' } })
    return handler({ ...init, url: url.toString() })
  })
  return { fetch: fn, calls }
}
