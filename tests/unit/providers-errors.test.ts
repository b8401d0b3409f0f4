/**
 * Provider answers mapped to the catalogue's codes (src/errors.ts): quotas are final, too-large is FILE_TOO_LARGE,
 * refusals carry the provider's (sanitised) message, and nothing of the key leaks.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, beforeEach, describe, test } from 'node:test'
import { loadConfig } from '../../src/config.js'
import { anthropicDialect } from '../../src/providers/anthropic.js'
import {
  isProviderError,
  mapUpstreamError,
  parseErrorBody,
  parseRetryAfter,
  sanitizeMessage,
} from '../../src/providers/errors.js'
import { glmDialect } from '../../src/providers/glm.js'
import { kimiDialect } from '../../src/providers/kimi.js'
import { buildMultipartBody, contentDispositionFilename, type FormFields } from '../../src/providers/multipart-body.js'
import { openAiCompatibleDialect, openAiNativeDialect } from '../../src/providers/openai-compatible.js'
import { createProviderRegistry, type ProviderRegistry } from '../../src/providers/registry.js'
import type { ProviderAdapter } from '../../src/providers/types.js'
import { type FakeProvider, startFakeProvider } from '../fakes/provider-server.js'
import { upstream } from './upstream-error.js'

let kimi: FakeProvider
let glm: FakeProvider
let registry: ProviderRegistry
let dir: string
let path: string

before(async () => {
  ;[kimi, glm] = await Promise.all([startFakeProvider({ kind: 'kimi' }), startFakeProvider({ kind: 'glm' })])
  registry = createProviderRegistry(
    loadConfig({
      KIMI_API_KEY: 'sk-kimi-errors-test',
      KIMI_BASE_URL: kimi.baseUrl,
      GLM_API_KEY: 'glm-errors-test',
      GLM_BASE_URL: glm.baseUrl,
      PROVIDER_TIMEOUT_MS: '1000',
      UPLOAD_TIMEOUT_MS: '3000',
      REQUEST_TIMEOUT_MS: '4000',
      SHUTDOWN_TIMEOUT_MS: '5000',
      RETRY_BASE_DELAY_MS: '10',
      RETRY_MAX_DELAY_MS: '20',
    }),
  )
  dir = await mkdtemp(join(tmpdir(), 'filegate-errors-'))
  path = join(dir, 'f.txt')
  await writeFile(path, 'some content here')
})

beforeEach(() => {
  kimi.reset()
  glm.reset()
})

after(async () => {
  await registry.close()
  await Promise.all([kimi.close(), glm.close()])
  await rm(dir, { recursive: true, force: true })
})

// Documented purposes that take a .txt: Kimi's file-extract, GLM's agent (file-extract takes no txt there).
const upload = (adapter: ProviderAdapter) =>
  adapter
    .upload({
      source: { kind: 'file', path, bytes: 17 },
      filename: 'f.txt',
      mimeType: 'text/plain',
      purpose: adapter.name === 'glm' ? 'agent' : 'file-extract',
    })
    .then(
      () => assert.fail('expected a rejection'),
      (err: unknown) => {
        assert.ok(isProviderError(err), `a ProviderError, got ${String(err)}`)
        return err
      },
    )

describe('quota', () => {
  test('Kimi exceeded_current_quota_error is PROVIDER_QUOTA_EXCEEDED, not retried', async () => {
    kimi.quotaExceeded = true
    const err = await upload(registry.require('kimi'))
    assert.equal(err.code, 'PROVIDER_QUOTA_EXCEEDED')
    assert.equal(err.status, 507)
    assert.equal(err.retryable, false)
    assert.equal(err.extensions.provider, 'kimi')
    assert.equal(kimi.requests.upload, 1)
  })

  test('Kimi file-count cap (400) is PROVIDER_QUOTA_EXCEEDED, not retried', async () => {
    kimi.maxFiles = 2
    kimi.addFile({ filename: 'a' })
    kimi.addFile({ filename: 'b' })
    const err = await upload(registry.require('kimi'))
    assert.equal(err.code, 'PROVIDER_QUOTA_EXCEEDED')
    assert.match(err.detail, /max file count 2/)
    assert.equal(kimi.requests.upload, 1)
  })

  test('Kimi 403 insufficient balance is PROVIDER_QUOTA_EXCEEDED (not a rejected key), not retried', async () => {
    kimi.quotaExceeded = 'balance'
    const err = await upload(registry.require('kimi'))
    assert.equal(err.code, 'PROVIDER_QUOTA_EXCEEDED')
    assert.equal(err.upstreamStatus, 403)
    assert.equal(err.retryable, false)
    assert.equal(err.providerFault, false)
    assert.equal(kimi.requests.upload, 1)
  })

  for (const [mode, code] of [
    ['usage-limit', '1308'],
    ['plan-expired', '1309'],
  ] as const) {
    test(`GLM ${code} (${mode}) is PROVIDER_QUOTA_EXCEEDED: not retried, never opens the circuit`, async () => {
      glm.quotaExceeded = mode
      const adapter = registry.require('glm')
      // More failures than CIRCUIT_FAILURE_THRESHOLD (5): a transient 429 would have opened it.
      for (let i = 0; i < 7; i++) {
        const err = await upload(adapter)
        assert.equal(err.code, 'PROVIDER_QUOTA_EXCEEDED')
        assert.equal(err.upstreamStatus, 429)
        assert.equal(err.retryable, false)
        assert.equal(err.providerFault, false, 'not counted toward the breaker')
      }
      assert.equal(glm.requests.upload, 7, 'one request per upload: no retry')
      assert.equal(adapter.circuitState(), 'closed')
    })
  }

  test('GLM 1113 (balance exhausted) is PROVIDER_QUOTA_EXCEEDED, not retried', async () => {
    glm.quotaExceeded = true
    const err = await upload(registry.require('glm'))
    assert.equal(err.code, 'PROVIDER_QUOTA_EXCEEDED')
    assert.equal(err.retryable, false)
    assert.equal(glm.requests.upload, 1)
  })
})

describe('too large', () => {
  test('Kimi 400 "File size is too large" is FILE_TOO_LARGE with limit_bytes', async () => {
    kimi.maxFileBytes = 10
    const err = await upload(registry.require('kimi'))
    assert.equal(err.code, 'FILE_TOO_LARGE')
    assert.equal(err.status, 413)
    assert.equal(err.extensions.limit_bytes, 100 * 1024 * 1024)
    assert.equal(kimi.requests.upload, 1)
  })

  test('GLM 435 is FILE_TOO_LARGE', async () => {
    glm.maxFileBytes = 10
    const err = await upload(registry.require('glm'))
    assert.equal(err.code, 'FILE_TOO_LARGE')
    assert.equal(err.extensions.provider, 'glm')
    assert.equal(glm.requests.upload, 1)
  })
})

describe('refusals', () => {
  test('a content refusal is PROVIDER_REJECTED carrying the provider message', async () => {
    kimi.rejectContent = 'file content is not allowed: policy 7'
    const err = await upload(registry.require('kimi'))
    assert.equal(err.code, 'PROVIDER_REJECTED')
    assert.equal(err.status, 422)
    assert.equal(err.detail, 'file content is not allowed: policy 7')
    assert.equal(kimi.requests.upload, 1)
  })

  test('GLM 1301 content refusal too', async () => {
    glm.rejectContent = true
    const err = await upload(registry.require('glm'))
    assert.equal(err.code, 'PROVIDER_REJECTED')
    assert.equal(err.detail, 'file content is not allowed')
  })
})

describe('mapping table', () => {
  test('GLM codes', () => {
    const cases: Array<[number, string, string, boolean]> = [
      [429, '1113', 'PROVIDER_QUOTA_EXCEEDED', false],
      [429, '1112', 'PROVIDER_ERROR', false],
      [429, '1121', 'PROVIDER_ERROR', false],
      [429, '1302', 'PROVIDER_RATE_LIMITED', true],
      [429, '1303', 'PROVIDER_RATE_LIMITED', true],
      [429, '1305', 'PROVIDER_RATE_LIMITED', true],
      [429, '1304', 'PROVIDER_RATE_LIMITED', false],
      [429, '1308', 'PROVIDER_QUOTA_EXCEEDED', false],
      [429, '1309', 'PROVIDER_QUOTA_EXCEEDED', false],
      [429, '1310', 'PROVIDER_QUOTA_EXCEEDED', false],
      [429, '1312', 'PROVIDER_RATE_LIMITED', true],
      [429, '1313', 'PROVIDER_RATE_LIMITED', false],
      [401, '1000', 'PROVIDER_ERROR', false],
      [434, '434', 'PROVIDER_ERROR', false],
      [435, '435', 'FILE_TOO_LARGE', false],
      [400, '1214', 'PROVIDER_REJECTED', false],
      [500, '500', 'PROVIDER_ERROR', true],
      [404, '404', 'NOT_FOUND', false],
    ]
    for (const [status, code, expected, retryable] of cases) {
      const err = mapUpstreamError(upstream({ status, code }), glmDialect.classifyError)
      assert.equal(err.code, expected, `${status}/${code}`)
      assert.equal(err.retryable, retryable, `${status}/${code} retryable`)
    }
  })

  test('Kimi types', () => {
    const cases: Array<[number, string, string, string, boolean]> = [
      [429, 'rate_limit_reached_error', '', 'PROVIDER_RATE_LIMITED', true],
      [429, 'engine_overloaded_error', '', 'PROVIDER_RATE_LIMITED', true],
      [429, 'exceeded_current_quota_error', '', 'PROVIDER_QUOTA_EXCEEDED', false],
      [400, 'invalid_request_error', 'File size is zero, please confirm and re-upload the file', 'EMPTY_FILE', false],
      [
        400,
        'content_filter',
        'The request was rejected because it was considered high risk',
        'PROVIDER_REJECTED',
        false,
      ],
      [403, 'permission_denied_error', '', 'PROVIDER_ERROR', false],
      [403, 'exceeded_current_quota_error', '', 'PROVIDER_QUOTA_EXCEEDED', false],
      [403, '', 'Your account is suspended due to insufficient balance', 'PROVIDER_QUOTA_EXCEEDED', false],
      [404, 'resource_not_found_error', '', 'NOT_FOUND', false],
      [503, 'server_error', '', 'PROVIDER_ERROR', true],
    ]
    for (const [status, type, message, expected, retryable] of cases) {
      const err = mapUpstreamError(upstream({ provider: 'kimi', status, type, message }), kimiDialect.classifyError)
      assert.equal(err.code, expected, `${status}/${type}`)
      assert.equal(err.retryable, retryable, `${status}/${type} retryable`)
      assert.equal(err.extensions.provider, 'kimi')
    }
  })

  test('Anthropic types (docs.claude.com/en/api/errors)', () => {
    const cases: Array<[number, string, string, string, boolean]> = [
      [429, 'rate_limit_error', 'Number of requests has exceeded your rate limit', 'PROVIDER_RATE_LIMITED', true],
      [529, 'overloaded_error', 'Overloaded', 'PROVIDER_RATE_LIMITED', true],
      [529, '', '', 'PROVIDER_RATE_LIMITED', true],
      [500, 'api_error', 'Internal server error', 'PROVIDER_ERROR', true],
      [400, 'invalid_request_error', 'file: Field required', 'PROVIDER_REJECTED', false],
      [401, 'authentication_error', 'invalid x-api-key', 'PROVIDER_ERROR', false],
      [
        403,
        'permission_error',
        'Your API key does not have permission to use the specified resource',
        'PROVIDER_ERROR',
        false,
      ],
      [
        403,
        'permission_error',
        'Your organization has reached its file storage limit.',
        'PROVIDER_QUOTA_EXCEEDED',
        false,
      ],
      [404, 'not_found_error', 'File not found: file_011', 'NOT_FOUND', false],
      [413, 'request_too_large', 'Request exceeds the maximum allowed number of bytes.', 'FILE_TOO_LARGE', false],
    ]
    for (const [status, type, message, expected, retryable] of cases) {
      const err = mapUpstreamError(
        upstream({ provider: 'anthropic', status, type, message }),
        anthropicDialect.classifyError,
      )
      assert.equal(err.code, expected, `${status}/${type}`)
      assert.equal(err.retryable, retryable, `${status}/${type} retryable`)
      assert.equal(err.providerFault, retryable, `${status}/${type} counts toward the breaker only when transient`)
    }
    // The error shape itself: {"type":"error","error":{"type","message"},"request_id"}.
    assert.deepEqual(
      parseErrorBody(
        '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}',
      ),
      { type: 'overloaded_error', message: 'Overloaded' },
    )
  })

  test('OpenAI: 429 insufficient_quota is a spent account, other 429s and 5xx are retried', () => {
    const cases: Array<[number, string, string, string, boolean]> = [
      [429, 'insufficient_quota', 'insufficient_quota', 'PROVIDER_QUOTA_EXCEEDED', false],
      [429, 'requests', 'rate_limit_exceeded', 'PROVIDER_RATE_LIMITED', true],
      [500, 'server_error', '', 'PROVIDER_ERROR', true],
      [503, 'server_error', '', 'PROVIDER_ERROR', true],
      [401, 'invalid_request_error', 'invalid_api_key', 'PROVIDER_ERROR', false],
    ]
    for (const [status, type, code, expected, retryable] of cases) {
      const err = mapUpstreamError(
        upstream({ provider: 'openai', status, type, code }),
        openAiCompatibleDialect.classifyError,
      )
      assert.equal(err.code, expected, `${status}/${type}/${code}`)
      assert.equal(err.retryable, retryable, `${status}/${code} retryable`)
    }
  })

  test('a rate limit carries Retry-After; 404 on content is CONTENT_UNAVAILABLE', () => {
    const limited = mapUpstreamError(
      upstream({ status: 429, code: '1302', retryAfterMs: 2500 }),
      glmDialect.classifyError,
    )
    assert.equal(limited.retryAfterSeconds, 3)
    assert.equal(limited.upstreamRetryAfterMs, 2500)
    const gone = mapUpstreamError(upstream({ status: 404, op: 'content' }))
    assert.equal(gone.code, 'CONTENT_UNAVAILABLE')
    assert.equal(gone.notFound, true)
  })
})

describe('helpers', () => {
  test('sanitizeMessage redacts keys, strips control characters, truncates to 500', () => {
    const key = 'secret-key-value-123'
    const out = sanitizeMessage(`bad key ${key}\r\nsk-abcdef123456 Bearer xyz ${'y'.repeat(600)}`, [key])
    assert.ok(!out.includes(key))
    assert.ok(!out.includes('sk-abcdef123456'))
    assert.ok(!out.includes('xyz'))
    assert.ok(!/[\r\n]/.test(out))
    assert.equal(out.length, 500)
  })

  test('parseRetryAfter reads seconds and HTTP dates', () => {
    assert.equal(parseRetryAfter('2'), 2000)
    assert.equal(parseRetryAfter(undefined), undefined)
    assert.equal(parseRetryAfter('soon'), undefined)
    const now = Date.parse('2025-01-01T00:00:00Z')
    assert.equal(parseRetryAfter('Wed, 01 Jan 2025 00:00:05 GMT', now), 5000)
  })

  test('parseErrorBody reads the three shapes', () => {
    assert.deepEqual(parseErrorBody('{"error":{"type":"t","message":"m"}}'), { type: 't', message: 'm' })
    assert.deepEqual(parseErrorBody('{"error":{"code":"1113","message":"m"}}'), { code: '1113', message: 'm' })
    assert.deepEqual(parseErrorBody('{"error":{"code":1302,"message":"m"}}'), { code: '1302', message: 'm' })
    assert.deepEqual(parseErrorBody('<html>bad gateway</html>'), { message: '<html>bad gateway</html>' })
  })

  test('contentDispositionFilename escapes quotes and line breaks, adds filename* for non-ASCII', () => {
    assert.equal(contentDispositionFilename('a.pdf'), 'filename="a.pdf"')
    assert.equal(contentDispositionFilename('a"b\r\n.pdf'), 'filename="a%22b%0D%0A.pdf"')
    assert.equal(contentDispositionFilename('é.pdf'), `filename="é.pdf"; filename*=UTF-8''%C3%A9.pdf`)
  })
})

describe('form fields per dialect', () => {
  const input = {
    source: { kind: 'buffer' as const, buffer: Buffer.from('x'), bytes: 1 },
    filename: 'a.txt',
    mimeType: 'text/plain',
    purpose: 'file',
    expiresInSeconds: 7200,
  }
  const head = async (fields?: FormFields) => {
    const body = buildMultipartBody(input, fields)
    const first = await body.body.next()
    await body.body.return()
    return String(first.value)
  }

  test('Anthropic sends the file part alone; OpenAI native adds expires_after; the default is purpose', async () => {
    const anthropic = await head(anthropicDialect.formFields?.(input))
    assert.doesNotMatch(anthropic, /name="purpose"/)
    assert.match(anthropic, /^--[^\r]+\r\nContent-Disposition: form-data; name="file"; filename="a.txt"/)
    const native = await head(
      openAiNativeDialect({ minSeconds: 3600, maxSeconds: 2_592_000, source: '' }).formFields?.(input),
    )
    assert.match(native, /name="purpose"\r\n\r\nfile\r\n/)
    assert.match(native, /name="expires_after\[anchor\]"\r\n\r\ncreated_at\r\n/)
    assert.match(native, /name="expires_after\[seconds\]"\r\n\r\n7200\r\n/)
    assert.equal(openAiCompatibleDialect.formFields, undefined, 'a compatible provider gets the default: purpose only')
    assert.match(await head(), /name="purpose"\r\n\r\nfile\r\n--/)
  })
})
