/**
 * Provider trouble seen through POST /v1/files (error codes; retries, circuit breaker, timeouts): the circuit
 * opens and closes again, 429 with Retry-After is retried, a hung provider times out, `auto`
 * falls back, quota errors and refusals are not retried, and filegate's own account cap stops
 * an upload before any provider call. The active-uploads gauge is 0 after every path.
 */
import assert from 'node:assert/strict'
import { describe, type TestContext, test } from 'node:test'
import type { FakeProvider } from '../fakes/provider-server.js'
import { createTestDatabase, postgresAvailable } from '../helper.js'
import {
  as,
  assertProblem,
  eventually,
  filePart,
  freshTenant,
  metric,
  postFile,
  rowsOf,
  setupUploads,
  shortTimeouts,
  spoolEntries,
  type UploadContext,
  uploadApp,
  useFileDatabase,
} from './uploads-support.js'

const database = useFileDatabase()
const setup = (t: TestContext, env: Record<string, string> = {}) => setupUploads(t, database, env)

async function settled(ctx: UploadContext) {
  assert.equal(await metric(ctx.app, 'filegate_file_active_uploads'), 0, 'no upload is counted active')
  assert.deepEqual(await spoolEntries(ctx.spoolDir), [], 'no temp file is left')
}

const circuitOf = async (ctx: UploadContext, provider: string) => {
  const res = await ctx.app.inject({ method: 'GET', url: '/v1/limits', headers: as('ops') })
  assert.equal(res.statusCode, 200, res.body)
  const entry = (res.json() as { data: Array<{ provider: string; circuit: string }> }).data.find(
    (p) => p.provider === provider,
  )
  return entry?.circuit
}

