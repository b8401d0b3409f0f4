/**
 * GET /v1/files/{id}/original on both kinds of store: the bytes as uploaded, as a download
 * (attachment with the RFC 6266 / 8187 filename, nosniff, the file's type, its length); 409
 * ORIGINAL_UNAVAILABLE where the original is not kept; a corrupted object is never delivered whole
 * (the response is cut before its end). And /readyz with the originals store down.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it, type TestContext } from 'node:test'
import type { OriginalsStore } from '../../src/originals/index.js'
import { build } from '../helper.js'
import {
  assertStagingEmpty,
  type Backend,
  backends,
  digest,
  failingStore,
  type OriginalsApp,
  setupOriginals,
} from './originals-support.js'
import { as, assertProblem, freshTenant, httpRequest, listen, postFile, useFileDatabase } from './uploads-support.js'

const database = useFileDatabase()

const setup = (t: TestContext, backend: Backend, wrap?: (store: OriginalsStore) => OriginalsStore) =>
  setupOriginals(t, database, backend, {}, wrap)

async function upload(ctx: OriginalsApp, tenant: string, content: Buffer, filename: string, type: string) {
  const res = await postFile(ctx.app, tenant, [
    ['provider', 'kimi'],
    ['file', { filename, content, type }],
  ])
  assert.equal(res.statusCode, 201, res.body)
  return res.json() as { id: string; sha256: string; original_stored: boolean }
}

/** GET over real HTTP: status, headers, the bytes received, and whether the response ended cleanly. */
function getRaw(port: number, path: string, headers: Record<string, string>) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: Buffer; complete: boolean }>(
    (resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path, headers }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        const done = (complete: boolean) => () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete })
        res.on('end', done(true))
        res.on('aborted', done(false))
        res.on('error', done(false))
      })
      req.on('error', reject)
      req.end()
    },
  )
}

for (const backend of backends) {
  describe(`GET /v1/files/{id}/original: ${backend.name}`, () => {
    it('streams the original as a download: attachment with the filename, nosniff, its type and length', async (t) => {
      const ctx = await setup(t, backend)
      if (!ctx) return
      const tenant = freshTenant('get')
      const content = randomBytes(1024 * 1024 + 3)
      const file = await upload(ctx, tenant, content, 'Bericht Q3 – ünïcode (final).pdf', 'application/pdf')
      const { port } = await listen(ctx.app)
      const res = await getRaw(port, `/v1/files/${file.id}/original`, as(tenant))
      assert.equal(res.status, 200)
      assert.equal(res.complete, true)
      assert.equal(res.headers['content-type'], 'application/pdf')
      assert.equal(res.headers['content-length'], String(content.length))
      assert.equal(res.headers['x-content-type-options'], 'nosniff')
      assert.equal(
        res.headers['content-disposition'],
        'attachment; filename="Bericht Q3 _ _n_code (final).pdf"; filename*=UTF-8\'\'Bericht%20Q3%20%E2%80%93%20%C3%BCn%C3%AFcode%20%28final%29.pdf',
      )
      assert.equal(digest(res.body), digest(content), 'the same bytes')

      // A small file, typed by nothing: octet-stream.
      const small = Buffer.from('plain bytes\n')
      const other = await upload(ctx, tenant, small, 'notes.txt', 'application/octet-stream')
      const got = await ctx.app.inject({ method: 'GET', url: `/v1/files/${other.id}/original`, headers: as(tenant) })
      assert.equal(got.statusCode, 200)
      assert.equal(got.headers['content-type'], 'application/octet-stream')
      assert.deepEqual(got.rawPayload, small)

      // Another tenant's id is not found, not forbidden.
      const foreign = await ctx.app.inject({
        method: 'GET',
        url: `/v1/files/${file.id}/original`,
        headers: as(freshTenant('other')),
      })
      assertProblem(foreign, 404, 'NOT_FOUND')
    })

    it('409 ORIGINAL_UNAVAILABLE: the file is deleted, or its object is missing from the store', async (t) => {
      const ctx = await setup(t, backend)
      if (!ctx) return
      const tenant = freshTenant('409')
      const content = randomBytes(200 * 1024)
      const file = await upload(ctx, tenant, content, 'a.pdf', 'application/pdf')
      await ctx.originals.store.remove({ tenant, sha256: file.sha256 })
      const missing = await ctx.app.inject({ method: 'GET', url: `/v1/files/${file.id}/original`, headers: as(tenant) })
      assertProblem(missing, 409, 'ORIGINAL_UNAVAILABLE')

      const kept = await upload(ctx, tenant, randomBytes(1000), 'b.pdf', 'application/pdf')
      const del = await ctx.app.inject({ method: 'DELETE', url: `/v1/files/${kept.id}`, headers: as(tenant) })
      assert.equal(del.statusCode, 200)
      const deleted = await ctx.app.inject({ method: 'GET', url: `/v1/files/${kept.id}/original`, headers: as(tenant) })
      assertProblem(deleted, 409, 'ORIGINAL_UNAVAILABLE')
    })

    it('a corrupted object is never served whole: the response is cut before its end', async (t) => {
      const ctx = await setup(t, backend)
      if (!ctx) return
      const tenant = freshTenant('corrupt')
      const content = randomBytes(600 * 1024)
      const file = await upload(ctx, tenant, content, 'a.pdf', 'application/pdf')
      const tampered = Buffer.from(content)
      tampered[tampered.length - 10] = (tampered[tampered.length - 10] as number) ^ 0xff
      await ctx.originals.corrupt(tenant, file.sha256, tampered)
      const { port } = await listen(ctx.app)
      const res = await getRaw(port, `/v1/files/${file.id}/original`, as(tenant))
      assert.equal(res.status, 200, 'the headers were out before the end of the object was read')
      assert.equal(res.complete, false, 'the response was aborted')
      assert.ok(res.body.length < content.length, `received ${res.body.length} of ${content.length} bytes`)
      await assertStagingEmpty(ctx.originals)
    })
  })
}

