/**
 * The `originals` cleanup job: an original goes once nothing of its tenant uses its content, exactly
 * once across replicas, never while a live row (or a tombstone still waiting for its provider
 * delete) uses it; staging leftovers and objects no row knows go after the grace; an upload of the
 * same content racing a delete waits for it and writes the object anew. Each test has a database
 * of its own (the job looks at every tenant), real Postgres, fake providers, a local-directory store.
 */
import assert from 'node:assert/strict'
import { utimes } from 'node:fs/promises'
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { describe, it, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { FileRow } from '../../src/domain/file-record.js'
import { OriginalsSweep } from '../../src/domain/originals-sweep.js'
import { SettleWaiters } from '../../src/domain/settle-waiters.js'
import { spoolToFile } from '../../src/domain/spool.js'
import type { Tallies } from '../../src/domain/sweep-batches.js'
import { Uploads } from '../../src/domain/uploads.js'
import { createOriginalsStore, type OriginalsStore } from '../../src/originals/index.js'
import type { StorePort } from '../../src/store/port.js'
import { startS3Server } from '../fakes/s3-server.js'
import { build, fileDatabase, postgresSuiteSkip, requirePostgres, tempDir, testConfig } from '../helper.js'
import { content, copy, type KeptContext, keptApp, originalRow, uploadKept } from './originals-kept-support.js'
import { collect, readAll } from './originals-support.js'
import { as, eventually, freshTenant, routeStoreCalls, sha256 } from './uploads-support.js'

const skip = await postgresSuiteSkip()

interface JobReport {
  status: string
  reason?: string
  providers: Record<string, { candidates: number; deleted: number; failed: number; candidate_ids?: string[] }>
}

async function runJob(ctx: Pick<KeptContext, 'app'>, body: Record<string, unknown> = {}): Promise<JobReport> {
  const res = await ctx.app.inject({
    method: 'POST',
    url: '/v1/cleanup',
    headers: as('ops'),
    payload: { dry_run: false, jobs: ['originals'], ...body },
  })
  assert.equal(res.statusCode, 200, res.body)
  return (res.json() as { jobs: { originals: JobReport } }).jobs.originals
}

const deleteFile = async (ctx: KeptContext, tenant: string, id: string) => {
  const res = await ctx.app.inject({ method: 'DELETE', url: `/v1/files/${id}`, headers: as(tenant) })
  assert.equal(res.statusCode, 200, res.body)
  return res.json() as FileRow
}

/** What a store that refuses connections answers (an S3 endpoint down). */
const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9000'), { code: 'ECONNREFUSED' })

/**
 * A local-directory store whose removals are counted (and may be held at a gate); `outage.down`
 * makes it refuse removals and listings, as a store that refuses connections does.
 */
async function countingStore(t: TestContext) {
  const root = await tempDir(t, 'fg-originals-counted-')
  const real = await createOriginalsStore({ url: `file://${root}`, s3: { region: 'us-east-1', forcePathStyle: false } })
  t.after(() => real.close())
  const removes = new Map<string, number>()
  const outage = { down: false }
  let gate: Promise<void> | undefined
  let arrived: (() => void) | undefined
  const store: OriginalsStore = {
    ...real,
    async *list() {
      if (outage.down) throw refused()
      yield* real.list()
    },
    async *listStaging() {
      if (outage.down) throw refused()
      yield* real.listStaging()
    },
    async remove(key) {
      if (outage.down) throw refused()
      const k = `${key.tenant}/${key.sha256}`
      removes.set(k, (removes.get(k) ?? 0) + 1)
      arrived?.()
      if (gate) await gate
      // Slow enough that two workers would overlap if both held the same original.
      await new Promise((r) => setTimeout(r, 5))
      return real.remove(key)
    },
  }
  return {
    store,
    root,
    removes,
    outage,
    /** Holds every removal until the returned function is called; `reached` resolves on the first. */
    hold() {
      let open: () => void = () => {}
      gate = new Promise((r) => {
        open = r
      })
      const reached = new Promise<void>((r) => {
        arrived = r
      })
      return {
        reached,
        release: () => {
          gate = undefined
          arrived = undefined
          open()
        },
      }
    },
  }
}

/**
 * A loopback port in front of `target` that can stop listening (connections refused, as a store
 * that is down answers) and listen again on the same port.
 */
async function connectionGate(t: TestContext, target: string) {
  const to = new URL(target)
  const sockets = new Set<Socket>()
  let server: Server | undefined
  let port = 0
  const accept = async () => {
    const gate = createServer((client) => {
      const upstream = connect(Number(to.port), to.hostname)
      for (const s of [client, upstream]) {
        sockets.add(s)
        s.on('error', () => {})
        s.once('close', () => sockets.delete(s))
      }
      client.once('close', () => upstream.destroy())
      upstream.once('close', () => client.destroy())
      client.pipe(upstream).pipe(client)
    })
    await new Promise<void>((resolve) => gate.listen(port, '127.0.0.1', resolve))
    port = (gate.address() as AddressInfo).port
    server = gate
  }
  const refuse = async () => {
    const gate = server
    server = undefined
    for (const s of sockets) s.destroy()
    if (gate) await new Promise<void>((resolve) => gate.close(() => resolve()))
  }
  await accept()
  t.after(refuse)
  return { endpoint: `http://127.0.0.1:${port}`, accept, refuse }
}

/** One run of the originals sweep outside the job (no job lease), grace 0: its tallies. */
async function sweepOnce(
  store: StorePort,
  originals: OriginalsStore,
  o: { batchSize: number; concurrency: number; leaseSeconds: number },
): Promise<Tallies> {
  const tallies: Tallies = {}
  await new OriginalsSweep(
    {
      store,
      originals,
      graceMinutes: 0,
      inFlightMs: 60_000,
      ...o,
      renewLease: async () => true,
      stopping: () => false,
      warn: () => {},
    },
    { dryRun: false },
  ).run(tallies)
  return tallies
}

const exists = async (store: OriginalsStore, tenant: string, sha: string) =>
  (await store.stat({ tenant, sha256: sha })) !== null

describe('the originals job', { skip }, () => {
  it('deletes each unused original exactly once with two replicas sharing one database and one store', async (t) => {
    if (!(await requirePostgres(t))) return
    const db = await fileDatabase(t)
    const counted = await countingStore(t)
    const env = { ORIGINALS_GRACE_MINUTES: '0', CLEANUP_BATCH_SIZE: '3', CLEANUP_CONCURRENCY: '2' }
    const a = await keptApp(t, db, { originals: counted.store, env })
    const b = { app: await build(t, { ...a.env, UPLOAD_TMP_DIR: await tempDir(t) }, { originals: counted.store }) }
    const tenant = freshTenant('job-once')
    const files: FileRow[] = []
    for (let i = 0; i < 12; i++) files.push(await uploadKept(a, tenant, content(`file ${i}`)))
    for (const f of files) await deleteFile(a, tenant, f.id)

    // Both replicas run the job at once, twice: the job lease lets one in at a time.
    const reports = await Promise.all([runJob(a), runJob(b), runJob(a), runJob(b)])
    const deleted = reports.reduce((n, r) => n + (r.providers.originals?.deleted ?? 0), 0)
    assert.equal(deleted, 12, JSON.stringify(reports))
    for (const f of files) {
      assert.equal(counted.removes.get(`${tenant}/${f.sha256}`), 1, 'removed once')
      assert.equal(await exists(counted.store, tenant, f.sha256), false)
      assert.equal(await originalRow(a, tenant, f.sha256), undefined, 'its row is gone')
    }

    // Without the job lease (two sweeps side by side, as two replicas' workers): the row leases alone.
    const more: FileRow[] = []
    for (let i = 0; i < 20; i++) more.push(await uploadKept(a, tenant, content(`more ${i}`)))
    for (const f of more) await deleteFile(a, tenant, f.id)
    const sweep = (app: typeof a.app) =>
      sweepOnce(app.store, counted.store, { batchSize: 3, concurrency: 3, leaseSeconds: 600 })
    const [ta, tb] = await Promise.all([sweep(a.app), sweep(b.app)])
    assert.equal((ta.originals?.deleted ?? 0) + (tb.originals?.deleted ?? 0), 20)
    for (const f of more) assert.equal(counted.removes.get(`${tenant}/${f.sha256}`), 1, 'removed once')
  })

  it('a file deleted while the bucket refuses connections loses its original once it is back, though the failed run could not let go at first', async (t) => {
    if (!(await requirePostgres(t))) return
    const s3 = await startS3Server(t)
    const gate = await connectionGate(t, s3.endpoint)
    const ctx = await keptApp(t, await fileDatabase(t), {
      env: {
        ORIGINALS_URL: `s3://${s3.bucket}/originals`,
        S3_ENDPOINT: gate.endpoint,
        S3_REGION: 'us-east-1',
        S3_ACCESS_KEY_ID: 'S3RVER',
        S3_SECRET_ACCESS_KEY: 'S3RVER',
        S3_FORCE_PATH_STYLE: 'true',
        ORIGINALS_GRACE_MINUTES: '0',
      },
    })
    // The bucket as the test sees it, past the gate.
    const bucket = await createOriginalsStore({ url: `s3://${s3.bucket}/originals`, s3: s3.options })
    t.after(() => bucket.close())
    const tenant = freshTenant('job-outage')
    const file = await uploadKept(ctx, tenant, content('deleted in an outage'))
    assert.ok(await exists(bucket, tenant, file.sha256))
    await gate.refuse()
    await deleteFile(ctx, tenant, file.id)
    // The database does not answer the run's first two attempts to let go of its claim either.
    let releases = 0
    routeStoreCalls(t, ctx.app, (call, fn, args) => {
      if (fn === 'release_original_delete' && ++releases <= 2) {
        return Promise.reject(new Error('write CONNECT_TIMEOUT 127.0.0.1:5432'))
      }
      return call(fn, args)
    })
    const failed = await runJob(ctx)
    assert.equal(failed.status, 'failed', 'the bucket refused its listing too')
    assert.equal(failed.providers.originals?.failed, 1)
    assert.ok(await exists(bucket, tenant, file.sha256))

    await gate.accept()
    const next = await runJob(ctx)
    assert.equal(next.status, 'completed', JSON.stringify(next))
    assert.equal(next.providers.originals?.deleted, 1)
    assert.equal(await exists(bucket, tenant, file.sha256), false, 'gone from the bucket at the next sweep')
    assert.equal(await originalRow(ctx, tenant, file.sha256), undefined)
  })

  it('a run that fails after claiming a batch (its job lease not renewed) leaves nothing held for the next one', async (t) => {
    if (!(await requirePostgres(t))) return
    const counted = await countingStore(t)
    const ctx = await keptApp(t, await fileDatabase(t), {
      originals: counted.store,
      env: { ORIGINALS_GRACE_MINUTES: '0', CLEANUP_BATCH_SIZE: '2' },
    })
    const tenant = freshTenant('job-lease-lost')
    const files: FileRow[] = []
    for (let i = 0; i < 3; i++) files.push(await uploadKept(ctx, tenant, content(`lease lost ${i}`)))
    for (const f of files) await deleteFile(ctx, tenant, f.id)
    // The job lease is taken, then the database stops answering its renewal.
    let leases = 0
    const restore = routeStoreCalls(t, ctx.app, (call, fn, args) => {
      if (fn === 'acquire_job_lease' && ++leases === 2) return Promise.reject(new Error('connect ETIMEDOUT'))
      return call(fn, args)
    })
    assert.equal((await runJob(ctx)).status, 'failed')
    restore()
    const next = await runJob(ctx)
    assert.equal(next.providers.originals?.deleted, 3, JSON.stringify(next))
    for (const f of files) assert.equal(await exists(counted.store, tenant, f.sha256), false)
  })

  it('holds a claim with a short lease renewed while the removal lasts; a claim no one could let go of lapses with it', async (t) => {
    if (!(await requirePostgres(t))) return
    const counted = await countingStore(t)
    const ctx = await keptApp(t, await fileDatabase(t), { originals: counted.store })
    const tenant = freshTenant('job-short-lease')
    const file = await uploadKept(ctx, tenant, content('short lease'))
    await deleteFile(ctx, tenant, file.id)
    const sweep = (leaseSeconds: number) =>
      sweepOnce(ctx.app.store, counted.store, { batchSize: 10, concurrency: 2, leaseSeconds })
    // A removal that outlasts the lease keeps its claim: the run renews it.
    const held = counted.hold()
    const running = sweep(1)
    await held.reached
    const first = (await originalRow(ctx, tenant, file.sha256))?.deleting_until as Date
    assert.ok(first, 'claimed')
    await eventually('the claim renewed past its first lease', async () => {
      const now = (await originalRow(ctx, tenant, file.sha256))?.deleting_until
      return now instanceof Date && now.getTime() > first.getTime()
    })
    held.release()
    assert.equal((await running).originals?.deleted, 1)

    // The store refuses and the database cannot be told: the claim lapses after its short lease.
    const again = await uploadKept(ctx, tenant, content('lapses'))
    await deleteFile(ctx, tenant, again.id)
    counted.outage.down = true
    const restore = routeStoreCalls(t, ctx.app, (call, fn, args) =>
      fn === 'release_original_delete' ? Promise.reject(new Error('connect ECONNREFUSED')) : call(fn, args),
    )
    await sweep(1).catch(() => undefined)
    const stuck = await originalRow(ctx, tenant, again.sha256)
    assert.ok(stuck?.deleting_until, 'still claimed: no one could let go of it')
    restore()
    counted.outage.down = false
    await eventually('the lapsed claim is taken again and the original removed', async () => {
      await sweep(1)
      return !(await exists(counted.store, tenant, again.sha256))
    })
  })

  it('never deletes an original a live row uses, nor one whose provider delete is still owed', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, await fileDatabase(t), { env: { ORIGINALS_GRACE_MINUTES: '0' } })
    const store = ctx.app.originals as OriginalsStore
    const tenant = freshTenant('job-shared')
    const source = await uploadKept(ctx, tenant, content('shared'))
    const res = await copy(ctx.app, as(tenant), source.id, { provider: 'glm' })
    assert.equal(res.statusCode, 201, res.body)
    const glmCopy = res.json() as FileRow

    await deleteFile(ctx, tenant, source.id)
    let report = await runJob(ctx)
    assert.equal(report.providers.originals?.candidates, 0)
    assert.ok(await exists(store, tenant, source.sha256), 'the glm copy still uses it')
    // The same content as another tenant's file is another original: also untouched.
    assert.ok(await originalRow(ctx, tenant, source.sha256))

    // The last row is deleted, but its provider delete fails: the tombstone still needs the content.
    ctx.fakes.glm.deleteFailNext(3, 500)
    const tomb = await deleteFile(ctx, tenant, glmCopy.id)
    assert.equal(tomb.provider_deleted, false)
    report = await runJob(ctx)
    assert.equal(report.providers.originals?.candidates, 0)
    assert.ok(await exists(store, tenant, source.sha256))

    // Once the provider delete is done, the original goes.
    await ctx.sql`update provider_file_uploads set next_delete_at = now() where id = ${glmCopy.id}`
    const pd = await ctx.app.inject({
      method: 'POST',
      url: '/v1/cleanup',
      headers: as('ops'),
      payload: { dry_run: false, jobs: ['provider_deletes'] },
    })
    assert.equal(pd.statusCode, 200, pd.body)
    report = await runJob(ctx)
    assert.equal(report.providers.originals?.deleted, 1)
    assert.equal(await exists(store, tenant, source.sha256), false)
  })

  it('waits out the grace; a dry run lists and removes nothing; skipped when originals are off', async (t) => {
    if (!(await requirePostgres(t))) return
    const db = await fileDatabase(t)
    const ctx = await keptApp(t, db)
    const store = ctx.app.originals as OriginalsStore
    const tenant = freshTenant('job-grace')
    const file = await uploadKept(ctx, tenant, content('recent'))
    await deleteFile(ctx, tenant, file.id)
    assert.equal((await runJob(ctx)).providers.originals?.candidates, 0, 'referenced within the grace')
    assert.ok(await exists(store, tenant, file.sha256))

    await ctx.sql`update file_originals set last_referenced_at = now() - interval '61 minutes'`
    const dry = await runJob(ctx, { dry_run: true })
    assert.deepEqual(dry.providers.originals?.candidate_ids, [`${tenant}/${file.sha256}`])
    assert.ok(await exists(store, tenant, file.sha256), 'a dry run removes nothing')
    assert.ok((await originalRow(ctx, tenant, file.sha256))?.stored_at)
    assert.equal((await runJob(ctx)).providers.originals?.deleted, 1)
    assert.equal(await exists(store, tenant, file.sha256), false)

    const off = await keptApp(t, db, { off: true })
    const report = await runJob(off)
    assert.equal(report.status, 'skipped')
    // Without `jobs`, the job runs only where originals are kept.
    const defaults = await off.app.inject({
      method: 'POST',
      url: '/v1/cleanup',
      headers: as('ops'),
      payload: { dry_run: true },
    })
    assert.equal((defaults.json() as { jobs: Record<string, unknown> }).jobs.originals, undefined)
    const kept = await ctx.app.inject({ method: 'POST', url: '/v1/cleanup', headers: as('ops'), payload: {} })
    assert.ok((kept.json() as { jobs: Record<string, unknown> }).jobs.originals)
  })

  it('removes staging leftovers and objects no row knows after the grace, and nothing younger', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, await fileDatabase(t))
    const store = ctx.app.originals as OriginalsStore
    const root = fileURLToPath(ctx.env.ORIGINALS_URL as string)
    const tenant = freshTenant('job-leftovers')
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000)

    // Staged and never committed (a crash between write and commit).
    await store.stage(tenant, Readable.from([content('old staged')]))
    const ids = (await collect(store.listStaging())).map((s) => s.id)
    assert.equal(ids.length, 1)
    await utimes(join(root, '.staging', ids[0] as string), twoHoursAgo, twoHoursAgo)
    await store.stage(tenant, Readable.from([content('young staged')]))

    // Committed but never referenced (a crash before the bookkeeping): one old, one young.
    const orphanOld = content('orphan old')
    const orphanYoung = content('orphan young')
    for (const bytes of [orphanOld, orphanYoung]) {
      await (await store.stage(tenant, Readable.from([bytes]))).commit({ sha256: sha256(bytes), bytes: bytes.length })
    }
    await utimes(join(root, tenant, sha256(orphanOld)), twoHoursAgo, twoHoursAgo)
    // An old object a live row uses.
    const live = await uploadKept(ctx, tenant, content('live'))
    await utimes(join(root, tenant, live.sha256), twoHoursAgo, twoHoursAgo)

    const dry = await runJob(ctx, { dry_run: true })
    assert.deepEqual(dry.providers.staging?.candidate_ids, [ids[0]])
    assert.deepEqual(dry.providers.unknown?.candidate_ids, [`${tenant}/${sha256(orphanOld)}`])
    const report = await runJob(ctx)
    assert.equal(report.status, 'completed')
    assert.equal(report.providers.staging?.deleted, 1)
    assert.equal(report.providers.unknown?.deleted, 1)
    const left = (await collect(store.listStaging())).map((s) => s.id)
    assert.equal(left.length, 1, 'the young staging object stays')
    assert.notEqual(left[0], ids[0])
    assert.equal(await exists(store, tenant, sha256(orphanOld)), false)
    assert.ok(await exists(store, tenant, sha256(orphanYoung)), 'younger than the grace')
    assert.ok(await exists(store, tenant, live.sha256), 'known and used')
    assert.equal(await originalRow(ctx, tenant, sha256(orphanOld)), undefined, 'no row left behind')
  })
})

