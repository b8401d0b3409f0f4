/**
 * The per-kind integration matrix: the same cases for every provider kind, each against its fake
 * (a real HTTP server on loopback, tests/fakes) with real Postgres and the real app: upload, dedup,
 * limits, list, get, content or 409, delete, quota errors, retries and the breaker, the expiry
 * sweep, reconcile, and the official OpenAI SDK against the facade /providers/<name>/v1/files.
 *
 * Adding a kind = one entry in `kinds` below, nothing else. An entry says:
 * - `name`: the provider it configures (the built-in provider named after its kind);
 * - `purpose`: the purpose a `.txt` upload goes under (its default purpose);
 * - `content`: whether the provider serves content for that purpose; if not, filegate answers 409
 *   CONTENT_UNAVAILABLE without asking it;
 * - `start()`: starts the fake and answers a `FakeHandle`: the env pointing filegate at it, and
 *   the fake's switches and records in one small shape:
 *     quota(on)      the account is out of allowance (the provider's documented quota error);
 *     transient(n)   the next n uploads fail in a way the docs call retryable (5xx, overload);
 *     rateLimit(n)   the next n uploads answer the provider's 429;
 *     uploads() / requests(op) / files() / deletes()   what the fake received and holds;
 *     addFile(name)  a file filegate does not know (created two minutes ago), its id;
 *     drop(id)       the file vanishes at the provider;
 *     close().
 */
import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { describe, it, type TestContext } from 'node:test'
import OpenAI, { toFile } from 'openai'
import postgres from 'postgres'
import { ANTHROPIC_FILES_BETA, ANTHROPIC_VERSION } from '../../src/providers/anthropic.js'
import { type FakeAnthropic, startFakeAnthropic } from '../fakes/anthropic-server.js'
import { type FakeGemini, type GeminiOp, startFakeGemini } from '../fakes/gemini-server.js'
import { type FakeKind, type FakeOp, type FakeProvider, startFakeProvider } from '../fakes/provider-server.js'
import { build, multipart, tempDir, testKeys } from '../helper.js'
import { as, assertProblem, freshTenant, useFileDatabase } from './uploads-support.js'

type Op = 'upload' | 'list' | 'retrieve' | 'delete' | 'content'

export interface FakeHandle {
  env: Record<string, string>
  quota(on: boolean): void
  transient(n: number): void
  rateLimit(n: number): void
  uploads(): number
  requests(op: Op): number
  files(): string[]
  deletes(): string[]
  addFile(filename: string): string
  drop(id: string): void
  close(): Promise<void>
}

export interface KindEntry {
  name: string
  purpose: string
  content: boolean
  start(): Promise<FakeHandle>
}

/** Kimi, GLM and OpenAI: tests/fakes/provider-server.ts, one kind each; `prefix` names its env. */
function providerServerHandle(fake: FakeProvider, prefix: string): FakeHandle {
  return {
    env: { [`${prefix}_API_KEY`]: fake.apiKey ?? '', [`${prefix}_BASE_URL`]: fake.baseUrl },
    quota: (on) => {
      fake.quotaExceeded = on
    },
    transient: (n) => fake.failNext(n, 503, 'upload'),
    rateLimit: (n) => fake.rateLimitNext(n, undefined, 'upload'),
    uploads: () => fake.uploads.length,
    requests: (op) => fake.requests[op as FakeOp],
    files: () => [...fake.files.keys()],
    deletes: () => [...fake.deletes],
    addFile: (filename) => fake.addFile({ filename, bytes: 5, created_at: Math.floor(Date.now() / 1000) - 120 }).id,
    drop: (id) => {
      fake.files.delete(id)
    },
    close: () => fake.close(),
  }
}

const openAiStyle = (kind: FakeKind, prefix: string) => async () =>
  providerServerHandle(await startFakeProvider({ kind, apiKey: `sk-${kind}-matrix-0123456789` }), prefix)

/** tests/fakes/anthropic-server.ts. */
function anthropicHandle(fake: FakeAnthropic): FakeHandle {
  return {
    env: { ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.baseUrl },
    // The organisation's storage is full: the fake's 403 permission_error speaking of storage.
    quota: (on) => {
      fake.storageFull = on
    },
    // 529 overloaded_error (docs.claude.com/en/api/errors): retryable.
    transient: (n) => fake.failNext(n, 529, 'upload'),
    rateLimit: (n) => fake.failNext(n, 429, 'upload'),
    uploads: () => fake.uploads.length,
    requests: (op) => fake.requests[op],
    files: () => [...fake.files.keys()],
    deletes: () => [...fake.deletes],
    addFile: (filename) =>
      fake.addFile({ filename, size_bytes: 5, created_at: new Date(Date.now() - 120_000).toISOString() }).id,
    drop: (id) => {
      fake.files.delete(id)
    },
    close: () => fake.close(),
  }
}

