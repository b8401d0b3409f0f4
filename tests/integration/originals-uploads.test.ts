/**
 * Uploads with originals kept (ORIGINALS_URL), on both kinds of store: the original is written while
 * the body streams, verified and committed under <tenant>/<sha256> before the row completes with
 * original_stored; dedup keeps one object per tenant and content (20 concurrent identical uploads
 * write it once); a store that cannot be written fails the upload with 503 ORIGINALS_UNAVAILABLE and
 * leaves nothing at the provider; no path leaves anything in the store's staging area.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { describe, it, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import postgres from 'postgres'
import type { OriginalsStore } from '../../src/originals/index.js'
import {
  assertStagingEmpty,
  assertStored,
  type Backend,
  backends,
  failingStore,
  type OriginalsApp,
  objectsOf,
  setupOriginals,
} from './originals-support.js'
import {
  as,
  assertProblem,
  concurrently,
  eventually,
  freshTenant,
  listen,
  metric,
  multipartFrame,
  postFile,
  rowsOf,
  sha256,
  shortTimeouts,
  spoolEntries,
  useFileDatabase,
} from './uploads-support.js'

const database = useFileDatabase()

const setup = (
  t: TestContext,
  backend: Backend,
  env: Record<string, string> = {},
  wrap?: (store: OriginalsStore) => OriginalsStore,
) => setupOriginals(t, database, backend, env, wrap)

const writes = (ctx: OriginalsApp, outcome: string) => metric(ctx.app, 'filegate_original_writes_total', { outcome })
const providerUploads = (ctx: OriginalsApp) => ctx.fakes.kimi.uploads.length + ctx.fakes.glm.uploads.length
const providerFiles = (ctx: OriginalsApp) => ctx.fakes.kimi.files.size + ctx.fakes.glm.files.size

/** A body of `size` random bytes: below 64 KiB it stays in memory, above it spills (and is teed). */
const body = (size: number) => randomBytes(size)