describe('an upload racing the delete of its original', { skip }, () => {
  /** Uploads (the domain's) over the app's store, for an upload that brings its own original. */
  function uploadsOf(ctx: KeptContext) {
    const config = testConfig({ ...ctx.env, UPLOAD_TMP_DIR: ctx.spoolDir })
    const { app } = ctx
    const uploads = new Uploads({
      store: app.store,
      config,
      metrics: app.metrics,
      deletion: app.files.deletionDeps,
      waiters: new SettleWaiters(),
      unsettled: app.files.unsettled,
      originals: app.originals,
    })
    return async (tenant: string, bytes: Buffer) => {
      const spool = await spoolToFile(Readable.from([bytes]), {
        dir: ctx.spoolDir,
        maxBytes: 1 << 20,
        onLimit: () => new Error('too large'),
      })
      const staged = await (app.originals as OriginalsStore).stage(tenant, Readable.from([bytes]))
      const plan = app.files.plan({ provider: 'kimi', filename: 'doc.txt' })
      const meta = { filename: 'doc.txt', mimeType: 'text/plain', metadata: {}, expiresInSeconds: undefined }
      return uploads.uploadSpooled(tenant, plan, meta, spool, { kind: 'staged', staged })
    }
  }

  it('a delete under way holds the upload, which then writes the object anew', async (t) => {
    if (!(await requirePostgres(t))) return
    const counted = await countingStore(t)
    const ctx = await keptApp(t, await fileDatabase(t), {
      originals: counted.store,
      env: { ORIGINALS_GRACE_MINUTES: '0' },
    })
    const tenant = freshTenant('race-delete-first')
    const bytes = content('raced')
    const first = await uploadKept(ctx, tenant, bytes)
    await deleteFile(ctx, tenant, first.id)

    const held = counted.hold()
    const job = runJob(ctx)
    await held.reached
    assert.ok((await originalRow(ctx, tenant, first.sha256))?.deleting_until, 'the delete holds it')

    let sawDeleting = false
    routeStoreCalls(t, ctx.app, async (call, fn, args) => {
      const out = await call(fn, args)
      if (fn === 'reference_original' && (out as { outcome: string }).outcome === 'deleting') sawDeleting = true
      return out
    })
    const upload = uploadsOf(ctx)(tenant, bytes)
    await eventually('the upload met the delete', () => sawDeleting)
    held.release()
    assert.equal((await job).providers.originals?.deleted, 1)
    const result = await upload
    assert.equal(result.deduplicated, false)
    assert.equal(result.file.original_stored, true)
    assert.ok(await exists(counted.store, tenant, first.sha256), 'written anew after the delete')
    assert.ok((await originalRow(ctx, tenant, first.sha256))?.stored_at, 'and known as stored')
    // The kept bytes read back whole.
    assert.deepEqual(await readAll((await counted.store.read({ tenant, sha256: first.sha256 })).stream), bytes)
  })

  it('an upload that referenced the original first keeps the job away from it', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, await fileDatabase(t), { env: { ORIGINALS_GRACE_MINUTES: '0' } })
    const tenant = freshTenant('race-upload-first')
    const bytes = content('first')
    const first = await uploadKept(ctx, tenant, bytes)
    await deleteFile(ctx, tenant, first.id)
    // The new upload holds its claim at a slow provider while the job runs.
    ctx.fakes.kimi.ops = ['upload']
    ctx.fakes.kimi.latencyMs = 400
    const before = ctx.fakes.kimi.requests.upload
    const upload = uploadsOf(ctx)(tenant, bytes)
    await eventually('the upload reached the provider', () => ctx.fakes.kimi.requests.upload > before)
    const report = await runJob(ctx)
    assert.equal(report.providers.originals?.candidates, 0, 'in use by the upload in flight')
    const result = await upload
    assert.equal(result.file.original_stored, true)
    assert.ok(await exists(ctx.app.originals as OriginalsStore, tenant, first.sha256))
    assert.equal((await runJob(ctx)).providers.originals?.candidates, 0, 'still used by the new row')
  })
})