/**
 * tests/fakes/gemini-server.ts. Gemini names a file `files/<id>`; filegate (and so this handle) uses
 * the id. An upload is a `start` request and its chunks: `start` is the call counted and failed.
 */
function geminiHandle(fake: FakeGemini): FakeHandle {
  const ops: Record<Op, GeminiOp | null> = {
    upload: 'start',
    list: 'list',
    retrieve: 'get',
    delete: 'delete',
    // Gemini serves no download of an uploaded file: there is no such call to count.
    content: null,
  }
  const id = (name: string) => name.replace(/^files\//, '')
  return {
    env: { GEMINI_API_KEY: fake.apiKey, GEMINI_BASE_URL: fake.baseUrl },
    // The project's storage is full: the fake's 429 RESOURCE_EXHAUSTED naming storage.
    quota: (on) => {
      fake.quotaExceeded = on
    },
    // 503 UNAVAILABLE (ai.google.dev/gemini-api/docs/troubleshooting): retryable.
    transient: (n) => fake.failNext(n, 503, 'start'),
    rateLimit: (n) => fake.rateLimitNext(n, undefined, 'start'),
    uploads: () => fake.uploads.length,
    requests: (op) => {
      const gemini = ops[op]
      return gemini === null ? fake.requests.unknown : fake.requests[gemini]
    },
    files: () => [...fake.files.keys()].map(id),
    deletes: () => fake.deletes.map(id),
    addFile: (filename) =>
      id(fake.addFile({ displayName: filename, createTime: new Date(Date.now() - 120_000).toISOString() }).name),
    drop: (fileId) => {
      fake.files.delete(`files/${fileId}`)
    },
    close: () => fake.close(),
  }
}

export const kinds: KindEntry[] = [
  { name: 'kimi', purpose: 'file-extract', content: true, start: openAiStyle('kimi', 'KIMI') },
  { name: 'glm', purpose: 'agent', content: false, start: openAiStyle('glm', 'GLM') },
  { name: 'openai', purpose: 'user_data', content: false, start: openAiStyle('openai', 'OPENAI') },
  {
    name: 'anthropic',
    purpose: 'file',
    content: false,
    start: async () => anthropicHandle(await startFakeAnthropic()),
  },
  { name: 'gemini', purpose: 'file', content: false, start: async () => geminiHandle(await startFakeGemini()) },
]

const database = useFileDatabase()

/** The app with this kind's fake only, plus a SQL handle on its database; undefined without Postgres. */
async function setup(t: TestContext, entry: KindEntry, env: Record<string, string> = {}) {
  const db = database()
  if (!db) {
    t.skip('Postgres not reachable')
    return undefined
  }
  const fake = await entry.start()
  t.after(() => fake.close())
  const sql = postgres(db.url, { max: 1, onnotice: () => {} })
  t.after(() => sql.end())
  const app = await build(t, {
    DATABASE_URL: db.url,
    UPLOAD_TMP_DIR: await tempDir(t, 'filegate-matrix-'),
    RETRY_BASE_DELAY_MS: '10',
    RETRY_MAX_DELAY_MS: '50',
    ...fake.env,
    ...env,
  })
  const tenant = freshTenant(entry.name)
  const upload = (content: string | Buffer, fields: Array<[string, string]> = [], filename = 'doc.txt') => {
    const form = multipart([['provider', entry.name], ...fields, ['file', { filename, content, type: 'text/plain' }]])
    return app.inject({
      method: 'POST',
      url: '/v1/files',
      headers: { ...as(tenant), ...form.headers },
      payload: form.payload,
    })
  }
  const get = (url: string) => app.inject({ url, headers: as(tenant) })
  const cleanup = async (body: Record<string, unknown>) => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/cleanup',
      headers: { authorization: `Bearer ${testKeys.admin}` },
      payload: body,
    })
    assert.equal(res.statusCode, 200, res.body)
    return res.json() as {
      jobs: Record<string, { providers: Record<string, { candidates: number; deleted: number; failed: number }> }>
    }
  }
  return { app, fake, sql, tenant, upload, get, cleanup }
}