describe('provider resilience through uploads', () => {
  test('an outage opens the circuit (503 with Retry-After, one trip) and it closes after recovery', async (t) => {
    const ctx = await setup(t, { CIRCUIT_FAILURE_THRESHOLD: '2', CIRCUIT_RESET_MS: '500', RETRY_MAX_ATTEMPTS: '1' })
    if (!ctx) return
    const tenant = freshTenant()
    ctx.fakes.kimi.failNext(2, 500, 'upload')
    const trips = () => metric(ctx.app, 'filegate_file_circuit_breaker_trips_total', { provider: 'kimi' })
    const state = () => metric(ctx.app, 'filegate_provider_circuit_state', { provider: 'kimi' })
    assert.equal(await state(), 0)
    assertProblem(await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('one')]), 502, 'PROVIDER_ERROR')
    assert.equal(await trips(), 0)
    assertProblem(await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('two')]), 502, 'PROVIDER_ERROR')
    assert.equal(await trips(), 1, 'the second consecutive failure opens the circuit')
    assert.equal(await state(), 2)

    const open = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('three')])
    const problem = assertProblem(open, 503, 'PROVIDER_UNAVAILABLE')
    assert.equal(problem.provider, 'kimi')
    assert.ok(Number(open.headers['retry-after']) >= 1, 'Retry-After is set')
    assert.equal(ctx.fakes.kimi.requests.upload, 2, 'an open circuit does not call the provider')
    assert.equal(await trips(), 1)
    assert.equal(await circuitOf(ctx, 'kimi'), 'open')

    // the fake is healthy again; once the reset time has passed a trial call is let through
    await eventually('the circuit half-opens', async () => (await circuitOf(ctx, 'kimi')) === 'half_open', 5000)
    const recovered = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('four')])
    assert.equal(recovered.statusCode, 201, recovered.body)
    assert.equal(await state(), 0, 'filegate_provider_circuit_state is back to closed')
    assert.equal(await circuitOf(ctx, 'kimi'), 'closed')
    assert.equal(await trips(), 1)
    await settled(ctx)
  })

  test('429 with Retry-After is retried after the delay', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    ctx.fakes.kimi.rateLimitNext(1, 1, 'upload')
    const res = await postFile(ctx.app, freshTenant(), [['provider', 'kimi'], filePart('rate limited once')])
    assert.equal(res.statusCode, 201, res.body)
    assert.equal(ctx.fakes.kimi.requests.upload, 2, 'two upload requests at the fake')
    assert.equal(ctx.fakes.kimi.uploads.length, 1)
    const [first, second] = ctx.fakes.kimi.log.filter((r) => r.op === 'upload')
    assert.ok(first && second && second.at - first.at >= 900, 'the retry waited for Retry-After (1 s)')
    await settled(ctx)
  })

  test('a hung provider gives 504 PROVIDER_TIMEOUT', async (t) => {
    const ctx = await setup(t, { ...shortTimeouts, PROVIDER_TIMEOUT_MS: '300', RETRY_MAX_ATTEMPTS: '2' })
    if (!ctx) return
    const tenant = freshTenant()
    ctx.fakes.kimi.hang = true
    ctx.fakes.kimi.ops = ['upload']
    const res = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('never answered')])
    const problem = assertProblem(res, 504, 'PROVIDER_TIMEOUT')
    assert.equal(problem.provider, 'kimi')
    assert.equal(ctx.fakes.kimi.requests.upload, 2, 'each attempt timed out')
    const rows = await rowsOf(ctx.app, tenant)
    assert.deepEqual(
      rows.map((r) => r.status),
      ['failed'],
      'the claim is released as failed, not left uploading',
    )
    await settled(ctx)
    // and once it answers again, the same content goes through
    ctx.fakes.kimi.hang = false
    const ok = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('never answered')])
    assert.equal(ok.statusCode, 201, ok.body)
  })

  test('auto falls back from a failing GLM to Kimi', async (t) => {
    const ctx = await setup(t, { RETRY_MAX_ATTEMPTS: '2' })
    if (!ctx) return
    ctx.fakes.glm.failNext(100, 500, 'upload')
    const res = await postFile(ctx.app, freshTenant(), [['provider', 'auto'], filePart('small text')])
    assert.equal(res.statusCode, 201, res.body)
    assert.equal(res.json().provider, 'kimi')
    assert.equal(ctx.fakes.glm.requests.upload, 2, 'GLM was tried first, with its retries')
    assert.equal(ctx.fakes.glm.uploads.length, 0)
    assert.equal(ctx.fakes.kimi.uploads.length, 1)
    await settled(ctx)
  })

  test('auto sends small files to GLM first', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const res = await postFile(ctx.app, freshTenant(), [['provider', 'auto'], filePart('small text')])
    assert.equal(res.statusCode, 201, res.body)
    assert.equal(res.json().provider, 'glm')
    assert.equal(ctx.fakes.kimi.requests.upload, 0)
  })

  test('a quota error is not retried: 507 PROVIDER_QUOTA_EXCEEDED after one request', async (t) => {
    const ctx = await setup(t, { RETRY_MAX_ATTEMPTS: '3' })
    if (!ctx) return
    for (const [provider, quota] of [
      ['kimi', true],
      ['kimi', 'file-count'],
      ['glm', true],
    ] as const) {
      const fake: FakeProvider = ctx.fakes[provider]
      fake.reset()
      fake.quotaExceeded = quota
      const res = await postFile(ctx.app, freshTenant(), [['provider', provider], filePart(`quota ${quota}`)])
      const problem = assertProblem(res, 507, 'PROVIDER_QUOTA_EXCEEDED')
      assert.equal(problem.provider, provider)
      assert.equal(fake.requests.upload, 1, `${provider} ${quota}: exactly one request`)
    }
    assert.equal(await metric(ctx.app, 'filegate_file_circuit_breaker_trips_total'), 0, 'quota does not trip')
    await settled(ctx)
  })

  test("a content refusal is 422 PROVIDER_REJECTED with the provider's message", async (t) => {
    const ctx = await setup(t, { RETRY_MAX_ATTEMPTS: '3' })
    if (!ctx) return
    for (const provider of ['kimi', 'glm'] as const) {
      ctx.fakes[provider].rejectContent = 'the file contains content that violates the usage policy'
      const res = await postFile(ctx.app, freshTenant(), [['provider', provider], filePart('forbidden words')])
      const problem = assertProblem(res, 422, 'PROVIDER_REJECTED')
      assert.equal(problem.provider, provider)
      assert.match(String(problem.detail), /violates the usage policy/)
      assert.equal(ctx.fakes[provider].requests.upload, 1, 'a refusal is not retried')
    }
    await settled(ctx)
  })

  test("filegate's own account cap: the third distinct file is 507 before any provider call", async (t) => {
    // Usage counts every tenant of the provider account: this test needs a database of its own.
    if (!(await postgresAvailable())) return t.skip('Postgres not reachable')
    const db = await createTestDatabase()
    // After the app's own cleanup (t.after hooks run in the order registered): a suite-level after()
    // registered from inside a running test never ran, and every run left this database behind.
    let ctx: Awaited<ReturnType<typeof uploadApp>>
    try {
      // The account's cap is the subject: no tenant share of it (isolation-share.test.ts has that).
      ctx = await uploadApp(t, db, { KIMI_MAX_FILES: '2', TENANT_MAX_SHARE: '1' })
    } finally {
      t.after(() => db.drop())
    }
    const tenant = freshTenant()
    for (const content of ['first', 'second']) {
      const res = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(content)])
      assert.equal(res.statusCode, 201, res.body)
    }
    const third = await postFile(ctx.app, freshTenant(), [['provider', 'kimi'], filePart('third')])
    const problem = assertProblem(third, 507, 'PROVIDER_QUOTA_EXCEEDED')
    assert.equal(problem.provider, 'kimi')
    assert.equal(problem.max_files, 2)
    assert.equal(ctx.fakes.kimi.requests.upload, 2, 'no provider call for the third')
    // a duplicate of a live file is still answered, and a deletion frees a slot
    const dup = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('first')])
    assert.equal(dup.statusCode, 200, dup.body)
    const del = await ctx.app.inject({ method: 'DELETE', url: `/v1/files/${dup.json().id}`, headers: as(tenant) })
    assert.equal(del.statusCode, 200, del.body)
    assert.equal(del.json().provider_deleted, true)
    const fourth = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('third')])
    assert.equal(fourth.statusCode, 201, fourth.body)
    const limits = await ctx.app.inject({ method: 'GET', url: '/v1/limits', headers: as(tenant) })
    const body = limits.json() as { data: Array<{ provider: string; account: { files: number; max_files: number } }> }
    const kimi = body.data.find((p) => p.provider === 'kimi')
    assert.deepEqual(kimi?.account.files, 2)
    assert.deepEqual(kimi?.account.max_files, 2)
    await settled(ctx)
  })
})
