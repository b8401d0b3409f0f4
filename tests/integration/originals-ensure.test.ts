/**
 * POST /v1/files/{id}/ensure and reconcile healing: a provider copy that vanished behind
 * filegate's back (the fake's forget switch) is uploaded again from the kept original under the
 * same filegate id; without an original the row is tombstoned `reconciled`. Real app, Postgres,
 * fake providers on loopback, originals in a local directory (one case on s3rver).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FileRow } from '../../src/domain/file-record.js'
import { createOriginalsStore, type OriginalsStore } from '../../src/originals/index.js'
import { fileDatabase, postgresSuiteSkip, requirePostgres, tempDir } from '../helper.js'
import { content, ensure, historyOf, keptApp, uploadKept, useKeptDatabase } from './originals-kept-support.js'
import {
  as,
  assertProblem,
  eventually,
  filePart,
  freshTenant,
  metric,
  postFile,
  rowsOf,
  sha256,
  spoolEntries,
} from './uploads-support.js'

const db = useKeptDatabase()
const skip = await postgresSuiteSkip()

describe('POST /v1/files/{id}/ensure', { skip }, () => {
  it('answers the file as it is while the provider still has it: no upload', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db())
    const tenant = freshTenant('ensure-present')
    const file = await uploadKept(ctx, tenant, content('present'))
    const uploads = ctx.fakes.kimi.uploads.length
    const res = await ensure(ctx.app, as(tenant), file.id)
    assert.equal(res.statusCode, 200, res.body)
    const body = res.json() as FileRow
    assert.equal(body.id, file.id)
    assert.equal(body.provider_file_id, file.provider_file_id)
    assert.equal(ctx.fakes.kimi.uploads.length, uploads, 'nothing uploaded')
    assert.equal(ctx.fakes.kimi.requests.retrieve, 1, 'the provider was asked')
    assert.deepEqual(await historyOf(ctx, file.id), [])
    assert.equal(await metric(ctx.app, 'filegate_heals_total', { provider: 'kimi', outcome: 'present' }), 1)
    // The claim was let go: a second ensure checks again.
    assert.equal((await ensure(ctx.app, as(tenant), file.id)).statusCode, 200)
    assert.equal(ctx.fakes.kimi.requests.retrieve, 2)
    assertProblem(await ensure(ctx.app, as(freshTenant('other')), file.id), 404, 'NOT_FOUND')
  })

  it('uploads the file again from its original after the provider forgot it: same id, new provider id, old one in history', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db())
    const tenant = freshTenant('ensure-heal')
    const bytes = content('forgotten')
    const file = await uploadKept(ctx, tenant, bytes)
    assert.ok(ctx.fakes.kimi.forget(file.provider_file_id as string))

    const res = await ensure(ctx.app, as(tenant), file.id)
    assert.equal(res.statusCode, 200, res.body)
    const healed = res.json() as FileRow
    assert.equal(healed.id, file.id)
    assert.notEqual(healed.provider_file_id, file.provider_file_id)
    assert.equal(healed.status, 'completed')
    assert.equal(healed.deleted_at, null)
    assert.equal(ctx.fakes.kimi.uploads.at(-1)?.id, healed.provider_file_id)
    assert.equal(ctx.fakes.kimi.uploads.at(-1)?.sha256, sha256(bytes), 'the original bytes went up')
    assert.equal(ctx.fakes.kimi.uploads.at(-1)?.filename, file.filename)
    assert.ok(ctx.fakes.kimi.files.has(healed.provider_file_id as string))
    const history = await historyOf(ctx, file.id)
    assert.deepEqual(
      history.map((h) => [h.provider_file_id, h.reason]),
      [[file.provider_file_id, 'healed']],
    )
    const got = (await ctx.app.inject({ method: 'GET', url: `/v1/files/${file.id}`, headers: as(tenant) })).json()
    assert.equal((got as FileRow).provider_file_id, healed.provider_file_id)
    assert.equal(await metric(ctx.app, 'filegate_heals_total', { provider: 'kimi', outcome: 'healed' }), 1)
    assert.deepEqual(await spoolEntries(ctx.spoolDir), [])
  })

  it('heals once for 10 concurrent ensures of one file', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db())
    const tenant = freshTenant('ensure-many')
    const file = await uploadKept(ctx, tenant, content('ten at once'))
    ctx.fakes.kimi.forget(file.provider_file_id as string)
    const before = ctx.fakes.kimi.uploads.length
    // A slow provider upload keeps the heal in progress while the others arrive.
    ctx.fakes.kimi.ops = ['upload']
    ctx.fakes.kimi.latencyMs = 300
    const answers = await Promise.all(Array.from({ length: 10 }, () => ensure(ctx.app, as(tenant), file.id)))
    for (const res of answers) assert.equal(res.statusCode, 200, res.body)
    const ids = new Set(answers.map((res) => (res.json() as FileRow).provider_file_id))
    assert.equal(ids.size, 1, 'every caller answers the one new copy')
    assert.notEqual([...ids][0], file.provider_file_id)
    assert.equal(ctx.fakes.kimi.uploads.length - before, 1, 'one provider upload')
    assert.equal((await historyOf(ctx, file.id)).length, 1)
    assert.equal(await metric(ctx.app, 'filegate_heals_total', { provider: 'kimi', outcome: 'healed' }), 1)
  })

  it('tombstones the file `reconciled` and answers 409 when there is no original to heal from', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db())
    const tenant = freshTenant('ensure-none')
    // Uploaded without its original kept (e.g. before ORIGINALS_URL was set).
    const res = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(content('not kept'))])
    const file = res.json() as FileRow
    await ctx.sql`update provider_file_uploads set original_stored = false where id = ${file.id}`
    ctx.fakes.kimi.forget(file.provider_file_id as string)
    const body = assertProblem(await ensure(ctx.app, as(tenant), file.id), 409, 'ORIGINAL_UNAVAILABLE')
    assert.match(String(body.detail), /tombstoned/)
    const row = (await ctx.app.inject({ method: 'GET', url: `/v1/files/${file.id}`, headers: as(tenant) })).json()
    assert.equal((row as FileRow).deletion_reason, 'reconciled')
    assert.equal((row as FileRow).provider_deleted, true)
    assert.equal(ctx.fakes.kimi.uploads.length, 1, 'nothing uploaded again')
    assert.equal(await metric(ctx.app, 'filegate_heals_total', { provider: 'kimi', outcome: 'unavailable' }), 1)
    // Asked again: the tombstone's answer.
    assertProblem(await ensure(ctx.app, as(tenant), file.id), 409, 'ORIGINAL_UNAVAILABLE')

    // Originals off altogether: the same.
    const off = await keptApp(t, db(), { off: true })
    const other = (await postFile(off.app, tenant, [['provider', 'kimi'], filePart(content('off'))])).json() as FileRow
    off.fakes.kimi.forget(other.provider_file_id as string)
    assertProblem(await ensure(off.app, as(tenant), other.id), 409, 'ORIGINAL_UNAVAILABLE')
    assert.equal((await rowsOf(off.app, tenant)).find((r) => r.id === other.id)?.deletion_reason, 'reconciled')
  })

  it('never uploads a corrupt original: 409 and the row tombstoned', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db())
    const tenant = freshTenant('ensure-corrupt')
    const bytes = content('damaged later')
    const file = await uploadKept(ctx, tenant, bytes)
    await ctx.corrupt(tenant, file.sha256, Buffer.from(bytes.toString().toUpperCase()))
    ctx.fakes.kimi.forget(file.provider_file_id as string)
    const uploads = ctx.fakes.kimi.requests.upload
    const body = assertProblem(await ensure(ctx.app, as(tenant), file.id), 409, 'ORIGINAL_UNAVAILABLE')
    assert.match(String(body.detail), /SHA-256/)
    assert.equal(ctx.fakes.kimi.requests.upload, uploads, 'no upload attempt')
    assert.equal((await rowsOf(ctx.app, tenant))[0]?.deletion_reason, 'reconciled')
    assert.deepEqual(await spoolEntries(ctx.spoolDir), [])
  })

  it('answers 503 ORIGINALS_UNAVAILABLE when the store cannot be read, and leaves the row as it was', async (t) => {
    if (!(await requirePostgres(t))) return
    const root = await tempDir(t, 'fg-originals-down-')
    const real = await createOriginalsStore({
      url: `file://${root}`,
      s3: { region: 'us-east-1', forcePathStyle: false },
    })
    t.after(() => real.close())
    let down = false
    const flaky: OriginalsStore = {
      ...real,
      async read(key) {
        if (down) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' })
        return real.read(key)
      },
    }
    const ctx = await keptApp(t, db(), { originals: flaky })
    const tenant = freshTenant('ensure-down')
    const file = await uploadKept(ctx, tenant, content('store down'))
    ctx.fakes.kimi.forget(file.provider_file_id as string)
    down = true
    const res = await ensure(ctx.app, as(tenant), file.id)
    const body = assertProblem(res, 503, 'ORIGINALS_UNAVAILABLE')
    assert.ok(res.headers['retry-after'])
    assert.doesNotMatch(JSON.stringify(body), /ECONNREFUSED|127\.0\.0\.1/, 'the store error stays in the log')
    const [row] = await rowsOf(ctx.app, tenant)
    assert.equal(row?.deleted_at, null, 'still live')
    assert.equal(row?.provider_file_id, file.provider_file_id, 'unchanged')
    assert.equal(await metric(ctx.app, 'filegate_heals_total', { provider: 'kimi', outcome: 'failed' }), 1)
    // The claim was let go: once the store is back, the next ensure heals.
    down = false
    const healed = await ensure(ctx.app, as(tenant), file.id)
    assert.equal(healed.statusCode, 200, healed.body)
    assert.notEqual((healed.json() as FileRow).provider_file_id, file.provider_file_id)
  })

  it('maps provider failures as elsewhere and lets go of the claim', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db(), { env: { RETRY_MAX_ATTEMPTS: '1' } })
    const tenant = freshTenant('ensure-provider-down')
    const file = await uploadKept(ctx, tenant, content('provider down'))
    ctx.fakes.kimi.forget(file.provider_file_id as string)
    ctx.fakes.kimi.failNext(1, 503, 'upload')
    const res = await ensure(ctx.app, as(tenant), file.id)
    assert.ok(res.statusCode >= 502, res.body)
    assert.equal((await rowsOf(ctx.app, tenant))[0]?.provider_file_id, file.provider_file_id, 'row unchanged')
    const again = await ensure(ctx.app, as(tenant), file.id)
    assert.equal(again.statusCode, 200, again.body)
  })

  it('heals at GLM, whose retrieve is a listing, and a copy the provider reports expired', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db())
    const tenant = freshTenant('ensure-glm')
    const file = await uploadKept(ctx, tenant, content('at glm'), [['provider', 'glm']])
    assert.equal(file.provider, 'glm')
    assert.equal((await ensure(ctx.app, as(tenant), file.id)).statusCode, 200)
    assert.equal(ctx.fakes.glm.uploads.length, 1, 'present: listed')
    ctx.fakes.glm.forget(file.provider_file_id as string)
    const res = await ensure(ctx.app, as(tenant), file.id)
    assert.equal(res.statusCode, 200, res.body)
    assert.equal(ctx.fakes.glm.uploads.length, 2)
    assert.equal((res.json() as FileRow).provider_file_id, ctx.fakes.glm.uploads[1]?.id)

    // Kimi's file object carries a status; one the provider reports expired is gone for use.
    const kimiFile = await uploadKept(ctx, tenant, content('expiring'))
    const stored = ctx.fakes.kimi.files.get(kimiFile.provider_file_id as string)
    assert.ok(stored)
    stored.status = 'expired'
    const healed = await ensure(ctx.app, as(tenant), kimiFile.id)
    assert.equal(healed.statusCode, 200, healed.body)
    assert.notEqual((healed.json() as FileRow).provider_file_id, kimiFile.provider_file_id)
  })

  it('deletes the new copy at the provider when the file was deleted while it healed', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db())
    const tenant = freshTenant('ensure-lost')
    const file = await uploadKept(ctx, tenant, content('deleted mid-heal'))
    ctx.fakes.kimi.forget(file.provider_file_id as string)
    const before = ctx.fakes.kimi.requests.upload
    ctx.fakes.kimi.ops = ['upload']
    ctx.fakes.kimi.latencyMs = 500
    const healing = ensure(ctx.app, as(tenant), file.id)
    await eventually('the heal upload reached the provider', () => ctx.fakes.kimi.requests.upload > before)
    const del = await ctx.app.inject({ method: 'DELETE', url: `/v1/files/${file.id}`, headers: as(tenant) })
    assert.equal(del.statusCode, 200)
    assertProblem(await healing, 409, 'ORIGINAL_UNAVAILABLE')
    const newId = ctx.fakes.kimi.uploads.at(-1)?.id as string
    assert.ok(newId && newId !== file.provider_file_id)
    assert.ok(ctx.fakes.kimi.deletes.includes(newId), 'the orphan copy was deleted at the provider')
    assert.equal(ctx.fakes.kimi.files.has(newId), false)
    const orphan = (await rowsOf(ctx.app, tenant)).find((r) => r.provider_file_id === newId)
    assert.equal(orphan?.deletion_reason, 'orphaned')
    assert.equal(orphan?.provider_deleted, true)
    await sleep(0)
  })

  it('deletes the copy a heal replaced, also one the provider still had: no copy is left without a row', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db())
    const tenant = freshTenant('ensure-replaced')
    const file = await uploadKept(ctx, tenant, content('replaced copy'))
    const old = file.provider_file_id as string
    // The provider answers one retrieve 404 although it still has the file (a lagging replica).
    ctx.fakes.kimi.errorNext(1, { status: 404, type: 'resource_not_found_error', message: 'not found' }, 'retrieve')
    const res = await ensure(ctx.app, as(tenant), file.id)
    assert.equal(res.statusCode, 200, res.body)
    assert.notEqual((res.json() as FileRow).provider_file_id, old)
    assert.ok(ctx.fakes.kimi.deletes.includes(old), 'the replaced copy was deleted at the provider')
    assert.equal(ctx.fakes.kimi.files.has(old), false)
    const tomb = (await rowsOf(ctx.app, tenant)).find((r) => r.provider_file_id === old)
    assert.equal(tomb?.deletion_reason, 'orphaned')
    assert.equal(tomb?.provider_deleted, true)

    // Its provider delete failing, the replaced copy waits for the provider_deletes sweep.
    ctx.fakes.kimi.forget((res.json() as FileRow).provider_file_id as string)
    const second = (res.json() as FileRow).provider_file_id as string
    ctx.fakes.kimi.addFile({ id: second, filename: file.filename })
    ctx.fakes.kimi.errorNext(1, { status: 404, type: 'resource_not_found_error', message: 'not found' }, 'retrieve')
    ctx.fakes.kimi.deleteFailNext(1, 400)
    assert.equal((await ensure(ctx.app, as(tenant), file.id)).statusCode, 200)
    assert.ok(ctx.fakes.kimi.files.has(second), 'its delete failed')
    const [waiting] = await ctx.sql<Array<{ provider_deleted: boolean }>>`
      update provider_file_uploads set next_delete_at = now()
       where provider_file_id = ${second} and deleted_at is not null returning provider_deleted`
    assert.equal(waiting?.provider_deleted, false, 'queued for the sweep (its backoff cut short here)')
    const sweep = await ctx.app.inject({
      method: 'POST',
      url: '/v1/cleanup',
      headers: as(tenant),
      payload: { dry_run: false, jobs: ['provider_deletes'] },
    })
    assert.equal(sweep.statusCode, 200, sweep.body)
    assert.equal(ctx.fakes.kimi.files.has(second), false, 'the sweep deleted it')
  })

  it('at GLM, finds a file past a cursor deleted between pages instead of healing it again', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db())
    const tenant = freshTenant('ensure-glm-cursor')
    // Another client's files fill GLM's first page of 100; ours is on the second.
    const others = Array.from({ length: 100 }, (_, i) => ctx.fakes.glm.addFile({ filename: `other-${i}.txt` }))
    const file = await uploadKept(ctx, tenant, content('past the cursor'), [['provider', 'glm']])
    let armed = true
    ctx.fakes.glm.onList = (after) => {
      if (after === undefined || !armed) return
      armed = false
      ctx.fakes.glm.forget(after)
    }
    const res = await ensure(ctx.app, as(tenant), file.id)
    assert.equal(res.statusCode, 200, res.body)
    assert.equal(armed, false, 'the cursor file was deleted mid-walk')
    assert.equal(ctx.fakes.glm.files.has(others[99]?.id as string), false)
    assert.equal((res.json() as FileRow).provider_file_id, file.provider_file_id, 'present: not healed')
    assert.equal(ctx.fakes.glm.uploads.length, 1, 'nothing uploaded again')
    assert.deepEqual(await historyOf(ctx, file.id), [])
  })

  it('at GLM, a file its listing did not show and without an original is tombstoned and deleted at the provider', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db())
    const tenant = freshTenant('ensure-glm-hidden')
    const file = await uploadKept(ctx, tenant, content('hidden'), [['provider', 'glm']])
    await ctx.sql`update provider_file_uploads set original_stored = false where id = ${file.id}`
    const id = file.provider_file_id as string
    // The listing leaves the file out (an eventually consistent listing), though the provider has it.
    ctx.fakes.glm.onList = () => {
      const hidden = ctx.fakes.glm.files.get(id)
      if (!hidden) return
      ctx.fakes.glm.forget(id)
      setImmediate(() => ctx.fakes.glm.files.set(id, hidden))
    }
    assertProblem(await ensure(ctx.app, as(tenant), file.id), 409, 'ORIGINAL_UNAVAILABLE')
    const row = (await rowsOf(ctx.app, tenant)).find((r) => r.id === file.id)
    assert.equal(row?.deletion_reason, 'reconciled')
    assert.ok(ctx.fakes.glm.deletes.includes(id), 'not being listed is no proof: the copy was deleted')
    assert.equal(ctx.fakes.glm.files.has(id), false)
    assert.equal(row?.provider_deleted, true)
  })

  it('heals from an original kept on an S3-protocol server (s3rver)', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db(), { kind: 's3' })
    const tenant = freshTenant('ensure-s3')
    const bytes = Buffer.from(randomBytes(100 * 1024).toString('hex'))
    const file = await uploadKept(ctx, tenant, bytes)
    ctx.fakes.kimi.forget(file.provider_file_id as string)
    const res = await ensure(ctx.app, as(tenant), file.id)
    assert.equal(res.statusCode, 200, res.body)
    assert.equal(ctx.fakes.kimi.uploads.at(-1)?.sha256, sha256(bytes))
    assert.equal(ctx.fakes.kimi.uploads.at(-1)?.bytes, bytes.length)
  })
})

describe('reconcile with originals kept', { skip }, () => {
  it('heals rows whose provider copy vanished and tombstones those without an original', async (t) => {
    if (!(await requirePostgres(t))) return
    // A database of its own: reconcile looks at every tenant's rows.
    const ctx = await keptApp(t, await fileDatabase(t))
    const tenant = freshTenant('reconcile-heal')
    const kept = await uploadKept(ctx, tenant, content('kept'))
    const bare = (await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(content('bare'))])).json() as FileRow
    await ctx.sql`update provider_file_uploads set original_stored = false where id = ${bare.id}`
    const untouched = await uploadKept(ctx, tenant, content('still there'))
    ctx.fakes.kimi.forget(kept.provider_file_id as string)
    ctx.fakes.kimi.forget(bare.provider_file_id as string)

    const res = await ctx.app.inject({
      method: 'POST',
      url: '/v1/cleanup',
      headers: as(tenant),
      payload: { dry_run: false, jobs: ['reconcile'] },
    })
    assert.equal(res.statusCode, 200, res.body)
    const report = res.json() as {
      jobs: { reconcile: { status: string; providers: Record<string, Record<string, number>> } }
    }
    assert.equal(report.jobs.reconcile.status, 'completed')
    assert.equal(report.jobs.reconcile.providers.kimi?.candidates, 2)
    assert.equal(report.jobs.reconcile.providers.kimi?.healed, 1)
    assert.equal(report.jobs.reconcile.providers.kimi?.failed, 0)

    const rows = new Map((await rowsOf(ctx.app, tenant)).map((r) => [r.id, r]))
    const healed = rows.get(kept.id)
    assert.equal(healed?.deleted_at, null, 'healed, not tombstoned')
    assert.notEqual(healed?.provider_file_id, kept.provider_file_id)
    assert.ok(ctx.fakes.kimi.files.has(healed?.provider_file_id as string))
    assert.equal(rows.get(bare.id)?.deletion_reason, 'reconciled')
    assert.equal(rows.get(untouched.id)?.provider_file_id, untouched.provider_file_id)
    assert.equal(await metric(ctx.app, 'filegate_heals_total', { provider: 'kimi', outcome: 'healed' }), 1)
  })
})
