/** AuthFailureLimit: per-address windows, their end, and the bound on remembered addresses. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { AuthFailureLimit } from '../../src/plugins/auth-failure-limit.js'

describe('AuthFailureLimit', () => {
  test('an address is limited after maxFailures within the window, until the window ends', () => {
    const limit = new AuthFailureLimit(3, 60_000)
    const t0 = 1_000_000
    for (let i = 0; i < 3; i++) {
      assert.equal(limit.retryAfterMs('a', t0 + i), 0)
      limit.recordFailure('a', t0 + i)
    }
    assert.equal(limit.retryAfterMs('a', t0 + 10), 60_000 - 10)
    assert.equal(limit.retryAfterMs('b', t0 + 10), 0, 'other addresses are not affected')
    assert.equal(limit.retryAfterMs('a', t0 + 60_000), 0, 'a new window starts afresh')
    limit.recordFailure('a', t0 + 60_000)
    assert.equal(limit.retryAfterMs('a', t0 + 60_001), 0)
  })

  test('at most maxAddresses are remembered; expired windows go first, then the oldest', () => {
    const limit = new AuthFailureLimit(1, 1_000, 3)
    limit.recordFailure('old', 0)
    limit.recordFailure('a', 500)
    limit.recordFailure('b', 600)
    limit.recordFailure('c', 1_200) // 'old' has expired: it is dropped
    assert.ok(limit.retryAfterMs('a', 1_200) > 0)
    limit.recordFailure('d', 1_300) // none expired: the oldest ('a') is forgotten
    assert.equal(limit.retryAfterMs('a', 1_300), 0)
    for (const address of ['b', 'c', 'd']) assert.ok(limit.retryAfterMs(address, 1_300) > 0, address)
  })
})
