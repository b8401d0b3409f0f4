/**
 * What only the gemini kind has, through the service and the fake Gemini Files API
 * (tests/fakes/gemini-server.ts, each behaviour with its doc URL): the resource name and the
 * provider's own expiry on the row, the documented caps, the resumable upload resumed from the
 * offset the server reports, PROCESSING → ACTIVE | FAILED seen through GET /v1/files/{id}, and the
 * expiry sweep on Gemini's expirationTime. The cases every kind shares (upload, dedup, list, get,
 * content 409, delete, quota errors, retries and the breaker, the expiry sweep, reconcile, the
 * OpenAI SDK on the facade) run for gemini in provider-matrix.test.ts.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, type TestContext, test } from 'node:test'
import { GEMINI_CHUNK_BYTES } from '../../src/providers/gemini.js'
import { type FakeGemini, startFakeGemini } from '../fakes/gemini-server.js'
import { fileDatabase, requirePostgres, testKeys } from '../helper.js'
import {
  as,
  assertProblem,
  filePart,
  freshTenant,
  postFile,
  sha256,
  type UploadContext,
  uploadApp,
} from './uploads-support.js'

interface GeminiContext extends UploadContext {
  gemini: FakeGemini
}

/** A database per test (the account caps count every tenant) and a fresh fake Gemini. */
async function setup(t: TestContext, env: Record<string, string> = {}): Promise<GeminiContext | undefined> {
  if (!(await requirePostgres(t))) return undefined
  const gemini = await startFakeGemini()
  t.after(() => gemini.close())
  const ctx = await uploadApp(t, await fileDatabase(t), {
    GEMINI_API_KEY: gemini.apiKey,
    GEMINI_BASE_URL: gemini.baseUrl,
    ...env,
  })
  return { ...ctx, gemini }
}

const MiB = 1024 * 1024
const toGemini = (content: Buffer | string, name = 'notes.pdf') => [
  ['provider', 'gemini'] as [string, string],
  filePart(content, name, 'application/pdf'),
]
const wholeSeconds = (iso: string) => new Date(Math.floor(Date.parse(iso) / 1000) * 1000).toISOString()
const get = (ctx: UploadContext, tenant: string, url: string) =>
  ctx.app.inject({ method: 'GET', url, headers: as(tenant) })
const cleanup = async (ctx: UploadContext, jobs: string[]) => {
  const res = await ctx.app.inject({
    method: 'POST',
    url: '/v1/cleanup',
    headers: { authorization: `Bearer ${testKeys.admin}` },
    payload: { dry_run: false, jobs },
  })
  assert.equal(res.statusCode, 200, res.body)
  return res.json() as {
    jobs: Record<string, { providers: Record<string, { candidates: number; deleted: number }> }>
  }
}

describe('gemini: the row of an upload', () => {
  test("a file goes up over the resumable protocol under its resource id, with Gemini's expiry and state; the same bytes again are a duplicate", async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const tenant = freshTenant()
    const content = randomBytes(3000)
    const first = await postFile(ctx.app, tenant, toGemini(content))
    assert.equal(first.statusCode, 201, first.body)
    const file = first.json()
    assert.equal(file.provider, 'gemini')
    assert.equal(file.purpose, 'file', "filegate's one purpose for Gemini")
    assert.equal(file.provider_state, 'active')
    const stored = ctx.gemini.files.get(`files/${file.provider_file_id}`)
    assert.ok(stored, 'provider_file_id is the id in the resource name files/<id>')
    assert.equal(stored.displayName, 'notes.pdf')
    assert.equal(stored.mimeType, 'application/pdf')
    assert.equal(ctx.gemini.uploads[0]?.sha256, sha256(content), 'the bytes arrived whole')
    // No expires_in: the row expires when Gemini deletes the file (its expirationTime, 48 hours,
    // to the second: a provider's expiry is kept in unix seconds, rounded down).
    assert.equal(file.expires_at, wholeSeconds(stored.expirationTime))

    const again = await postFile(ctx.app, tenant, toGemini(content))
    assert.equal(again.statusCode, 200, again.body)
    assert.equal(again.json().id, file.id)
    assert.equal(again.json().deduplicated, true)
    assert.equal(ctx.gemini.requests.start, 1, 'one upload at the provider')

    const one = await get(ctx, tenant, `/v1/files/${file.id}`)
    assert.equal(one.json().provider_state, 'active')
    assert.equal(ctx.gemini.requests.get, 0, 'a final state is not asked for again')
  })

  test("expires_in shorter than Gemini's 48 hours is kept; a longer one is cut to the provider's expiry", async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const tenant = freshTenant()
    const short = await postFile(ctx.app, tenant, [...toGemini('short-lived'), ['expires_in', '3600']])
    assert.equal(short.statusCode, 201, short.body)
    const shortAt = Date.parse(short.json().expires_at)
    assert.ok(shortAt <= Date.now() + 3600_000 && shortAt > Date.now() + 3500_000, short.json().expires_at)
    const long = await postFile(ctx.app, tenant, [...toGemini('long-lived'), ['expires_in', String(7 * 86400)]])
    assert.equal(long.statusCode, 201, long.body)
    const stored = ctx.gemini.files.get(`files/${long.json().provider_file_id}`)
    assert.equal(long.json().expires_at, wholeSeconds(String(stored?.expirationTime)))
  })
})

