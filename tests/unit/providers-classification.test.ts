/**
 * The one classification of a failure (src/providers/errors.ts classifyFailure): what the OpenAI
 * facade's x-should-retry, the retries and the breaker all read.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { AppError } from '../../src/errors.js'
import { badResponse, circuitOpenError, classifyFailure, mapUpstreamError } from '../../src/providers/errors.js'
import { glmDialect } from '../../src/providers/glm.js'
import { kimiDialect } from '../../src/providers/kimi.js'
import { upstream } from './upstream-error.js'

describe('one classification for every face', () => {
  const glmError = (status: number, code: string) =>
    mapUpstreamError(upstream({ status, code }), glmDialect.classifyError)
  const kimiError = (status: number, type: string, message = '') =>
    mapUpstreamError(upstream({ provider: 'kimi', status, type, message }), kimiDialect.classifyError)

  test('clients are told to retry only what time can cure', () => {
    const cases: Array<[string, AppError, boolean]> = [
      ['GLM 1302 concurrency', glmError(429, '1302'), true],
      ['GLM 500', glmError(500, '500'), true],
      ['GLM 1304 daily cap', glmError(429, '1304'), false],
      ['GLM 1112 locked account', glmError(429, '1112'), false],
      ['GLM 1000 bad key', glmError(401, '1000'), false],
      ['GLM 1308 usage limit', glmError(429, '1308'), false],
      ['a malformed provider reply', badResponse('glm', 'body is not JSON'), false],
      ['an open circuit', circuitOpenError('glm', 1000), true],
      ['a refused file', glmError(400, '1214'), false],
      ['our own rate limit', new AppError('RATE_LIMITED'), true],
      ['the database away', new AppError('DATABASE_UNAVAILABLE'), true],
      ['a validation error', new AppError('VALIDATION_FAILED'), false],
      ['an internal error', new AppError('INTERNAL'), false],
      ['our account cap', new AppError('PROVIDER_QUOTA_EXCEEDED'), false],
      ['Kimi 403 insufficient balance', kimiError(403, '', 'insufficient balance'), false],
      ['Kimi 429 engine overloaded', kimiError(429, 'engine_overloaded_error'), true],
    ]
    for (const [what, err, retry] of cases) {
      assert.equal(classifyFailure(err).clientMayRetry, retry, what)
      // The faces read it off the error itself (src/errors.ts), never from the providers' module.
      assert.equal(err.clientMayRetry, retry, `${what}: carried by the AppError`)
    }
  })

  test('quota exhaustion is one flag, whoever noticed it (provider or our cap)', () => {
    assert.equal(classifyFailure(glmError(429, '1309')).quotaExhausted, true)
    assert.equal(classifyFailure(new AppError('PROVIDER_QUOTA_EXCEEDED')).quotaExhausted, true)
    assert.equal(classifyFailure(glmError(429, '1302')).quotaExhausted, false)
    assert.equal(glmError(429, '1309').quotaExhausted, true)
    assert.equal(new AppError('TENANT_QUOTA_EXCEEDED').quotaExhausted, true)
    assert.equal(glmError(429, '1302').quotaExhausted, false)
  })

  test('the breaker counts provider faults only', () => {
    assert.equal(classifyFailure(glmError(500, '500')).countsTowardBreaker, true)
    assert.equal(classifyFailure(glmError(429, '1302')).countsTowardBreaker, true)
    assert.equal(classifyFailure(glmError(429, '1308')).countsTowardBreaker, false)
    assert.equal(classifyFailure(glmError(429, '1113')).countsTowardBreaker, false)
  })
})