for (const backend of backends) {
  describe(`uploads keep originals: ${backend.name}`, () => {
    it('keeps the original of a new upload at <tenant>/<sha256> before the row completes (memory, spilled, streamed through)', async (t) => {
      const ctx = await setup(t, backend)
      if (!ctx) return
      const tenant = freshTenant('orig')
      const cases = [
        { name: 'held in memory', content: body(10 * 1024), streamed: false },
        { name: 'spilled to disk (S3: more than one part)', content: body(6 * 1024 * 1024 + 17), streamed: false },
        { name: 'streamed through', content: body(2 * 1024 * 1024 + 5), streamed: true },
      ]
      for (const c of cases) {
        const headers: Record<string, string> = c.streamed ? { 'x-content-sha256': sha256(c.content) } : {}
        const res = await postFile(
          ctx.app,
          tenant,
          [
            ['provider', 'kimi'],
            ['file', { filename: 'a.pdf', content: c.content }],
          ],
          headers,
        )
        assert.equal(res.statusCode, 201, `${c.name}: ${res.body}`)
        const file = res.json() as { id: string; original_stored: boolean; sha256: string }
        assert.equal(file.original_stored, true, c.name)
        assert.equal(file.sha256, sha256(c.content))
        await assertStored(ctx.originals.store, tenant, c.content)
        const rows = await rowsOf(ctx.app, tenant)
        const row = rows.find((r) => r.id === file.id)
        assert.equal(row?.original_stored, true)
        await assertStagingEmpty(ctx.originals, `${c.name}: nothing left in staging`)
      }
      assert.equal(await writes(ctx, 'created'), 3, 'each write counted once')
      assert.equal(await writes(ctx, 'failed'), 0)
      assert.equal((await objectsOf(ctx.originals.store, tenant)).length, 3)
      const usage = await ctx.app.store.call<{ objects: number; bytes: number }>('originals_usage')
      assert.ok(Number(usage.objects) >= 3)
      assert.equal(await metric(ctx.app, 'filegate_originals_objects'), Number(usage.objects))
      assert.equal(await metric(ctx.app, 'filegate_originals_bytes'), Number(usage.bytes))
      assert.deepEqual(await spoolEntries(ctx.spoolDir), [])
    })

    it('dedup: 20 concurrent identical uploads leave one object and one provider upload; a re-upload writes nothing', async (t) => {
      const ctx = await setup(t, backend)
      if (!ctx) return
      const tenant = freshTenant('dedup')
      const content = body(512 * 1024)
      const results = await concurrently(20, () =>
        postFile(ctx.app, tenant, [
          ['provider', 'kimi'],
          ['file', { filename: 'same.pdf', content }],
        ]),
      )
      const codes = results.map((r) => r.statusCode).sort()
      assert.deepEqual(codes, [...Array(19).fill(200), 201].sort(), results.map((r) => r.body).join('\n'))
      const ids = new Set(results.map((r) => (r.json() as { id: string }).id))
      assert.equal(ids.size, 1, 'one file for all of them')
      assert.ok(results.every((r) => (r.json() as { original_stored: boolean }).original_stored))
      assert.equal(ctx.fakes.kimi.uploads.length, 1, 'one provider upload')
      const objects = await objectsOf(ctx.originals.store, tenant)
      assert.equal(objects.length, 1, 'one object')
      assert.equal(objects[0]?.bytes, content.length)
      assert.equal(await writes(ctx, 'created'), 1, 'written once')
      await assertStagingEmpty(ctx.originals, 'the 19 staged copies were discarded')

      const again = await postFile(ctx.app, tenant, [
        ['provider', 'kimi'],
        ['file', { filename: 'b.pdf', content }],
      ])
      assert.equal(again.statusCode, 200)
      const streamed = await postFile(
        ctx.app,
        tenant,
        [
          ['provider', 'kimi'],
          ['file', { filename: 'c.pdf', content }],
        ],
        {
          'x-content-sha256': sha256(content),
        },
      )
      assert.equal(streamed.statusCode, 200)
      assert.equal((await writes(ctx, 'created')) + (await writes(ctx, 'existing')), 1, 'dedup hits write nothing')
      assert.equal(ctx.fakes.kimi.uploads.length, 1)
      await assertStagingEmpty(ctx.originals)
    })

    it('keeps tenants apart: the same content from two tenants is two objects', async (t) => {
      const ctx = await setup(t, backend)
      if (!ctx) return
      const [a, b] = [freshTenant('ta'), freshTenant('tb')]
      const content = body(100 * 1024)
      for (const tenant of [a, b]) {
        const res = await postFile(ctx.app, tenant, [
          ['provider', 'kimi'],
          ['file', { filename: 'x.pdf', content }],
        ])
        assert.equal(res.statusCode, 201, res.body)
      }
      assert.equal((await objectsOf(ctx.originals.store, a)).length, 1)
      assert.equal((await objectsOf(ctx.originals.store, b)).length, 1)
      await assertStored(ctx.originals.store, a, content)
      await assertStored(ctx.originals.store, b, content)
      // The same content at another provider of the same tenant: still one object.
      const glm = await postFile(ctx.app, a, [
        ['provider', 'glm'],
        ['file', { filename: 'x.pdf', content }],
      ])
      assert.equal(glm.statusCode, 201, glm.body)
      assert.equal((await objectsOf(ctx.originals.store, a)).length, 1)
      assert.equal(await writes(ctx, 'existing'), 1, 'the second write found the object')
      await assertStagingEmpty(ctx.originals)
    })

    it('refusals and failures leave nothing in staging: 413, 415 after the body, checksum mismatch, provider timeout, client abort', async (t) => {
      const ctx = await setup(t, backend, { ...shortTimeouts, KIMI_MAX_FILE_BYTES: String(1024 * 1024) })
      if (!ctx) return
      const tenant = freshTenant('refuse')
      // 413 while spooling (spilled and teed, then cut at the limit)
      const big = await postFile(ctx.app, tenant, [
        ['provider', 'kimi'],
        ['file', { filename: 'a.pdf', content: body(2 * 1024 * 1024) }],
      ])
      assertProblem(big, 413, 'FILE_TOO_LARGE')
      await assertStagingEmpty(ctx.originals, '413: nothing in staging')
      // 415 decided after the body (the provider field comes after the file part)
      const script = await postFile(ctx.app, tenant, [
        ['file', { filename: 'run.sh', content: body(300 * 1024) }],
        ['provider', 'kimi'],
      ])
      assertProblem(script, 415, 'UNSUPPORTED_FILE_TYPE')
      await assertStagingEmpty(ctx.originals, '415: nothing in staging')
      // checksum mismatch on the spooled path (auto: never streamed through)
      const wrong = await postFile(
        ctx.app,
        tenant,
        [
          ['provider', 'auto'],
          ['file', { filename: 'a.pdf', content: body(300 * 1024) }],
        ],
        {
          'x-content-sha256': sha256('something else'),
        },
      )
      assertProblem(wrong, 400, 'CHECKSUM_MISMATCH')
      await assertStagingEmpty(ctx.originals, 'checksum mismatch: nothing in staging')
      // the provider hangs while a body streams through: it times out, the staged body is removed
      ctx.fakes.kimi.hang = true
      const streamed = body(600 * 1024)
      const hung = await postFile(
        ctx.app,
        tenant,
        [
          ['provider', 'kimi'],
          ['file', { filename: 'a.pdf', content: streamed }],
        ],
        {
          'x-content-sha256': sha256(streamed),
        },
      )
      assert.ok([502, 504].includes(hung.statusCode), hung.body)
      ctx.fakes.kimi.hang = false
      await assertStagingEmpty(ctx.originals, 'provider timeout: nothing in staging')

      // the client goes away in the middle of a body that spilled (and was being staged)
      const { port } = await listen(ctx.app)
      const frame = multipartFrame([['provider', 'kimi']], { filename: 'cut.pdf' })
      const req = httpRequest({
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/v1/files',
        headers: {
          ...as(tenant),
          'content-type': frame.contentType,
          'content-length': String(frame.head.length + 900_000),
        },
      })
      req.on('error', () => {})
      req.write(frame.head)
      req.write(body(400_000))
      await eventually(
        'the body is being staged',
        async () => (await ctx.originals.staging()).length > 0 || ctx.originals.kind === 's3',
      )
      await sleep(50)
      req.destroy()
      await eventually('the upload is over', async () => (await metric(ctx.app, 'filegate_file_active_uploads')) === 0)
      await eventually('nothing in staging after the abort', async () => (await ctx.originals.staging()).length === 0)
      assert.deepEqual(await spoolEntries(ctx.spoolDir), [])
      assert.equal(providerFiles(ctx), 0, 'nothing kept at the provider')
      assert.equal((await objectsOf(ctx.originals.store, tenant)).length, 0, 'no original was committed')
      assert.equal(await writes(ctx, 'created'), 0)
      assert.equal(await writes(ctx, 'failed'), 0, "the client's failures are not the store's")
    })

    it('the store cannot be written: 503 ORIGINALS_UNAVAILABLE with Retry-After, nothing reaches the provider (spooled)', async (t) => {
      const fail: { stageFailsAfter?: number; commit?: boolean } = {}
      const ctx = await setup(t, backend, {}, (store) => failingStore(store, fail))
      if (!ctx) return
      const tenant = freshTenant('down')
      // The store breaks off while a large body is staged: the spool stops too.
      fail.stageFailsAfter = 200_000
      const cut = await postFile(ctx.app, tenant, [
        ['provider', 'kimi'],
        ['file', { filename: 'a.pdf', content: body(1024 * 1024) }],
      ])
      const problem = assertProblem(cut, 503, 'ORIGINALS_UNAVAILABLE')
      assert.ok(Number(cut.headers['retry-after']) > 0, 'Retry-After')
      assert.doesNotMatch(String(problem.detail), /injected/, 'the store error stays in the log')
      assert.deepEqual(await rowsOf(ctx.app, tenant), [], 'no claim was made')
      // The store refuses the commit, after the claim: the row fails, the provider never hears of it.
      fail.stageFailsAfter = undefined
      fail.commit = true
      for (const content of [body(2000), body(500 * 1024)]) {
        const refused = await postFile(ctx.app, tenant, [
          ['provider', 'kimi'],
          ['file', { filename: 'b.pdf', content }],
        ])
        assertProblem(refused, 503, 'ORIGINALS_UNAVAILABLE')
        assert.ok(Number(refused.headers['retry-after']) > 0)
      }
      assert.equal(providerUploads(ctx), 0, 'the provider received nothing')
      assert.equal(providerFiles(ctx), 0)
      const rows = await rowsOf(ctx.app, tenant)
      assert.equal(rows.length, 2)
      assert.ok(rows.every((r) => r.status === 'failed' && !r.original_stored && r.provider_file_id === null))
      assert.equal(await writes(ctx, 'failed'), 3, 'the staging cut short and the two refused commits')
      assert.equal((await objectsOf(ctx.originals.store, tenant)).length, 0)
      await assertStagingEmpty(ctx.originals)
      assert.deepEqual(await spoolEntries(ctx.spoolDir), [])
    })

    it('the store cannot be written on the stream-through path: 503, the provider copy is deleted', async (t) => {
      const ctx = await setup(t, backend, {}, (store) => failingStore(store, { commit: true }))
      if (!ctx) return
      const tenant = freshTenant('down-stream')
      const content = body(700 * 1024)
      const res = await postFile(
        ctx.app,
        tenant,
        [
          ['provider', 'kimi'],
          ['file', { filename: 'a.pdf', content }],
        ],
        {
          'x-content-sha256': sha256(content),
        },
      )
      assertProblem(res, 503, 'ORIGINALS_UNAVAILABLE')
      assert.ok(Number(res.headers['retry-after']) > 0)
      assert.equal(ctx.fakes.kimi.uploads.length, 1, 'the provider had the stream first')
      await eventually('the provider copy is deleted', () => ctx.fakes.kimi.files.size === 0)
      const [row] = await rowsOf(ctx.app, tenant)
      assert.equal(row?.status, 'deleted', 'the failed copy is a tombstone')
      assert.equal(row?.original_stored, false)
      await assertStagingEmpty(ctx.originals)
      assert.equal((await objectsOf(ctx.originals.store, tenant)).length, 0)
    })
  })
}