describe('gemini: limits and quotas', () => {
  test('GEMINI_MAX_FILE_BYTES and GEMINI_MAX_FILES refuse before any provider call; /v1/limits reports them', async (t) => {
    const ctx = await setup(t, { GEMINI_MAX_FILE_BYTES: '100', GEMINI_MAX_FILES: '1' })
    if (!ctx) return
    const tenant = freshTenant()
    assertProblem(await postFile(ctx.app, tenant, toGemini(randomBytes(101))), 413, 'FILE_TOO_LARGE')
    assert.equal(ctx.gemini.requests.start, 0)
    assert.equal((await postFile(ctx.app, tenant, toGemini('the one'))).statusCode, 201)
    const over = await postFile(ctx.app, tenant, toGemini('one too many'))
    assertProblem(over, 507, 'PROVIDER_QUOTA_EXCEEDED')
    assert.equal(ctx.gemini.requests.start, 1, 'refused before the provider call')

    const limits = await get(ctx, tenant, '/v1/limits')
    assert.equal(limits.statusCode, 200, limits.body)
    const gemini = (limits.json() as { data: Array<Record<string, unknown>> }).data.find((p) => p.provider === 'gemini')
    assert.ok(gemini, '/v1/limits lists gemini')
    assert.equal(gemini.kind, 'gemini')
    assert.equal(gemini.max_file_bytes, 100)
    assert.equal(gemini.documented_max_file_bytes, 2 * 1024 * MiB)
    assert.equal(gemini.default_purpose, 'file')
    assert.deepEqual(gemini.account, { max_files: 1, max_bytes: 20 * 1024 * MiB, files: 1, bytes: 7 })
  })

  test('the documented defaults: 2 GB a file, 20 GB a project, no file count', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const limits = await ctx.app.inject({ method: 'GET', url: '/v1/limits', headers: as(freshTenant()) })
    const gemini = (limits.json() as { data: Array<Record<string, unknown>> }).data.find((p) => p.provider === 'gemini')
    assert.equal(gemini?.max_file_bytes, 2 * 1024 * MiB)
    assert.deepEqual(gemini?.account, { max_files: null, max_bytes: 20 * 1024 * MiB, files: 0, bytes: 0 })
  })
})

describe('gemini: resumed chunks', () => {
  test('a chunk that fails mid-way is resumed from the offset the server reports, each byte sent once beyond it', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const content = randomBytes(2 * GEMINI_CHUNK_BYTES + 3 * MiB)
    const kept = 3 * MiB + 17
    ctx.gemini.interruptNextChunkAfter(kept)
    const res = await postFile(ctx.app, freshTenant(), toGemini(content, 'big.pdf'))
    assert.equal(res.statusCode, 201, res.body)
    const [upload] = ctx.gemini.uploads
    assert.equal(upload?.sha256, sha256(content), 'the file arrived whole')
    const [offsets] = [...ctx.gemini.offsets.values()]
    assert.deepEqual(offsets, [0, kept, GEMINI_CHUNK_BYTES, 2 * GEMINI_CHUNK_BYTES])
    assert.equal(ctx.gemini.requests.query, 1, 'the server was asked where to go on')
    assert.equal(ctx.gemini.requests.start, 1, 'the session was not started again')
    // What went over the wire: the file once, plus the tail of the interrupted chunk the server dropped.
    assert.equal(upload?.wireBytes, content.length + (GEMINI_CHUNK_BYTES - kept))
  })

  test('when the resumes within one attempt run out, the next attempt resumes the same session from the reported offset', async (t) => {
    const ctx = await setup(t, { RETRY_MAX_ATTEMPTS: '2' })
    if (!ctx) return
    const content = randomBytes(GEMINI_CHUNK_BYTES + 2 * MiB)
    const kept = 2 * MiB
    // The first chunk breaks off after 2 MiB; the one resume this attempt has fails as well.
    ctx.gemini.interruptNextChunkAfter(kept)
    ctx.gemini.failNext(1, 503, 'chunk')
    const res = await postFile(ctx.app, freshTenant(), toGemini(content, 'twice.pdf'))
    assert.equal(res.statusCode, 201, res.body)
    assert.equal(ctx.gemini.uploads[0]?.sha256, sha256(content), 'the file arrived whole')
    assert.equal(ctx.gemini.requests.start, 1, 'one session for both attempts')
    assert.equal(ctx.gemini.requests.query, 2, 'each resume asked where to go on')
    const [offsets] = [...ctx.gemini.offsets.values()]
    // Attempt 1: the chunk at 0 (cut at 2 MiB), its resume at 2 MiB refused before the fake records
    // it; attempt 2 reads the file again from 2 MiB: the 8 MiB left, one finalizing chunk.
    assert.deepEqual(offsets, [0, kept])
    assert.equal(ctx.gemini.uploads[0]?.wireBytes, content.length + (GEMINI_CHUNK_BYTES - kept))
  })

  test('a body streamed through (X-Content-SHA256) is resumed too, from the chunk held in memory', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const content = randomBytes(GEMINI_CHUNK_BYTES + MiB)
    ctx.gemini.interruptNextChunkAfter(MiB)
    const res = await postFile(ctx.app, freshTenant(), toGemini(content, 'streamed.pdf'), {
      'x-content-sha256': sha256(content),
    })
    assert.equal(res.statusCode, 201, res.body)
    assert.equal(ctx.gemini.uploads[0]?.sha256, sha256(content))
    assert.deepEqual([...ctx.gemini.offsets.values()][0], [0, MiB, GEMINI_CHUNK_BYTES])
    assert.equal(ctx.gemini.uploads[0]?.wireBytes, content.length + (GEMINI_CHUNK_BYTES - MiB))
  })
})

