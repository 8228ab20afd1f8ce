/** Numbers a person can read: signs and words for gains and losses, ms with their percentile. */

const MINUS = '\u2212'

/** An API time as a Date; a time without a zone is UTC (the API speaks UTC). */
export function parseTime(iso: string): Date {
  const zoned = /(Z|[+-]\d\d:?\d\d)$/i.test(iso) || !iso.includes('T') ? iso : `${iso}Z`
  return new Date(zoned)
}

export function number(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || Number.isNaN(value)) return '—'
  return value.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  })
}

/** "+12.50", "−3.00", "0.00": always a sign on a gain or a loss. */
export function signed(value: number | null | undefined, digits = 2): string {
  if (value === null || value === undefined || Number.isNaN(value)) return '—'
  const rounded = Number(value.toFixed(digits))
  const text = number(Math.abs(rounded), digits)
  if (rounded > 0) return `+${text}`
  if (rounded < 0) return `${MINUS}${text}`
  return text
}

export function money(value: number | null | undefined, currency = 'USD', digits = 2): string {
  if (value === null || value === undefined || Number.isNaN(value)) return '—'
  return `${number(value, digits)} ${currency}`
}

/** "+12.50 USD gain", "−3.00 USD loss", "0.00 USD": a word beside the sign, not colour only. */
export function pnl(value: number | null | undefined, currency = 'USD'): string {
  if (value === null || value === undefined || Number.isNaN(value)) return '—'
  const text = `${signed(value)} ${currency}`
  if (Number(value.toFixed(2)) > 0) return `${text} gain`
  if (Number(value.toFixed(2)) < 0) return `${text} loss`
  return text
}

export type Tone = 'gain' | 'loss' | 'flat'

export function tone(value: number | null | undefined): Tone {
  if (!value || Math.abs(value) < 0.005) return 'flat'
  return value > 0 ? 'gain' : 'loss'
}

/** 0.5432 → "54.3 %". */
export function percent(ratio: number | null | undefined, digits = 1): string {
  if (ratio === null || ratio === undefined || Number.isNaN(ratio)) return '—'
  return `${number(ratio * 100, digits)} %`
}

/** 0.12 → "+12.0 %", for results per unit staked. */
export function signedPercent(ratio: number | null | undefined, digits = 1): string {
  if (ratio === null || ratio === undefined || Number.isNaN(ratio)) return '—'
  return `${signed(ratio * 100, digits)} %`
}

export function ms(value: number | null | undefined): string {
  if (value === null || value === undefined || Number.isNaN(value)) return '—'
  if (value >= 10_000) return `${number(value / 1000, 1)} s`
  return `${number(Math.round(value))} ms`
}

export function expiry(seconds: number): string {
  if (seconds < 60) return `${seconds} s`
  if (seconds % 3600 === 0) return `${seconds / 3600} h`
  if (seconds % 60 === 0) return `${seconds / 60} min`
  return `${Math.floor(seconds / 60)} min ${seconds % 60} s`
}

export function dateTime(iso: string | null | undefined): string {
  if (!iso) return '—'
  const date = parseTime(iso)
  if (Number.isNaN(date.getTime())) return '—'
  return date.toLocaleString('en-GB', {
    day: '2-digit',
    month: 'short',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  })
}

/** "28 Nov 22:43". */
export function shortDateTime(iso: string | null | undefined): string {
  if (!iso) return '—'
  const d = parseTime(iso)
  if (Number.isNaN(d.getTime())) return '—'
  const day = d.toLocaleDateString('en-GB', { day: 'numeric', month: 'short' })
  const time = d.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' })
  return `${day} ${time}`
}

export function date(iso: string | null | undefined): string {
  if (!iso) return '—'
  const d = parseTime(iso)
  if (Number.isNaN(d.getTime())) return '—'
  return d.toLocaleDateString('en-GB', { day: 'numeric', month: 'short', year: 'numeric' })
}

export function timeOfDay(iso: string | null | undefined): string {
  if (!iso) return '—'
  const d = parseTime(iso)
  if (Number.isNaN(d.getTime())) return '—'
  return d.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit' })
}

export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '—'
  const then = parseTime(iso).getTime()
  if (Number.isNaN(then)) return '—'
  const s = Math.round((now - then) / 1000)
  if (s < 5) return 'just now'
  if (s < 60) return `${s} s ago`
  const m = Math.round(s / 60)
  if (m < 60) return `${m} min ago`
  const h = Math.round(m / 60)
  if (h < 48) return `${h} h ago`
  return `${Math.round(h / 24)} days ago`
}

/** A track record's age: "3 days", "5 months", "new". */
export function trackAge(days: number | null | undefined): string {
  if (days === null || days === undefined) return 'new'
  if (days < 1) return 'under a day'
  if (days < 60) return `${Math.floor(days)} day${Math.floor(days) === 1 ? '' : 's'}`
  if (days < 730) return `${Math.floor(days / 30)} months`
  return `${number(days / 365, 1)} years`
}

/** "…a180c1": an id a provider can tell apart without reading it whole (ids share a time prefix). */
export function maskId(id: string | null | undefined): string {
  if (!id) return '—'
  return id.length <= 8 ? id : `…${id.slice(-6)}`
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${number(n)} ${n === 1 ? one : many}`
}
