/**
 * Timeouts, retries (with Retry-After), the circuit breaker and the upload slots, against
 * fake providers on loopback with small timings.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { after, before, beforeEach, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { loadConfig } from '../../src/config.js'
import { isProviderError } from '../../src/providers/errors.js'
import { createProviderRegistry, type ProviderRegistry } from '../../src/providers/registry.js'
import type { CircuitState, ProviderAdapter } from '../../src/providers/types.js'
import { type FakeProvider, startFakeProvider } from '../fakes/provider-server.js'

const KEY = 'sk-resilience-test-key-0001'

const env = (fake: FakeProvider, extra: Record<string, string> = {}) => ({
  KIMI_API_KEY: KEY,
  KIMI_BASE_URL: fake.baseUrl,
  PROVIDER_TIMEOUT_MS: '300',
  UPLOAD_TIMEOUT_MS: '3000',
  REQUEST_TIMEOUT_MS: '4000',
  SHUTDOWN_TIMEOUT_MS: '5000',
  RETRY_MAX_ATTEMPTS: '3',
  RETRY_BASE_DELAY_MS: '10',
  RETRY_MAX_DELAY_MS: '50',
  CIRCUIT_FAILURE_THRESHOLD: '5',
  CIRCUIT_RESET_MS: '300',
  ...extra,
})

let fake: FakeProvider
let dir: string
let path: string
const events = {
  opened: [] as string[],
  states: [] as CircuitState[],
  attempts: [] as string[],
}
let registry: ProviderRegistry
let kimi: ProviderAdapter

const build = (extra: Record<string, string> = {}) => {
  const reg = createProviderRegistry(loadConfig(env(fake, extra)), {
    onCircuitOpen: (p) => events.opened.push(p),
    onCircuitStateChange: (_p, s) => events.states.push(s),
    onAttempt: (_p, op) => events.attempts.push(op),
  })
  return { reg, kimi: reg.require('kimi') }
}

const upload = (adapter: ProviderAdapter = kimi, signal?: AbortSignal) =>
  adapter.upload(
    { source: { kind: 'file', path, bytes: 11 }, filename: 'a.txt', mimeType: 'text/plain', purpose: 'file-extract' },
    signal,
  )

before(async () => {
  fake = await startFakeProvider({ kind: 'kimi', apiKey: KEY })
  dir = await mkdtemp(join(tmpdir(), 'filegate-resilience-'))
  path = join(dir, 'a.txt')
  await writeFile(path, 'hello world')
})

beforeEach(() => {
  fake.reset()
  events.opened.length = 0
  events.states.length = 0
  events.attempts.length = 0
  ;({ reg: registry, kimi } = build())
})

after(async () => {
  await fake.close()
  await rm(dir, { recursive: true, force: true })
})

describe('retries', () => {
  test('500 twice then success: three attempts, one file', async (t) => {
    t.after(() => registry.close())
    fake.failNext(2, 500, 'upload')
    const file = await upload()
    assert.equal(fake.requests.upload, 3)
    assert.equal(fake.uploads.length, 1)
    assert.equal(file.id, fake.uploads[0]?.id)
    assert.deepEqual(events.attempts, ['upload', 'upload', 'upload'])
  })

  test('gives up after RETRY_MAX_ATTEMPTS with PROVIDER_ERROR, without leaking the body', async (t) => {
    t.after(() => registry.close())
    fake.failNext(5, 503, 'delete')
    const err = await kimi.delete('some-id').catch((e: unknown) => e)
    assert.ok(isProviderError(err))
    assert.equal(err.code, 'PROVIDER_ERROR')
    assert.equal(err.status, 502)
    assert.doesNotMatch(err.detail, /stack frame|app\.py/)
    assert.equal(fake.requests.delete, 3)
  })

  test('429 with Retry-After: 1 is retried no sooner than the provider asked', async (t) => {
    t.after(() => registry.close())
    fake.rateLimitNext(1, 1, 'upload')
    await upload()
    const attempts = fake.log.filter((r) => r.op === 'upload')
    assert.equal(attempts.length, 2)
    const gap = (attempts[1]?.at ?? 0) - (attempts[0]?.at ?? 0)
    assert.ok(gap >= 950, `waited ${gap} ms`)
  })

  test('429 whose Retry-After exceeds the budget is passed on at once as PROVIDER_RATE_LIMITED', async (t) => {
    t.after(() => registry.close())
    fake.rateLimitNext(1, 30, 'upload')
    const started = Date.now()
    const err = await upload().catch((e: unknown) => e)
    assert.ok(isProviderError(err))
    assert.equal(err.code, 'PROVIDER_RATE_LIMITED')
    assert.equal(err.retryAfterSeconds, 30)
    assert.equal(fake.requests.upload, 1)
    assert.ok(Date.now() - started < 1000)
  })

  test('a hanging provider gives PROVIDER_TIMEOUT after each attempt times out', async (t) => {
    t.after(() => registry.close())
    fake.hang = true
    const started = Date.now()
    const err = await upload().catch((e: unknown) => e)
    assert.ok(isProviderError(err))
    assert.equal(err.code, 'PROVIDER_TIMEOUT')
    assert.equal(err.status, 504)
    assert.equal(fake.requests.upload, 3)
    const elapsed = Date.now() - started
    assert.ok(elapsed >= 900 && elapsed < 2500, `took ${elapsed} ms`)
  })

  test('the overall budget bounds all attempts', async (t) => {
    t.after(() => registry.close())
    const { reg, kimi: tight } = build({
      PROVIDER_TIMEOUT_MS: '300',
      UPLOAD_TIMEOUT_MS: '500',
      RETRY_MAX_ATTEMPTS: '5',
    })
    t.after(() => reg.close())
    fake.hang = true
    const started = Date.now()
    await assert.rejects(upload(tight), { code: 'PROVIDER_TIMEOUT' })
    assert.ok(Date.now() - started < 900)
    assert.equal(fake.requests.upload, 2)
  })

  test('a one-shot stream is not retried', async (t) => {
    t.after(() => registry.close())
    fake.failNext(1, 500, 'upload')
    const err = await kimi
      .upload({
        source: { kind: 'stream', stream: Readable.from([Buffer.from('once')]) },
        filename: 's.txt',
        mimeType: 'text/plain',
        purpose: 'file-extract',
      })
      .catch((e: unknown) => e)
    assert.ok(isProviderError(err))
    assert.equal(err.code, 'PROVIDER_ERROR')
    assert.equal(fake.requests.upload, 1)
  })

  test('the caller aborting stops the upload and is not a provider failure', async (t) => {
    t.after(() => registry.close())
    fake.hang = true
    const controller = new AbortController()
    setTimeout(() => controller.abort(new Error('client went away')), 100)
    await assert.rejects(upload(kimi, controller.signal), { message: 'client went away' })
    assert.equal(fake.requests.upload, 1)
    assert.equal(kimi.circuitState(), 'closed')
  })
})

describe('circuit breaker', () => {
  test('opens after consecutive failures, fails fast, half-opens after resetMs, closes on success', async (t) => {
    const { reg, kimi: adapter } = build({ CIRCUIT_FAILURE_THRESHOLD: '3' })
    t.after(() => Promise.all([reg.close(), registry.close()]))
    fake.failNext(3, 500)
    await assert.rejects(adapter.delete('x'), { code: 'PROVIDER_ERROR' })
    assert.equal(fake.requests.delete, 3)
    assert.deepEqual(events.opened, ['kimi'])
    assert.equal(adapter.circuitState(), 'open')
    assert.ok(adapter.retryAfterMs() > 0 && adapter.retryAfterMs() <= 300)

    const err = await upload(adapter).catch((e: unknown) => e)
    assert.ok(isProviderError(err))
    assert.equal(err.code, 'PROVIDER_UNAVAILABLE')
    assert.equal(err.status, 503)
    assert.equal(err.retryAfterSeconds, 1)
    assert.equal(fake.requests.upload, 0, 'failed fast, nothing sent')

    await sleep(350)
    assert.equal(adapter.circuitState(), 'half_open')
    assert.equal(adapter.retryAfterMs(), 0)
    await upload(adapter)
    assert.equal(adapter.circuitState(), 'closed')
    assert.deepEqual(events.states, ['open', 'half_open', 'closed'])
    assert.deepEqual(events.opened, ['kimi'], 'onCircuitOpen once')
  })

  test('a breaker that opens mid-retry stops the retries', async (t) => {
    const { reg, kimi: adapter } = build({ CIRCUIT_FAILURE_THRESHOLD: '2' })
    t.after(() => Promise.all([reg.close(), registry.close()]))
    fake.failNext(10, 500)
    await assert.rejects(upload(adapter), { code: 'PROVIDER_UNAVAILABLE' })
    assert.equal(fake.requests.upload, 2)
  })

  test('a failed trial call re-opens the circuit', async (t) => {
    const { reg, kimi: adapter } = build({ CIRCUIT_FAILURE_THRESHOLD: '1', RETRY_MAX_ATTEMPTS: '1' })
    t.after(() => Promise.all([reg.close(), registry.close()]))
    fake.failNext(2, 500)
    await assert.rejects(upload(adapter), { code: 'PROVIDER_ERROR' })
    await sleep(350)
    await assert.rejects(upload(adapter), { code: 'PROVIDER_ERROR' })
    assert.equal(adapter.circuitState(), 'open')
    assert.deepEqual(events.opened, ['kimi', 'kimi'])
  })

  test('client errors, quota and 404 do not open the circuit', async (t) => {
    const { reg, kimi: adapter } = build({ CIRCUIT_FAILURE_THRESHOLD: '1' })
    t.after(() => Promise.all([reg.close(), registry.close()]))
    fake.rejectContent = true
    await assert.rejects(upload(adapter), { code: 'PROVIDER_REJECTED' })
    fake.rejectContent = false
    fake.quotaExceeded = true
    await assert.rejects(upload(adapter), { code: 'PROVIDER_QUOTA_EXCEEDED' })
    assert.deepEqual(await adapter.delete('missing'), { alreadyGone: true })
    assert.equal(adapter.circuitState(), 'closed')
    assert.deepEqual(events.opened, [])
  })
})

describe("the sender's failures", () => {
  /** A one-shot body that breaks off, as a client's does when it disconnects. */
  async function* brokenBody() {
    yield Buffer.from('part of it')
    throw new Error('client went away')
  }

  test('a stream whose sender failed is not retried and never counts toward the circuit', async (t) => {
    const { reg, kimi: adapter } = build({ CIRCUIT_FAILURE_THRESHOLD: '1', RETRY_MAX_ATTEMPTS: '3' })
    t.after(() => Promise.all([reg.close(), registry.close()]))
    const failure = new Error('the sender broke off')
    for (let i = 0; i < 5; i++) {
      const err = await adapter
        .upload({
          source: { kind: 'stream', stream: brokenBody(), senderFailure: () => failure },
          filename: 's.txt',
          mimeType: 'text/plain',
          purpose: 'file-extract',
        })
        .catch((e: unknown) => e)
      assert.equal(err, failure, "the sender's own error is answered")
    }
    assert.equal(adapter.circuitState(), 'closed')
    assert.deepEqual(events.opened, [])
    assert.ok(fake.requests.upload <= 5, 'one attempt each at most')
  })

  test('a timeout while waiting for a slow sender is its failure; one while the provider hangs is not', async (t) => {
    const { reg, kimi: adapter } = build({ CIRCUIT_FAILURE_THRESHOLD: '1', RETRY_MAX_ATTEMPTS: '1' })
    t.after(() => Promise.all([reg.close(), registry.close()]))
    const timedOut: boolean[] = []
    async function* stalled() {
      yield Buffer.from('a start')
      await sleep(1_000)
    }
    const slow = new Error('too slow')
    const err = await adapter
      .upload({
        source: {
          kind: 'stream',
          stream: stalled(),
          senderFailure: (attemptTimedOut) => {
            timedOut.push(attemptTimedOut)
            return attemptTimedOut ? slow : undefined
          },
        },
        filename: 's.txt',
        mimeType: 'text/plain',
        purpose: 'file-extract',
      })
      .catch((e: unknown) => e)
    assert.equal(err, slow)
    assert.deepEqual(timedOut, [true], 'asked once, told the attempt timed out')
    assert.equal(adapter.circuitState(), 'closed')

    // The sender is blameless (it says so): the hung provider's timeout counts and opens the circuit.
    fake.hang = true
    const hung = await adapter
      .upload({
        source: { kind: 'stream', stream: Readable.from([Buffer.from('all of it')]), senderFailure: () => undefined },
        filename: 's.txt',
        mimeType: 'text/plain',
        purpose: 'file-extract',
      })
      .catch((e: unknown) => e)
    assert.ok(isProviderError(hung))
    assert.equal(hung.code, 'PROVIDER_TIMEOUT')
    assert.equal(adapter.circuitState(), 'open')
  })
})

describe('upload slots', () => {
  test('caps concurrent uploads per provider; other operations are not queued behind them', async (t) => {
    const { reg, kimi: adapter } = build({ PROVIDER_MAX_CONCURRENT_UPLOADS: '2', PROVIDER_TIMEOUT_MS: '2000' })
    t.after(() => Promise.all([reg.close(), registry.close()]))
    fake.latencyMs = 100
    fake.ops = ['upload']
    const uploads = Promise.all(Array.from({ length: 6 }, () => upload(adapter)))
    await sleep(30)
    const started = Date.now()
    await collectAll(adapter.listAll())
    assert.ok(Date.now() - started < 100, 'list did not wait for the upload queue')
    await uploads
    assert.equal(fake.uploads.length, 6)
    assert.equal(fake.maxInFlight.upload, 2)
  })
})

async function collectAll<T>(it: AsyncIterable<T>) {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}