describe('gemini: processing state', () => {
  test('PROCESSING → ACTIVE: GET asks the provider while the file is processing, then no more', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    ctx.gemini.processingPolls = 2
    const tenant = freshTenant()
    const up = await postFile(ctx.app, tenant, toGemini('a video, say'))
    assert.equal(up.statusCode, 201, up.body)
    assert.equal(up.json().provider_state, 'processing')
    assert.equal(up.json().status, 'completed')
    const states: string[] = []
    for (let i = 0; i < 3; i++) states.push((await get(ctx, tenant, `/v1/files/${up.json().id}`)).json().provider_state)
    assert.deepEqual(states, ['processing', 'processing', 'active'])
    const gets = ctx.gemini.requests.get
    const after = await get(ctx, tenant, `/v1/files/${up.json().id}`)
    assert.equal(after.json().provider_state, 'active')
    assert.equal(ctx.gemini.requests.get, gets, 'a final state is not asked for again')
  })

  test('PROCESSING → FAILED: the file is failed with the provider message; a new upload replaces it', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    ctx.gemini.processingPolls = 1
    ctx.gemini.failProcessing = 'Unsupported MIME type: application/x-nonsense'
    const tenant = freshTenant()
    const up = await postFile(ctx.app, tenant, toGemini('not really a pdf'))
    assert.equal(up.statusCode, 201, up.body)
    await get(ctx, tenant, `/v1/files/${up.json().id}`)
    const failed = (await get(ctx, tenant, `/v1/files/${up.json().id}`)).json()
    assert.equal(failed.status, 'failed')
    assert.equal(failed.provider_state, 'failed')
    assert.match(failed.error, /Unsupported MIME type/)

    // The same bytes again: a failed row never blocks; the failed copy is deleted at the provider.
    ctx.gemini.processingPolls = 0
    ctx.gemini.failProcessing = null
    const again = await postFile(ctx.app, tenant, toGemini('not really a pdf'))
    assert.equal(again.statusCode, 201, again.body)
    assert.equal(again.json().provider_state, 'active')
    await cleanup(ctx, ['provider_deletes'])
    assert.deepEqual(ctx.gemini.deletes, [`files/${up.json().provider_file_id}`])
  })
})

describe('gemini: sweeps', () => {
  test("the expiry sweep deletes a file when Gemini's expirationTime has passed", async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    ctx.gemini.keepMs = 1000
    const tenant = freshTenant()
    const up = await postFile(ctx.app, tenant, toGemini('kept one second'))
    assert.equal(up.statusCode, 201, up.body)
    const due = Date.parse(up.json().expires_at)
    assert.ok(due <= Date.now() + 1000, 'the row expires with the provider copy')
    await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now()) + 50))
    const report = await cleanup(ctx, ['expired'])
    assert.equal(report.jobs.expired?.providers.gemini?.deleted, 1)
    const row = (await get(ctx, tenant, `/v1/files/${up.json().id}`)).json()
    assert.equal(row.status, 'deleted')
    assert.equal(row.deletion_reason, 'expired')
    assert.equal(row.provider_deleted, true)
  })
})
