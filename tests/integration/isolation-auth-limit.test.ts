/**
 * Failed authentication is limited per client address: with RATE_LIMIT_PER_MINUTE=20, wrong keys
 * from one address get 401 twenty times, then 429 RATE_LIMITED with Retry-After. Other addresses
 * and valid keys are not held back by it, and the probes are never limited.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { LightMyRequestResponse } from 'fastify'
import { auth, testKeys } from '../helper.js'
import { assertProblem, setupUploads, useFileDatabase } from './uploads-support.js'

const database = useFileDatabase()

describe('failed authentication is rate limited per address', () => {
  test('30 wrong keys with RATE_LIMIT_PER_MINUTE=20: 20 × 401, then 429 with Retry-After; probes unlimited', async (t) => {
    const ctx = await setupUploads(t, database, { RATE_LIMIT_PER_MINUTE: '20' })
    if (!ctx) return
    const attacker = '203.0.113.7'
    const statuses: number[] = []
    for (let i = 0; i < 30; i++) {
      const res = await ctx.app.inject({
        method: 'GET',
        url: i % 2 ? '/v1/files' : '/v1/limits',
        remoteAddress: attacker,
        headers: i % 3 ? auth(`wrong-key-${i}-0123456789`) : {},
      })
      statuses.push(res.statusCode)
      if (i < 20) assertProblem(res, 401, 'UNAUTHORIZED')
      else {
        assertProblem(res, 429, 'RATE_LIMITED')
        const wait = Number(res.headers['retry-after'])
        assert.ok(wait >= 1 && wait <= 60, `Retry-After ${res.headers['retry-after']}`)
      }
    }
    assert.deepEqual(statuses, [...Array(20).fill(401), ...Array(10).fill(429)])
    // The admin route and the upload route are limited alike.
    for (const [method, url] of [
      ['POST', '/v1/cleanup'],
      ['POST', '/v1/files'],
      ['POST', '/providers/kimi/v1/files'],
    ] as const) {
      const res: LightMyRequestResponse = await ctx.app.inject({
        method,
        url,
        remoteAddress: attacker,
        headers: auth('wrong-key-0123456789'),
      })
      assert.equal(res.statusCode, 429, `${method} ${url}: ${res.body}`)
    }

    // Another address is not affected, and a valid key from the limited one still works.
    const elsewhere = await ctx.app.inject({ method: 'GET', url: '/v1/limits', remoteAddress: '198.51.100.9' })
    assertProblem(elsewhere, 401, 'UNAUTHORIZED')
    const valid = await ctx.app.inject({
      method: 'GET',
      url: '/v1/limits',
      remoteAddress: attacker,
      headers: auth(testKeys.alice),
    })
    assert.equal(valid.statusCode, 200, valid.body)

    // Probes are never limited, from any address.
    for (let i = 0; i < 40; i++) {
      for (const url of ['/healthz', '/readyz', '/metrics']) {
        const res: LightMyRequestResponse = await ctx.app.inject({ method: 'GET', url, remoteAddress: attacker })
        assert.equal(res.statusCode, 200, `${url} #${i}: ${res.statusCode}`)
      }
    }
  })

  test('RATE_LIMIT_PER_MINUTE=0 limits nothing', async (t) => {
    const ctx = await setupUploads(t, database, { RATE_LIMIT_PER_MINUTE: '0' })
    if (!ctx) return
    for (let i = 0; i < 30; i++) {
      const res = await ctx.app.inject({ method: 'GET', url: '/v1/files', headers: auth('wrong-key-0123456789') })
      assertProblem(res, 401, 'UNAUTHORIZED')
    }
  })
})