describe('uploads keep originals: the S3 server goes away', () => {
  it('503 ORIGINALS_UNAVAILABLE; the provider received nothing (spooled) and holds nothing (streamed through)', async (t) => {
    const s3 = backends.find((b) => b.name.startsWith('s3')) as (typeof backends)[number]
    const ctx = await setup(t, s3)
    if (!ctx) return
    const tenant = freshTenant('s3down')
    await ctx.originals.s3?.stop()
    for (const size of [5000, 7 * 1024 * 1024]) {
      const res = await postFile(ctx.app, tenant, [
        ['provider', 'kimi'],
        ['file', { filename: 'a.pdf', content: body(size) }],
      ])
      assertProblem(res, 503, 'ORIGINALS_UNAVAILABLE')
      assert.ok(Number(res.headers['retry-after']) > 0)
    }
    assert.equal(providerUploads(ctx), 0, 'spooled: nothing reached the provider')
    const content = body(6 * 1024 * 1024)
    const streamed = await postFile(
      ctx.app,
      tenant,
      [
        ['provider', 'kimi'],
        ['file', { filename: 'a.pdf', content }],
      ],
      {
        'x-content-sha256': sha256(content),
      },
    )
    assertProblem(streamed, 503, 'ORIGINALS_UNAVAILABLE')
    assert.equal(await writes(ctx, 'failed'), 3, 'each failed write counted once: held in memory, spilled, streamed')
    await eventually('the provider holds nothing', () => providerFiles(ctx) === 0)
    assert.ok((await rowsOf(ctx.app, tenant)).every((r) => r.deleted_at !== null || r.status === 'failed'))
    assert.deepEqual(await spoolEntries(ctx.spoolDir), [])
  })
})

