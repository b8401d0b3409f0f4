/**
 * SHA-256 dedup: concurrent identical uploads make one provider upload, in one
 * process and across two app instances on one database; X-Content-SHA256 answers a live
 * duplicate at once and streams new content straight through; dedup is per tenant; a failed
 * row never blocks a retry; a stuck `uploading` row is taken over. Metrics move exactly once.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, type TestContext, test } from 'node:test'
import postgres from 'postgres'
import { databaseUnavailable } from '../../src/store/port.js'
import type { FakeUpload } from '../fakes/provider-server.js'
import { auth, type Fakes, multipart, testKeys } from '../helper.js'
import {
  as,
  assertNothingLeft,
  assertProblem,
  concurrently,
  filePart,
  freshTenant,
  metric,
  type Part,
  postFile,
  routeStoreCalls,
  rowsOf,
  setupUploads,
  sha256,
  spoolEntries,
  useFileDatabase,
} from './uploads-support.js'

const database = useFileDatabase()
const setup = (t: TestContext, env: Record<string, string> = {}, fakes?: Fakes) => setupUploads(t, database, env, fakes)

interface Answer {
  status: number
  id: string
  deduplicated: boolean
  provider_file_id: string | null
}

const answer = (res: { statusCode: number; json(): unknown }): Answer => {
  const body = res.json() as Answer
  return {
    status: res.statusCode,
    id: body.id,
    deduplicated: body.deduplicated,
    provider_file_id: body.provider_file_id,
  }
}

function assertOneUpload(answers: Answer[], n: number) {
  const ids = new Set(answers.map((a) => a.id))
  assert.equal(ids.size, 1, `every answer carries the same id: ${JSON.stringify(answers.slice(0, 3))}`)
  assert.equal(answers.filter((a) => a.status === 201 && !a.deduplicated).length, 1, 'one 201')
  assert.equal(answers.filter((a) => a.status === 200 && a.deduplicated).length, n - 1, `${n - 1} × 200 deduplicated`)
  assert.equal(new Set(answers.map((a) => a.provider_file_id)).size, 1)
}

describe('dedup', () => {
  test('50 concurrent identical uploads: exactly one provider upload, one 201 and 49 × 200', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    ctx.fakes.kimi.latencyMs = 150 // the first upload is still in flight while the others arrive
    const tenant = freshTenant()
    const content = randomBytes(32 * 1024)
    const hitsBefore = await metric(ctx.app, 'filegate_file_deduplication_hits_total', { provider: 'kimi' })
    const answers = await concurrently(50, async () =>
      answer(await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(content, 'same.txt')])),
    )
    assert.equal(ctx.fakes.kimi.uploads.length, 1, 'one provider upload')
    assert.equal(ctx.fakes.kimi.uploads[0]?.sha256, sha256(content))
    assertOneUpload(answers, 50)
    assert.equal(await metric(ctx.app, 'filegate_file_deduplication_hits_total', { provider: 'kimi' }), hitsBefore + 49)
    assert.equal(await metric(ctx.app, 'filegate_file_upload_attempts_total', { provider: 'kimi' }), 1)
    assert.equal(await metric(ctx.app, 'filegate_file_active_uploads'), 0)
    assert.equal((await rowsOf(ctx.app, tenant)).length, 1)
    assert.deepEqual(await spoolEntries(ctx.spoolDir), [])
  })

  test('concurrent identical uploads across two app instances on one database: one provider upload', async (t) => {
    const first = await setup(t)
    if (!first) return
    const second = await setup(t, {}, first.fakes)
    if (!second) return
    first.fakes.kimi.latencyMs = 300
    const tenant = freshTenant()
    const content = randomBytes(16 * 1024)
    const answers = await concurrently(50, async (i) =>
      answer(
        await postFile((i % 2 === 0 ? first : second).app, tenant, [['provider', 'kimi'], filePart(content, 'r.txt')]),
      ),
    )
    assert.equal(first.fakes.kimi.uploads.length, 1, 'one provider upload across both replicas')
    assertOneUpload(answers, 50)
    const hits =
      (await metric(first.app, 'filegate_file_deduplication_hits_total')) +
      (await metric(second.app, 'filegate_file_deduplication_hits_total'))
    assert.equal(hits, 49)
    assert.equal(await metric(first.app, 'filegate_file_active_uploads'), 0)
    assert.equal(await metric(second.app, 'filegate_file_active_uploads'), 0)
  })

  test('a dedup hit moves the hit counter and the deduplicated bytes by exactly one upload', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const tenant = freshTenant()
    const content = 'dedup me please'
    const created = await postFile(ctx.app, tenant, [['provider', 'glm'], filePart(content)])
    assert.equal(created.statusCode, 201, created.body)
    const labels = { provider: 'glm' }
    const hits = await metric(ctx.app, 'filegate_file_deduplication_hits_total', labels)
    const bytes = await metric(ctx.app, 'filegate_file_upload_bytes_total', { ...labels, status: 'deduplicated' })
    const success = await metric(ctx.app, 'filegate_file_upload_bytes_total', { ...labels, status: 'success' })
    assert.equal(success, Buffer.byteLength(content))
    const again = await postFile(ctx.app, tenant, [['provider', 'glm'], filePart(content, 'other-name.txt')])
    assert.equal(again.statusCode, 200, again.body)
    assert.equal(again.json().deduplicated, true)
    assert.equal(again.json().id, created.json().id)
    assert.equal(again.json().filename, 'doc.txt', 'the live file is answered as it is')
    assert.ok(again.json().last_used_at >= created.json().last_used_at)
    assert.equal(await metric(ctx.app, 'filegate_file_deduplication_hits_total', labels), hits + 1)
    assert.equal(
      await metric(ctx.app, 'filegate_file_upload_bytes_total', { ...labels, status: 'deduplicated' }),
      bytes + Buffer.byteLength(content),
    )
    assert.equal(
      await metric(ctx.app, 'filegate_file_upload_bytes_total', { ...labels, status: 'success' }),
      success,
      'success bytes did not move',
    )
    assert.equal(ctx.fakes.glm.uploads.length, 1)
    // another purpose is another file (the default, agent, is not code-interpreter)
    const other = await postFile(ctx.app, tenant, [
      ['provider', 'glm'],
      ['purpose', 'code-interpreter'],
      filePart(content),
    ])
    assert.equal(other.statusCode, 201, other.body)
    assert.equal(ctx.fakes.glm.uploads.length, 2)
  })

  test('concurrent dedup hits share batched probes: fewer database calls than uploads, no claims', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const tenant = freshTenant()
    const content = randomBytes(8 * 1024)
    const created = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(content, 'b.txt')])
    assert.equal(created.statusCode, 201, created.body)
    const calls = new Map<string, number>()
    routeStoreCalls(t, ctx.app, (call, fn, args) => {
      calls.set(fn, (calls.get(fn) ?? 0) + 1)
      return call(fn, args)
    })
    const answers = await concurrently(40, async () =>
      answer(await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(content, 'b.txt')])),
    )
    assert.ok(answers.every((a) => a.status === 200 && a.deduplicated && a.id === created.json().id))
    const probes = calls.get('find_live_duplicates') ?? 0
    assert.ok(probes >= 1 && probes < 40, `40 hits took ${probes} probe calls`)
    assert.equal(calls.get('claim_upload') ?? 0, 0, 'a hit never claims')
    assert.equal(ctx.fakes.kimi.uploads.length, 1)
  })

  test('a batched probe that fails fails each of its uploads with 503, leaving no spool, row or upload', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const tenant = freshTenant()
    let failed = 0
    const restore = routeStoreCalls(t, ctx.app, (call, fn, args) => {
      if (fn === 'find_live_duplicates') {
        failed++
        return Promise.reject(databaseUnavailable(new Error('connection reset')))
      }
      return call(fn, args)
    })
    const answers = await concurrently(12, async (i) =>
      postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(i % 2 === 0 ? 'same body' : `body ${i}`)]),
    )
    for (const res of answers) assertProblem(res, 503, 'DATABASE_UNAVAILABLE')
    assert.ok(failed >= 1 && failed < 12, `${failed} probe calls for 12 uploads`)
    restore()
    await assertNothingLeft(ctx, tenant)
  })

  test('X-Content-SHA256 with a live duplicate answers 200 without a provider upload', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const tenant = freshTenant()
    const content = randomBytes(8 * 1024)
    const created = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(content, 'a.pdf')])
    assert.equal(created.statusCode, 201, created.body)
    const variants: Part[][] = [
      [['provider', 'kimi'], filePart(content, 'a.pdf')],
      [filePart(content, 'a.pdf'), ['provider', 'kimi']],
      [['provider', 'auto'], filePart(content, 'a.pdf')],
    ]
    for (const parts of variants) {
      const res = await postFile(ctx.app, tenant, parts, { 'x-content-sha256': sha256(content).toUpperCase() })
      assert.equal(res.statusCode, 200, res.body)
      assert.equal(res.json().deduplicated, true)
      assert.equal(res.json().id, created.json().id)
    }
    assert.equal(ctx.fakes.kimi.uploads.length, 1)
    assert.equal(ctx.fakes.glm.uploads.length, 0)
    assert.equal(await metric(ctx.app, 'filegate_file_deduplication_hits_total', { provider: 'kimi' }), 3)
    assert.deepEqual(await spoolEntries(ctx.spoolDir), [])
  })

  test('X-Content-SHA256 with new content streams it through: 201 and the provider got the exact bytes', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const tenant = freshTenant()
    const content = randomBytes(3 * 1024 * 1024 + 17)
    const res = await postFile(
      ctx.app,
      tenant,
      [['provider', 'kimi'], ['metadata', '{"k":"v"}'], filePart(content, 'big.pdf')],
      {
        'x-content-sha256': sha256(content),
      },
    )
    assert.equal(res.statusCode, 201, res.body)
    const file = res.json()
    assert.equal(file.deduplicated, false)
    assert.equal(file.bytes, content.length)
    assert.equal(file.sha256, sha256(content))
    assert.equal(file.status, 'completed')
    assert.deepEqual(file.metadata, { k: 'v' })
    assert.equal(ctx.fakes.kimi.uploads.length, 1)
    const received = ctx.fakes.kimi.uploads[0]
    assert.equal(received?.bytes, content.length)
    assert.equal(received?.sha256, sha256(content))
    assert.equal(received?.id, file.provider_file_id)
    assert.deepEqual(await spoolEntries(ctx.spoolDir), [], 'nothing was spooled')
    assert.equal(
      await metric(ctx.app, 'filegate_file_upload_bytes_total', { provider: 'kimi', status: 'success' }),
      content.length,
    )
  })

  test('spooled uploads larger than the multipart default (64 KiB) reach the provider whole', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const tenant = freshTenant()
    const cases: Array<{ parts: (c: Buffer) => Part[]; size: number }> = [
      { parts: (c) => [['provider', 'kimi'], filePart(c, 'a.pdf')], size: 3 * 1024 * 1024 + 5 },
      { parts: (c) => [filePart(c, 'b.pdf'), ['provider', 'kimi']], size: 65 * 1024 },
      { parts: (c) => [['provider', 'auto'], filePart(c, 'c.pdf')], size: 1024 * 1024 },
    ]
    for (const c of cases) {
      const content = randomBytes(c.size)
      const res = await postFile(ctx.app, tenant, c.parts(content))
      assert.equal(res.statusCode, 201, res.body)
      assert.equal(res.json().bytes, content.length)
      assert.equal(res.json().sha256, sha256(content))
      const received: FakeUpload | undefined = [...ctx.fakes.kimi.uploads, ...ctx.fakes.glm.uploads].find(
        (u) => u.id === res.json().provider_file_id,
      )
      assert.equal(received?.bytes, content.length)
      assert.equal(received?.sha256, sha256(content))
    }
    assert.deepEqual(await spoolEntries(ctx.spoolDir), [])
  })

  test('dedup is per tenant: alice and bob each get their own provider upload and see only their file', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const content = randomBytes(4096)
    const parts = (): Part[] => [['provider', 'kimi'], filePart(content, 'shared.txt')]
    const post = (key: string) => {
      const body = multipart(parts())
      return ctx.app.inject({
        method: 'POST',
        url: '/v1/files',
        headers: { ...auth(key), ...body.headers },
        payload: body.payload,
      })
    }
    const alice = await post(testKeys.alice)
    const bob = await post(testKeys.bob)
    assert.equal(alice.statusCode, 201, alice.body)
    assert.equal(bob.statusCode, 201, `bob does not learn that alice has it: ${bob.body}`)
    assert.equal(bob.json().deduplicated, false)
    assert.notEqual(alice.json().id, bob.json().id)
    assert.equal(ctx.fakes.kimi.uploads.length, 2)
    // and with a declared hash: no shortcut through the other tenant's file either
    const carol = freshTenant('carol')
    const declared = await postFile(ctx.app, carol, parts(), { 'x-content-sha256': sha256(content) })
    assert.equal(declared.statusCode, 201, declared.body)
    assert.equal(ctx.fakes.kimi.uploads.length, 3)

    const listA = await ctx.app.inject({ method: 'GET', url: '/v1/files', headers: auth(testKeys.alice) })
    assert.deepEqual(
      listA.json().data.map((f: { id: string }) => f.id),
      [alice.json().id],
    )
    const bySha = await ctx.app.inject({
      method: 'GET',
      url: `/v1/files?sha256=${sha256(content)}`,
      headers: auth(testKeys.bob),
    })
    assert.deepEqual(
      bySha.json().data.map((f: { id: string }) => f.id),
      [bob.json().id],
    )
    const cross = await ctx.app.inject({
      method: 'GET',
      url: `/v1/files/${alice.json().id}`,
      headers: auth(testKeys.bob),
    })
    assertProblem(cross, 404, 'NOT_FOUND')
    // a second upload by alice dedups against her own file only
    const again = await post(testKeys.alice)
    assert.equal(again.statusCode, 200)
    assert.equal(again.json().id, alice.json().id)
  })

  test('a failed row never blocks a retry of the same content', async (t) => {
    const ctx = await setup(t, { RETRY_MAX_ATTEMPTS: '3' })
    if (!ctx) return
    const tenant = freshTenant()
    const content = 'fails first'
    ctx.fakes.kimi.failNext(3, 500, 'upload')
    const failedBytes = await metric(ctx.app, 'filegate_file_upload_bytes_total', {
      provider: 'kimi',
      status: 'failed',
    })
    const failed = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(content)])
    const problem = assertProblem(failed, 502, 'PROVIDER_ERROR')
    assert.equal(problem.provider, 'kimi')
    assert.doesNotMatch(failed.body, /secret stack frame|app\.py/, '5xx does not leak the provider internals')
    assert.equal(ctx.fakes.kimi.requests.upload, 3, 'three attempts')
    assert.equal(ctx.fakes.kimi.uploads.length, 0)
    assert.equal(
      await metric(ctx.app, 'filegate_file_upload_bytes_total', { provider: 'kimi', status: 'failed' }),
      failedBytes + Buffer.byteLength(content),
    )
    const rows = await rowsOf(ctx.app, tenant)
    assert.equal(rows.length, 1)
    assert.equal(rows[0]?.status, 'failed')
    assert.match(String(rows[0]?.error), /PROVIDER_ERROR/)

    const retried = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(content)])
    assert.equal(retried.statusCode, 201, retried.body)
    assert.equal(retried.json().deduplicated, false)
    assert.equal(ctx.fakes.kimi.uploads.length, 1)
    const live = await ctx.app.inject({ method: 'GET', url: '/v1/files', headers: as(tenant) })
    assert.deepEqual(
      live.json().data.map((f: { id: string; status: string }) => f.status),
      ['completed'],
    )
    assert.equal(await metric(ctx.app, 'filegate_file_active_uploads'), 0)
  })

  test('an uploading row older than the stuck threshold is taken over', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const db = database()
    if (!db) return
    const tenant = freshTenant()
    const content = 'left behind by a crashed replica'
    const claim = await ctx.app.store.call<{ outcome: string; file: { id: string } }>('claim_upload', {
      p_tenant_id: tenant,
      p_provider: 'kimi',
      p_purpose: 'file-extract',
      p_sha256: sha256(content),
      p_bytes: Buffer.byteLength(content),
      p_filename: 'doc.txt',
      p_mime_type: 'text/plain',
    })
    assert.equal(claim.outcome, 'claimed')
    const sql = postgres(db.url, { max: 1, onnotice: () => {} })
    t.after(() => sql.end({ timeout: 1 }))
    await sql`update provider_file_uploads set updated_at = now() - interval '31 minutes' where id = ${claim.file.id}`
    const res = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(content)])
    assert.equal(res.statusCode, 201, res.body)
    assert.equal(res.json().id, claim.file.id, 'the stuck row itself was taken over')
    assert.equal(ctx.fakes.kimi.uploads.length, 1)
  })
})
