import { describe, expect, it } from 'vitest'
import { maskId, parseTime, ms, percent, pnl, signed, signedPercent, trackAge } from './format'

describe('numbers a person can read', () => {
  it('signs gains and losses and says which', () => {
    expect(signed(12.5)).toBe('+12.50')
    expect(signed(-3)).toBe('\u22123.00')
    expect(signed(0)).toBe('0.00')
    expect(pnl(12.5)).toBe('+12.50 USD gain')
    expect(pnl(-3)).toBe('\u22123.00 USD loss')
    expect(pnl(0)).toBe('0.00 USD')
  })

  it('reads API times without a zone as UTC', () => {
    expect(parseTime('2026-11-29T00:28:39.500000').toISOString()).toBe('2026-11-29T00:28:39.500Z')
    expect(parseTime('2026-11-29T00:28:39Z').toISOString()).toBe('2026-11-29T00:28:39.000Z')
    expect(parseTime('2026-11-29T01:28:39+01:00').toISOString()).toBe('2026-11-29T00:28:39.000Z')
  })

  it('percent, latency, ages and ids', () => {
    expect(percent(0.5432)).toBe('54.3 %')
    expect(signedPercent(0.12)).toBe('+12.0 %')
    expect(ms(141.6)).toBe('142 ms')
    expect(ms(null)).toBe('—')
    expect(trackAge(3)).toBe('3 days')
    expect(trackAge(1)).toBe('1 day')
    expect(trackAge(null)).toBe('new')
    expect(maskId('6b0b71b7d6731e0d9cd580c1')).toBe('…d580c1')
  })
})