describe('the originals store refusing: every failed write counts once under outcome="failed"', () => {
  it('staging (held in memory, spilled, streamed through), commit, stat: 503 ORIGINALS_UNAVAILABLE and the counter moves by one each', async (t) => {
    const fail: { stageFailsAfter?: number; commit?: boolean; stat?: boolean } = {}
    const local = backends.find((b) => b.name === 'local directory') as Backend
    const ctx = await setup(t, local, {}, (store) => failingStore(store, fail))
    if (!ctx) return
    const tenant = freshTenant('count')
    let counted = 0
    const refused = async (what: string, res: Awaited<ReturnType<typeof postFile>>) => {
      assertProblem(res, 503, 'ORIGINALS_UNAVAILABLE')
      counted++
      assert.equal(await writes(ctx, 'failed'), counted, `${what}: counted once`)
    }
    const upload = (content: Buffer, streamed = false) =>
      postFile(
        ctx.app,
        tenant,
        [
          ['provider', 'kimi'],
          ['file', { filename: 'a.pdf', content }],
        ],
        streamed ? { 'x-content-sha256': sha256(content) } : {},
      )

    fail.stageFailsAfter = 1000
    await refused('staging a body held in memory', await upload(body(2000)))
    fail.stageFailsAfter = 200_000
    await refused('staging a body that spilled to disk', await upload(body(1024 * 1024)))
    await refused('staging a body streamed through', await upload(body(700 * 1024), true))
    fail.stageFailsAfter = undefined
    fail.commit = true
    await refused('the commit, held in memory', await upload(body(2000)))
    await refused('the commit, spilled', await upload(body(300 * 1024)))
    await refused('the commit, streamed through', await upload(body(300 * 1024), true))
    fail.commit = false

    // stat: a copy keeps the original it was made from, and asks the store whether the object is
    // there when the database no longer says it is (a delete of it was claimed and abandoned).
    const kept = await upload(body(4000))
    assert.equal(kept.statusCode, 201, kept.body)
    const source = kept.json() as { id: string; sha256: string }
    const sql = postgres(database()?.url as string, { max: 1, onnotice: () => {} })
    t.after(() => sql.end({ timeout: 1 }))
    await sql`update file_originals set deleting_until = now() - interval '1 second'
               where tenant_id = ${tenant} and sha256 = ${source.sha256}`
    fail.stat = true
    await refused(
      'stat, on a copy',
      await ctx.app.inject({
        method: 'POST',
        url: `/v1/files/${source.id}/copies`,
        headers: { ...as(tenant), 'content-type': 'application/json' },
        payload: { provider: 'glm' },
      }),
    )
    fail.stat = false
    assert.equal(await writes(ctx, 'created'), 1, 'the one write that succeeded')
    await eventually('the provider keeps only the file whose original was kept', () => providerFiles(ctx) === 1)
    await assertStagingEmpty(ctx.originals)
  })
})