for (const entry of kinds) {
  describe(`provider kind ${entry.name}`, () => {
    it('upload, dedup, get, list, content or 409, delete', async (t) => {
      const ctx = await setup(t, entry)
      if (!ctx) return
      const text = `matrix document for ${entry.name}`
      const created = await ctx.upload(text)
      assert.equal(created.statusCode, 201, created.body)
      const file = created.json()
      assert.equal(file.provider, entry.name)
      assert.equal(file.purpose, entry.purpose)
      assert.equal(file.status, 'completed')
      assert.equal(file.bytes, Buffer.byteLength(text))
      assert.deepEqual(ctx.fake.files(), [file.provider_file_id], "the provider's own id is recorded")

      const again = await ctx.upload(text)
      assert.equal(again.statusCode, 200, again.body)
      assert.equal(again.json().deduplicated, true)
      assert.equal(again.json().id, file.id)
      assert.equal(ctx.fake.uploads(), 1, 'one provider upload for the same bytes')

      const got = await ctx.get(`/v1/files/${file.id}`)
      assert.equal(got.statusCode, 200)
      assert.equal(got.json().provider_file_id, file.provider_file_id)
      const listed = await ctx.get(`/v1/files?provider=${entry.name}`)
      assert.deepEqual(
        listed.json().data.map((f: { id: string }) => f.id),
        [file.id],
      )

      const content = await ctx.get(`/v1/files/${file.id}/content`)
      if (entry.content) {
        assert.equal(content.statusCode, 200, content.body)
        assert.match(content.body, new RegExp(text))
        assert.equal(ctx.fake.requests('content'), 1)
      } else {
        assertProblem(content, 409, 'CONTENT_UNAVAILABLE')
        assert.equal(ctx.fake.requests('content'), 0, 'no provider call for content it does not serve')
      }

      const deleted = await ctx.app.inject({ method: 'DELETE', url: `/v1/files/${file.id}`, headers: as(ctx.tenant) })
      assert.ok(deleted.statusCode < 300, deleted.body)
      assert.deepEqual(ctx.fake.deletes(), [file.provider_file_id])
      assert.deepEqual(ctx.fake.files(), [])
      assert.equal((await ctx.get(`/v1/files/${file.id}`)).json().status, 'deleted')
    })

    it('limits: /v1/limits reports the kind; a file over the operator cap is refused before any provider call', async (t) => {
      const cap = entry.name.toUpperCase()
      const ctx = await setup(t, entry, { [`${cap}_MAX_FILE_BYTES`]: '1000', [`${cap}_MAX_FILES`]: '1' })
      if (!ctx) return
      const limits = await ctx.app.inject({ url: '/v1/limits', headers: as(ctx.tenant) })
      assert.equal(limits.statusCode, 200)
      const mine = (limits.json().data as Array<Record<string, unknown>>).find((p) => p.provider === entry.name)
      assert.equal(mine?.kind, entry.name)
      assert.equal(mine?.configured, true)
      assert.equal(mine?.max_file_bytes, 1000)
      assert.equal((mine?.account as { max_files: number } | undefined)?.max_files, 1)

      assertProblem(await ctx.upload(Buffer.alloc(5000, 97)), 413, 'FILE_TOO_LARGE')
      assert.equal(ctx.fake.uploads(), 0)
      assert.equal((await ctx.upload('fits')).statusCode, 201)
      assertProblem(await ctx.upload('one too many'), 507, 'PROVIDER_QUOTA_EXCEEDED')
      assert.equal(ctx.fake.uploads(), 1, 'the account cap is filegate’s: no provider call')
    })

    it("the provider's quota error is PROVIDER_QUOTA_EXCEEDED: not retried, never opens the circuit", async (t) => {
      const ctx = await setup(t, entry, { CIRCUIT_FAILURE_THRESHOLD: '2' })
      if (!ctx) return
      ctx.fake.quota(true)
      for (let i = 0; i < 3; i++) assertProblem(await ctx.upload(`no room ${i}`), 507, 'PROVIDER_QUOTA_EXCEEDED')
      assert.equal(ctx.fake.requests('upload'), 3, 'one provider call each, no retry')
      ctx.fake.quota(false)
      assert.equal((await ctx.upload('room again')).statusCode, 201, 'the circuit stayed closed')
    })

    it('retryable failures are retried; repeated ones open the circuit, which then answers without a call', async (t) => {
      const ctx = await setup(t, entry, { CIRCUIT_FAILURE_THRESHOLD: '3', CIRCUIT_RESET_MS: '60000' })
      if (!ctx) return
      ctx.fake.transient(1)
      ctx.fake.rateLimit(1)
      const retried = await ctx.upload('after two failures')
      assert.equal(retried.statusCode, 201, retried.body)
      assert.equal(ctx.fake.requests('upload'), 3, 'a 5xx/overload and a 429, then success')

      ctx.fake.transient(1000)
      const before = ctx.fake.requests('upload')
      const failed = await ctx.upload('will fail')
      assert.ok([429, 502, 503].includes(failed.statusCode), failed.body)
      const open = await ctx.upload('circuit open')
      assertProblem(open, 503, 'PROVIDER_UNAVAILABLE')
      assert.ok(Number(open.headers['retry-after']) > 0)
      const calls = ctx.fake.requests('upload') - before
      assert.equal(calls, 3, 'three attempts (RETRY_MAX_ATTEMPTS) opened it; the open circuit made no call')
      const limits = await ctx.app.inject({ url: '/v1/limits', headers: as(ctx.tenant) })
      const mine = (limits.json().data as Array<Record<string, unknown>>).find((p) => p.provider === entry.name)
      assert.equal(mine?.circuit, 'open')
    })

    it('the expiry sweep deletes an expired file at the provider', async (t) => {
      const ctx = await setup(t, entry)
      if (!ctx) return
      const kept = (await ctx.upload('kept')).json()
      const gone = (await ctx.upload('expires', [['expires_in', '3600']])).json()
      await ctx.sql`update provider_file_uploads set expires_at = now() - interval '1 second' where id = ${gone.id}`
      const report = await ctx.cleanup({ dry_run: false, jobs: ['expired'] })
      assert.deepEqual(report.jobs.expired?.providers[entry.name], { candidates: 1, deleted: 1, failed: 0 })
      assert.deepEqual(ctx.fake.deletes(), [gone.provider_file_id])
      assert.deepEqual(ctx.fake.files(), [kept.provider_file_id])
      const row = (await ctx.get(`/v1/files/${gone.id}`)).json()
      assert.equal(row.status, 'deleted')
      assert.equal(row.deletion_reason, 'expired')
    })

    it('reconcile deletes provider files filegate does not know and tombstones rows whose file is gone', async (t) => {
      const ctx = await setup(t, entry, { RECONCILE_DELETE_UNKNOWN: 'true', RECONCILE_GRACE_MINUTES: '0' })
      if (!ctx) return
      const known = (await ctx.upload('known')).json()
      const vanished = (await ctx.upload('vanishes')).json()
      ctx.fake.drop(vanished.provider_file_id)
      const stranger = ctx.fake.addFile('stranger.txt')
      const report = await ctx.cleanup({ dry_run: false, jobs: ['reconcile'] })
      assert.equal(report.jobs.reconcile?.providers[entry.name]?.deleted, 1)
      assert.deepEqual(ctx.fake.deletes(), [stranger])
      assert.deepEqual(ctx.fake.files(), [known.provider_file_id])
      const row = (await ctx.get(`/v1/files/${vanished.id}`)).json()
      assert.equal(row.status, 'deleted')
      assert.equal(row.deletion_reason, 'reconciled')
      assert.equal((await ctx.get(`/v1/files/${known.id}`)).json().status, 'completed')
    })

    it('the OpenAI SDK works against the facade /providers/<name>/v1/files', async (t) => {
      const ctx = await setup(t, entry)
      if (!ctx) return
      await ctx.app.listen({ host: '127.0.0.1', port: 0 })
      const { port } = ctx.app.server.address() as AddressInfo
      const openai = new OpenAI({
        apiKey: testKeys.alice,
        baseURL: `http://127.0.0.1:${port}/providers/${entry.name}/v1`,
        maxRetries: 0,
      })
      const bytes = Buffer.from(`facade document for ${entry.name}`)
      const first = await openai.files.create({
        file: await toFile(bytes, 'facade.txt'),
        purpose: entry.purpose as never,
      })
      const second = await openai.files.create({
        file: await toFile(bytes, 'facade.txt'),
        purpose: entry.purpose as never,
      })
      assert.equal(first.id, second.id, 'deduplicated')
      assert.equal(first.bytes, bytes.length)
      assert.equal(ctx.fake.uploads(), 1)
      assert.deepEqual(ctx.fake.files(), [first.id], "the provider's own id")
      assert.equal((await openai.files.retrieve(first.id)).filename, 'facade.txt')
      const seen: string[] = []
      for await (const f of openai.files.list()) seen.push(f.id)
      assert.deepEqual(seen, [first.id])
      if (entry.content) {
        assert.match(await (await openai.files.content(first.id)).text(), /facade document/)
      } else {
        await assert.rejects(
          openai.files.content(first.id),
          (err: unknown) => err instanceof OpenAI.APIError && err.status === 409,
        )
        assert.equal(ctx.fake.requests('content'), 0)
      }
      assert.deepEqual(await openai.files.delete(first.id), { id: first.id, object: 'file', deleted: true })
      assert.deepEqual(ctx.fake.deletes(), [first.id])
    })
  })
}

