/**
 * Runtime configuration, read from `/config.json` beside `index.html` before the app mounts.
 *
 * `apiOrigin` is where the hub answers REST and Socket.IO: empty for the same origin (the hub
 * serves the app itself), or e.g. `https://hub.example.com` when the app is published to S3 behind
 * CloudFront. Changing it needs no rebuild: edit `config.json` in the bucket.
 */
export interface RuntimeConfig {
  apiOrigin: string
}

const config: RuntimeConfig = { apiOrigin: '' }

export function runtimeConfig(): Readonly<RuntimeConfig> {
  return config
}

export function setRuntimeConfig(next: Partial<RuntimeConfig>): void {
  if (typeof next.apiOrigin === 'string') config.apiOrigin = next.apiOrigin.replace(/\/+$/, '')
}

/** Fetches `/config.json`; a missing or broken file leaves the same-origin default. */
export async function loadRuntimeConfig(fetchFn: typeof fetch = fetch): Promise<RuntimeConfig> {
  try {
    const response = await fetchFn('/config.json', { cache: 'no-store' })
    if (response.ok) setRuntimeConfig((await response.json()) as Partial<RuntimeConfig>)
  } catch {
    // same origin
  }
  return config
}

export function apiUrl(path: string): string {
  return `${config.apiOrigin}${path}`
}
