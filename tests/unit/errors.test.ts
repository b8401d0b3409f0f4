/** The error module: the mapping of thrown values, the log level and the headers both HTTP faces send. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { AppError, asAppError, errorHeaders, errors, logFailure, toProblem } from '../../src/errors.js'

describe('asAppError', () => {
  test('an AppError is kept as it is', () => {
    const err = errors.fileTooLarge('glm', 1000)
    assert.equal(asAppError(err), err)
  })

  test('schema validation becomes VALIDATION_FAILED listing each failure', () => {
    const thrown = Object.assign(new Error('querystring/limit must be <= 100'), {
      validation: [{ instancePath: '/limit', message: 'must be <= 100' }, {}],
      validationContext: 'querystring',
    })
    const err = asAppError(thrown)
    assert.equal(err.code, 'VALIDATION_FAILED')
    assert.equal(err.detail, 'querystring/limit must be <= 100')
    assert.deepEqual(err.extensions.errors, [
      { in: 'querystring', path: '/limit', message: 'must be <= 100' },
      { in: 'querystring', path: '', message: 'invalid' },
    ])
  })

  test("Fastify's own codes map to their catalogue codes; other 4xx are the client's 400", () => {
    assert.equal(asAppError({ code: 'FST_FILES_LIMIT', message: 'reach files limit' }).code, 'TOO_MANY_FILES')
    assert.equal(asAppError({ code: 'FST_REQ_FILE_TOO_LARGE', message: 'too large' }).code, 'FILE_TOO_LARGE')
    assert.equal(asAppError({ statusCode: 429 }).code, 'RATE_LIMITED')
    const other = asAppError({ statusCode: 414, message: 'URI too long' })
    assert.equal(other.code, 'VALIDATION_FAILED')
    assert.equal(other.detail, 'URI too long')
  })

  test('anything else is a 500 INTERNAL whose detail says nothing about what was thrown', () => {
    for (const thrown of [new Error('password=hunter2 at db.internal:5432'), 'a string', null, undefined, 42]) {
      const err = asAppError(thrown)
      assert.equal(err.code, 'INTERNAL')
      assert.equal(err.status, 500)
      assert.doesNotMatch(err.detail, /hunter2|db\.internal|a string|42/)
    }
  })
})

describe('errorHeaders', () => {
  test('Retry-After on a 429 or 503 that names a wait, in whole seconds and at least 1', () => {
    assert.equal(errorHeaders(errors.rateLimited('slow down', 0))['retry-after'], '1')
    assert.equal(errorHeaders(errors.rateLimited('slow down', 2.1))['retry-after'], '3')
    assert.equal(errorHeaders(errors.shuttingDown())['retry-after'], '5')
    assert.equal(errorHeaders(errors.databaseUnavailable('away'))['retry-after'], '5')
  })

  test('no Retry-After where no wait helps or none is known', () => {
    assert.equal(errorHeaders(errors.providerNotConfigured('kimi'))['retry-after'], undefined)
    assert.equal(errorHeaders(errors.fileTooLarge('kimi', 10))['retry-after'], undefined)
    const quota = new AppError('PROVIDER_QUOTA_EXCEEDED', { retryAfterSeconds: 30 })
    assert.equal(errorHeaders(quota)['retry-after'], undefined, '507 carries no Retry-After')
    assert.equal(errorHeaders(quota, 429)['retry-after'], '30', 'answered as a 429, it does')
  })

  test('a 401 carries the Bearer challenge (RFC 6750 §3), nothing else does', () => {
    assert.equal(errorHeaders(errors.unauthorized('no key'))['www-authenticate'], 'Bearer realm="filegate"')
    assert.equal(errorHeaders(errors.forbidden('admin only'))['www-authenticate'], undefined)
  })

  test('the problem+json answer carries the same headers', () => {
    const problem = toProblem(errors.unauthorized('no key'), 'req-1')
    assert.equal(problem.headers['www-authenticate'], 'Bearer realm="filegate"')
    assert.equal(problem.headers['content-type'], 'application/problem+json; charset=utf-8')
    assert.equal(problem.body.instance, 'req-1')
    assert.equal(problem.body.type, 'https://filegate.dev/problems/unauthorized')
  })
})

describe('logFailure', () => {
  const capture = () => {
    const lines: Array<{ level: string; fields: Record<string, unknown>; message: string }> = []
    const log = {
      error: (fields: object, message: string) => lines.push({ level: 'error', fields: { ...fields }, message }),
      info: (fields: object, message: string) => lines.push({ level: 'info', fields: { ...fields }, message }),
    }
    return { lines, log }
  }

  test('a 5xx is logged as an error with what was thrown', () => {
    const { lines, log } = capture()
    const thrown = new Error('boom')
    logFailure(log, thrown, asAppError(thrown))
    assert.deepEqual(lines, [{ level: 'error', fields: { err: thrown, code: 'INTERNAL' }, message: 'request failed' }])
  })

  test('a refusal is one info line with its code and detail, without the thrown value', () => {
    const { lines, log } = capture()
    const err = errors.emptyFile()
    logFailure(log, err, err)
    assert.deepEqual(lines, [
      {
        level: 'info',
        fields: { code: 'EMPTY_FILE', detail: 'The file part has no content' },
        message: 'request refused',
      },
    ])
  })
})