describe('what one kind adds', () => {
  const entry = (name: string) => kinds.find((k) => k.name === name) as KindEntry

  it("openai: expires_in within OpenAI's range goes on as expires_after; outside it nothing is sent", async (t) => {
    const fake = await startFakeProvider({ kind: 'openai', apiKey: 'sk-openai-matrix-0123456789' })
    const ctx = await setup(t, { ...entry('openai'), start: async () => providerServerHandle(fake, 'OPENAI') })
    if (!ctx) return
    assert.equal((await ctx.upload('two hours', [['expires_in', '7200']])).statusCode, 201)
    assert.equal((await ctx.upload('one minute', [['expires_in', '60']])).statusCode, 201)
    assert.equal((await ctx.upload('kept')).statusCode, 201)
    assert.deepEqual(
      fake.uploads.map((u) => u.expiresAfterSeconds),
      [7200, undefined, undefined],
      '3600 ≤ seconds ≤ 2592000 (platform.openai.com/docs/api-reference/files/create)',
    )
    const [twoHours, oneMinute] = [...fake.files.values()]
    assert.equal(twoHours?.expires_at, (twoHours?.created_at ?? 0) + 7200)
    assert.equal(oneMinute?.expires_at, null, 'filegate alone deletes it, at its own expiry')
  })

  it('a second account of a kind (EXTRA_PROVIDERS kind) speaks its wire and keeps its facts', async (t) => {
    const fake = await startFakeAnthropic()
    const second = {
      ...entry('anthropic'),
      name: 'claude-two',
      start: async () => ({
        ...anthropicHandle(fake),
        env: {
          EXTRA_PROVIDERS: JSON.stringify([
            { name: 'claude-two', kind: 'anthropic', base_url: fake.baseUrl, api_key: fake.apiKey, max_files: 1 },
          ]),
        },
      }),
    }
    const ctx = await setup(t, second)
    if (!ctx) return
    const created = await ctx.upload('second account')
    assert.equal(created.statusCode, 201, created.body)
    assert.equal(created.json().provider, 'claude-two')
    assert.equal(created.json().purpose, 'file')
    assert.equal((await ctx.upload('second account')).json().deduplicated, true)
    assertProblem(await ctx.upload('one too many'), 507, 'PROVIDER_QUOTA_EXCEEDED')
    assertProblem(await ctx.get(`/v1/files/${created.json().id}/content`), 409, 'CONTENT_UNAVAILABLE')
    assert.equal(fake.requests.content, 0)
    assert.equal(fake.uploads.length, 1)
    const limits = await ctx.app.inject({ url: '/v1/limits', headers: as(ctx.tenant) })
    const mine = (limits.json().data as Array<Record<string, unknown>>).find((p) => p.provider === 'claude-two')
    assert.equal(mine?.kind, 'anthropic')
    assert.equal(mine?.max_file_bytes, 500 * 1024 * 1024, "the kind's documented cap")
  })

  it('anthropic: x-api-key, anthropic-version and the Files API beta header arrive; no Authorization', async (t) => {
    const fake = await startFakeAnthropic()
    const ctx = await setup(t, { ...entry('anthropic'), start: async () => anthropicHandle(fake) })
    if (!ctx) return
    const created = await ctx.upload('headers')
    assert.equal(created.statusCode, 201, created.body)
    assert.equal(fake.lastHeaders['x-api-key'], fake.apiKey)
    assert.equal(fake.lastHeaders['anthropic-version'], ANTHROPIC_VERSION)
    assert.equal(fake.lastHeaders['anthropic-beta'], ANTHROPIC_FILES_BETA)
    assert.equal(fake.lastHeaders.authorization, undefined, 'the key goes in x-api-key only')
    const [held] = [...fake.files.values()]
    assert.equal(held?.size_bytes, 'headers'.length)
    assert.equal(created.json().provider_file_id, held?.id)
  })
})