describe('GET /v1/files/{id}/original without an original', () => {
  it('409 when originals are off, and for a file uploaded before they were on', async (t) => {
    const ctx = await setup(t, backends[0] as (typeof backends)[number])
    if (!ctx) return
    const db = database()
    if (!db) return
    const tenant = freshTenant('off')
    const off = await build(t, { DATABASE_URL: db.url, ...ctx.fakes.env, UPLOAD_TMP_DIR: ctx.spoolDir })
    const uploaded = await postFile(off, tenant, [
      ['provider', 'kimi'],
      ['file', { filename: 'x.txt', content: 'uploaded while originals were off' }],
    ])
    assert.equal(uploaded.statusCode, 201, uploaded.body)
    const file = uploaded.json() as { id: string; original_stored: boolean }
    assert.equal(file.original_stored, false)
    const res = await off.inject({ method: 'GET', url: `/v1/files/${file.id}/original`, headers: as(tenant) })
    const problem = assertProblem(res, 409, 'ORIGINAL_UNAVAILABLE')
    assert.match(String(problem.detail), /ORIGINALS_URL/)

    const notKept = await ctx.app.inject({ method: 'GET', url: `/v1/files/${file.id}/original`, headers: as(tenant) })
    assertProblem(notKept, 409, 'ORIGINAL_UNAVAILABLE')
  })
})

describe('readiness with the originals store', () => {
  it('reports the store and fails readiness (503, Retry-After) while it is down', async (t) => {
    const s3 = backends.find((b) => b.name.startsWith('s3')) as (typeof backends)[number]
    const ctx = await setup(t, s3)
    if (!ctx) return
    const up = await ctx.app.inject({ method: 'GET', url: '/readyz' })
    assert.equal(up.statusCode, 200, up.body)
    assert.deepEqual((up.json() as { checks: { originals: unknown } }).checks.originals, { ok: true })
    await ctx.originals.s3?.stop()
    const down = await ctx.app.inject({ method: 'GET', url: '/readyz' })
    assert.equal(down.statusCode, 503, down.body)
    assert.ok(Number(down.headers['retry-after']) > 0)
    const body = down.json() as { reason: string; checks: Record<string, { ok: boolean; detail?: string }> }
    assert.equal(body.reason, 'originals unavailable')
    assert.equal(body.checks.originals?.ok, false)
    assert.equal(body.checks.database?.ok, true)
    assert.doesNotMatch(down.body, /filegate-originals|127\.0\.0\.1/, 'no bucket or endpoint in the body')
  })

  it('an injected store whose ping fails makes the replica unready; without originals there is no check', async (t) => {
    const backend = backends[0] as (typeof backends)[number]
    const ctx = await setup(t, backend, (store) => failingStore(store, { ping: true }))
    if (!ctx) return
    const res = await ctx.app.inject({ method: 'GET', url: '/readyz' })
    assert.equal(res.statusCode, 503)
    assert.equal((res.json() as { reason: string }).reason, 'originals unavailable')
    const db = database()
    if (!db) return
    const off = await build(t, { DATABASE_URL: db.url })
    const plain = await off.inject({ method: 'GET', url: '/readyz' })
    assert.equal(plain.statusCode, 200)
    assert.equal((plain.json() as { checks: Record<string, unknown> }).checks.originals, undefined)
  })
})
