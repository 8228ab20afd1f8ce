import { describe, expect, it } from 'vitest'
import { brokerName, reasonOnly, subscriptionStateText, tradeReasonText } from './reasons'

describe('reason texts', () => {
  it('names the broker on its own refusals', () => {
    expect(tradeReasonText('rejected', 'insufficient_balance', { broker: 'deriv' })).toBe(
      'Rejected by Deriv: insufficient balance',
    )
    expect(tradeReasonText('rejected', 'market_closed', { broker: 'paper' })).toBe(
      'Rejected by Paper: the market for this asset is closed',
    )
  })

  it("speaks of the subscriber's own limits with their values", () => {
    expect(tradeReasonText('rejected', 'daily_loss_limit', { limits: { daily_loss_limit: 50 }, currency: 'USD' })).toBe(
      'Rejected: your daily loss limit of 50 USD was reached',
    )
    expect(tradeReasonText('skipped', 'daily_loss_limit')).toBe('Skipped: your daily loss limit was reached')
    expect(tradeReasonText('rejected', 'max_trades_per_day', { limits: { max_trades_per_day: 10 } })).toBe(
      'Rejected: your limit of 10 trades per day was reached',
    )
  })

  it('tells a provider whose pause or limit it was', () => {
    expect(tradeReasonText('skipped', 'paused', { audience: 'provider' })).toBe('Skipped: the subscriber has paused copying')
    expect(tradeReasonText('skipped', 'paused')).toBe('Skipped: your copying of this channel is paused')
    expect(reasonOnly('daily_loss_limit', { audience: 'provider' })).toBe("The subscriber's daily loss limit was reached")
  })

  it('has words for every reason of the contract, never the bare code', () => {
    const codes = [
      'expired', 'cancelled', 'paused', 'unsubscribed', 'insufficient_balance', 'daily_loss_limit',
      'max_trades_per_day', 'stake_below_minimum', 'stake_above_maximum', 'market_closed',
      'invalid_token', 'rejected', 'broker_unreachable', 'broker_error', 'rate_limited',
      'account_missing', 'account_unusable', 'balance_unavailable', 'not_replicated',
    ]
    for (const code of codes) {
      const text = tradeReasonText('failed', code, { broker: 'deriv' })
      expect(text.startsWith('Failed: ')).toBe(true)
      expect(text).not.toMatch(/_/)
      expect(text).not.toBe(`Failed: ${code}`)
    }
    expect(tradeReasonText('skipped', 'expired')).toBe("Skipped: the signal's deadline passed before it could be placed")
    expect(tradeReasonText('failed', 'broker_unreachable', { broker: 'deriv' })).toBe('Failed: Deriv could not be reached in time')
  })

  it('falls back to readable words for an unknown code, and the status alone without one', () => {
    expect(tradeReasonText('failed', 'some_new_reason')).toBe('Failed: some new reason')
    expect(tradeReasonText('placed', null)).toBe('Placed')
    expect(brokerName('iqoption')).toBe('Iqoption')
  })

  it('explains a subscription that is not active', () => {
    expect(subscriptionStateText('active', null)).toBe('Copying every signal')
    expect(subscriptionStateText('paused', null)).toMatch(/Paused by you/)
    expect(subscriptionStateText('stopped', 'daily_loss_limit', { daily_loss_limit: 50 }, 'USD')).toBe(
      'Stopped for today: your daily loss limit of 50 USD was reached',
    )
    expect(subscriptionStateText('stopped', 'account_removed')).toMatch(/broker account was removed/)
  })
})
