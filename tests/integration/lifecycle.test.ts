/**
 * Lifecycle sweeps against real Postgres and the fake providers: expiry, exactly-once
 * deletion across two replicas, in-flight rows left alone, crash recovery via stuck + reconcile,
 * provider outages during a sweep, and dry runs that report exactly what a real run takes.
 */
import assert from 'node:assert/strict'
import { describe, it, type TestContext } from 'node:test'
import type { FastifyInstance } from 'fastify'
import postgres from 'postgres'
import { auth, build, fileDatabase, multipart, requirePostgres, startFakes, tempDir, testKeys } from '../helper.js'

const admin = auth(testKeys.admin)
const alice = auth(testKeys.alice)

async function upload(
  app: FastifyInstance,
  content: string,
  fields: Array<[string, string]> = [],
  provider = 'kimi',
): Promise<{ statusCode: number; body: Record<string, unknown> }> {
  const form = multipart([['provider', provider], ...fields, ['file', { filename: 'doc.txt', content }]])
  const res = await app.inject({
    method: 'POST',
    url: '/v1/files',
    headers: { ...alice, ...form.headers },
    payload: form.payload,
  })
  return { statusCode: res.statusCode, body: res.json() }
}

async function cleanup(app: FastifyInstance, body: Record<string, unknown>) {
  const res = await app.inject({ method: 'POST', url: '/v1/cleanup', headers: admin, payload: body })
  assert.equal(res.statusCode, 200, res.body)
  return res.json() as {
    dry_run: boolean
    jobs: Record<
      string,
      {
        status: string
        providers: Record<string, { candidates: number; deleted: number; failed: number; candidate_ids?: string[] }>
      }
    >
  }
}

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.fail(`timed out waiting for: ${what}`)
}

async function setup(t: TestContext, env: Record<string, string> = {}) {
  const db = await fileDatabase(t)
  const fakes = await startFakes(t)
  const sql = postgres(db.url, { max: 2, onnotice: () => {} })
  t.after(() => sql.end())
  const baseEnv = { DATABASE_URL: db.url, UPLOAD_TMP_DIR: await tempDir(t), ...fakes.env, ...env }
  const app = await build(t, baseEnv)
  return { db, fakes, sql, app, baseEnv }
}

const expire = (sql: postgres.Sql) =>
  sql`update provider_file_uploads set expires_at = now() - interval '1 second' where deleted_at is null and status = 'completed'`

describe('lifecycle sweeps', () => {
  it('POST /v1/cleanup is admin-only and a dry run (the default) changes nothing', async (t) => {
    if (!(await requirePostgres(t))) return
    const { app, fakes } = await setup(t)
    const up = await upload(app, 'short-lived', [['expires_in', '1']])
    assert.equal(up.statusCode, 201)
    const forbidden = await app.inject({ method: 'POST', url: '/v1/cleanup', headers: alice, payload: {} })
    assert.equal(forbidden.statusCode, 403)
    assert.equal(forbidden.json().code, 'FORBIDDEN')
    await new Promise((r) => setTimeout(r, 1100))
    const report = await cleanup(app, {})
    assert.equal(report.dry_run, true)
    assert.deepEqual(report.jobs.expired?.providers.kimi?.candidate_ids, [up.body.id])
    const after = await app.inject({ url: `/v1/files/${up.body.id}`, headers: alice })
    assert.equal(after.json().status, 'completed')
    assert.equal(fakes.kimi.deletes.length, 0)
    const bad = await app.inject({ method: 'POST', url: '/v1/cleanup', headers: admin, payload: { jobs: ['nope'] } })
    assert.equal(bad.statusCode, 400)
    assert.equal(bad.json().code, 'VALIDATION_FAILED')
  })

  it('POST /v1/cleanup with no body, or an empty JSON one, runs the defaults (a dry run of every default job)', async (t) => {
    if (!(await requirePostgres(t))) return
    const { app, fakes } = await setup(t)
    const up = await upload(app, 'short-lived', [['expires_in', '1']])
    assert.equal(up.statusCode, 201)
    await new Promise((r) => setTimeout(r, 1100))
    const bodies = [
      { name: 'no body', headers: admin },
      { name: 'empty JSON body', headers: { ...admin, 'content-type': 'application/json' } },
      {
        name: 'empty JSON body, content-length 0',
        headers: { ...admin, 'content-type': 'application/json', 'content-length': '0' },
      },
    ]
    for (const { name, headers } of bodies) {
      const res = await app.inject({ method: 'POST', url: '/v1/cleanup', headers })
      assert.equal(res.statusCode, 200, `${name}: ${res.body}`)
      const report = res.json() as {
        dry_run: boolean
        jobs: Record<string, { providers: Record<string, { candidate_ids?: string[] }> }>
      }
      assert.equal(report.dry_run, true, name)
      assert.deepEqual(
        Object.keys(report.jobs).sort(),
        ['expired', 'orphaned', 'provider_deletes', 'resumable', 'stuck'],
        name,
      )
      assert.deepEqual(report.jobs.expired?.providers.kimi?.candidate_ids, [up.body.id], name)
    }
    assert.equal(fakes.kimi.deletes.length, 0, 'a dry run deletes nothing')
    const text = await app.inject({
      method: 'POST',
      url: '/v1/cleanup',
      headers: { ...admin, 'content-type': 'application/json' },
      payload: 'not json',
    })
    assert.equal(text.statusCode, 400, 'a body that is not JSON is still refused')
  })

  it('files uploaded with expires_in=1 are gone at the provider after a sweep: deleted / expired', async (t) => {
    if (!(await requirePostgres(t))) return
    const { app, fakes } = await setup(t)
    const ids: string[] = []
    for (let i = 0; i < 3; i++) {
      const up = await upload(app, `expiring ${i}`, [['expires_in', '1']])
      assert.equal(up.statusCode, 201)
      ids.push(String(up.body.id))
    }
    const keep = await upload(app, 'kept, no expiry')
    await new Promise((r) => setTimeout(r, 1100))
    const report = await cleanup(app, { dry_run: false, jobs: ['expired'] })
    assert.deepEqual(report.jobs.expired?.providers.kimi, { candidates: 3, deleted: 3, failed: 0 })
    assert.equal(fakes.kimi.deletes.length, 3)
    for (const id of ids) {
      const f = (await app.inject({ url: `/v1/files/${id}`, headers: alice })).json()
      assert.equal(f.status, 'deleted')
      assert.equal(f.deletion_reason, 'expired')
      assert.equal(f.provider_deleted, true)
      assert.ok(!fakes.kimi.files.has(f.provider_file_id))
    }
    assert.equal((await app.inject({ url: `/v1/files/${keep.body.id}`, headers: alice })).json().status, 'completed')
    const metrics = (await app.inject('/metrics')).body
    assert.match(metrics, /filegate_file_deletions_total\{provider="kimi",reason="expired"\} 3/)
    assert.match(metrics, /filegate_cleanup_runs_total\{job="expired",outcome="success"\} 1/)
    assert.match(metrics, /filegate_cleanup_last_success_timestamp_seconds\{job="expired"\} \d+/)
    // Nothing is deleted twice: a second sweep finds nothing.
    const again = await cleanup(app, { dry_run: false, jobs: ['expired', 'provider_deletes'] })
    assert.deepEqual(again.jobs.expired?.providers, {})
    assert.equal(fakes.kimi.requests.delete, 3)
  })

  it('two app instances on a one-second schedule delete each of 200 expired files exactly once', async (t) => {
    if (!(await requirePostgres(t))) return
    const { app, fakes, sql, baseEnv } = await setup(t)
    const contents = Array.from({ length: 200 }, (_, i) => `file number ${i}`)
    for (let i = 0; i < contents.length; i += 20) {
      const batch = await Promise.all(contents.slice(i, i + 20).map((c) => upload(app, c)))
      assert.ok(batch.every((b) => b.statusCode === 201))
    }
    assert.equal(fakes.kimi.files.size, 200)
    await expire(sql)
    const scheduled = { ...baseEnv, CLEANUP_ENABLED: 'true', CLEANUP_CRON: '* * * * * *', CLEANUP_BATCH_SIZE: '25' }
    await Promise.all([build(t, scheduled), build(t, scheduled)])
    await until('all 200 deleted at the provider', () => fakes.kimi.files.size === 0)
    await until('every row marked provider_deleted', async () => {
      const [row] = await sql`select count(*)::int as n from provider_file_uploads where provider_deleted`
      return row?.n === 200
    })
    assert.equal(fakes.kimi.deletes.length, 200)
    assert.equal(new Set(fakes.kimi.deletes).size, 200, 'no file deleted twice')
    assert.equal(fakes.kimi.requests.delete, 200, 'no second delete call, not even a 404')
  })

  it('a sweep never touches pending or uploading rows, even while a slow upload is in flight', async (t) => {
    if (!(await requirePostgres(t))) return
    const { app, fakes, sql } = await setup(t, {
      STUCK_UPLOAD_MINUTES: '1',
      PROVIDER_TIMEOUT_MS: '15000',
      UPLOAD_TIMEOUT_MS: '20000',
      REQUEST_TIMEOUT_MS: '25000',
      SHUTDOWN_TIMEOUT_MS: '30000',
      ORPHAN_AGE_DAYS: '0',
      RETENTION_DAYS: '1',
    })
    fakes.kimi.latencyMs = 2000
    fakes.kimi.ops = ['upload']
    const slow = upload(app, 'slow upload', [['expires_in', '1']])
    await until('the upload row is in flight', async () => {
      const [row] = await sql`select count(*)::int as n from provider_file_uploads where status = 'uploading'`
      return row?.n === 1
    })
    // Make it look old and expired in every way a sweep could look at it.
    await sql`update provider_file_uploads set expires_at = now() - interval '1 day', last_used_at = now() - interval '2 days',
              created_at = now() - interval '2 days' where status = 'uploading'`
    const report = await cleanup(app, { dry_run: false, jobs: ['expired', 'orphaned', 'stuck', 'provider_deletes'] })
    for (const job of ['expired', 'orphaned', 'stuck', 'provider_deletes']) {
      assert.deepEqual(report.jobs[job]?.providers, {}, `${job} touched an in-flight row`)
    }
    const done = await slow
    assert.equal(done.statusCode, 201)
    assert.equal(done.body.status, 'completed')
    assert.equal(fakes.kimi.deletes.length, 0)
  })

  it('a crash between the provider upload and the row update leaves nothing once stuck and reconcile have run', async (t) => {
    if (!(await requirePostgres(t))) return
    const { app, fakes, sql } = await setup(t, {
      RECONCILE_DELETE_UNKNOWN: 'true',
      RECONCILE_GRACE_MINUTES: '0',
      ORPHAN_AGE_DAYS: '0',
    })
    // The crashed process: it claimed the row, the provider stored the file, and it died before
    // recording the provider id.
    const claim = await app.store.call<{ outcome: string; file: { id: string } }>('claim_upload', {
      p_tenant_id: 'alice',
      p_provider: 'kimi',
      p_purpose: 'file-extract',
      p_sha256: 'e'.repeat(64),
      p_bytes: 5,
      p_filename: 'crash.txt',
      p_mime_type: 'text/plain',
    })
    assert.equal(claim.outcome, 'claimed')
    const orphan = fakes.kimi.addFile({
      filename: 'crash.txt',
      bytes: 5,
      created_at: Math.floor(Date.now() / 1000) - 120,
    })
    // A file filegate knows about must survive reconcile.
    const known = await upload(app, 'known file')
    await sql`update provider_file_uploads set updated_at = now() - interval '2 hours' where id = ${claim.file.id}`

    const dry = await cleanup(app, { dry_run: true, jobs: ['stuck', 'reconcile'] })
    assert.deepEqual(dry.jobs.stuck?.providers.kimi?.candidate_ids, [claim.file.id])
    assert.deepEqual(dry.jobs.reconcile?.providers.kimi?.candidate_ids, [orphan.id])

    const report = await cleanup(app, { dry_run: false, jobs: ['stuck', 'reconcile', 'orphaned'] })
    assert.equal(report.jobs.stuck?.providers.kimi?.candidates, 1)
    assert.equal(report.jobs.reconcile?.providers.kimi?.deleted, 1)
    assert.ok(!fakes.kimi.files.has(orphan.id), 'the unknown provider file is deleted')
    assert.ok(fakes.kimi.files.has(String(known.body.provider_file_id)), 'a known file is kept')
    const [row] = await sql`select status, deletion_reason from provider_file_uploads where id = ${claim.file.id}`
    assert.deepEqual({ ...row }, { status: 'deleted', deletion_reason: 'orphaned' })
    const [stuck] =
      await sql`select count(*)::int as n from provider_file_uploads where status in ('pending', 'uploading')`
    assert.equal(stuck?.n, 0)
  })

  it('reconcile without RECONCILE_DELETE_UNKNOWN only reports, and tombstones rows whose provider file is gone', async (t) => {
    if (!(await requirePostgres(t))) return
    const { app, fakes } = await setup(t, { RECONCILE_GRACE_MINUTES: '0' })
    const up = await upload(app, 'will vanish at the provider')
    fakes.kimi.files.delete(String(up.body.provider_file_id))
    const stranger = fakes.kimi.addFile({
      filename: 'other.txt',
      bytes: 3,
      created_at: Math.floor(Date.now() / 1000) - 60,
    })
    const report = await cleanup(app, { dry_run: false, jobs: ['reconcile'] })
    assert.equal(report.jobs.reconcile?.providers.kimi?.deleted, 0)
    assert.ok(fakes.kimi.files.has(stranger.id), 'unknown files are only reported by default')
    const f = (await app.inject({ url: `/v1/files/${up.body.id}`, headers: alice })).json()
    assert.equal(f.status, 'deleted')
    assert.equal(f.deletion_reason, 'reconciled')
  })

  it('reconcile does not take a listing that left a file out as proof: the tombstone gets a provider delete', async (t) => {
    if (!(await requirePostgres(t))) return
    const { app, fakes, sql } = await setup(t, { RECONCILE_GRACE_MINUTES: '0' })
    const up = await upload(app, 'left out of one listing')
    const id = String(up.body.provider_file_id)
    await sql`update provider_file_uploads set created_at = now() - interval '1 minute',
                updated_at = now() - interval '1 minute' where id = ${String(up.body.id)}`
    // The listing leaves the file out (an eventually consistent listing), though the provider has it.
    fakes.kimi.onList = () => {
      const hidden = fakes.kimi.files.get(id)
      if (!hidden) return
      fakes.kimi.forget(id)
      setImmediate(() => fakes.kimi.files.set(id, hidden))
    }
    const report = await cleanup(app, { dry_run: false, jobs: ['reconcile', 'provider_deletes'] })
    assert.equal(report.jobs.reconcile?.providers.kimi?.candidates, 1)
    const f = (await app.inject({ url: `/v1/files/${up.body.id}`, headers: alice })).json()
    assert.equal(f.deletion_reason, 'reconciled')
    assert.equal(f.provider_deleted, true)
    assert.ok(fakes.kimi.deletes.includes(id), 'the copy the listing left out was deleted, not leaked')
    assert.equal(fakes.kimi.files.has(id), false)
  })

  it('reconcile leaves alone a row whose copy a heal replaced while the listing was under way', async (t) => {
    if (!(await requirePostgres(t))) return
    const { app, fakes, sql } = await setup(t, { RECONCILE_GRACE_MINUTES: '0' })
    const up = await upload(app, 'healed mid-listing')
    await sql`update provider_file_uploads set created_at = now() - interval '1 minute' where id = ${String(up.body.id)}`
    // While the listing is under way, the row takes a copy the listing cannot show (a heal's).
    fakes.kimi.onList = async () => {
      fakes.kimi.onList = undefined
      await sql`update provider_file_uploads set provider_file_id = 'file-healed-meanwhile', updated_at = now()
                 where id = ${String(up.body.id)}`
    }
    const report = await cleanup(app, { dry_run: false, jobs: ['reconcile'] })
    assert.equal(report.jobs.reconcile?.status, 'completed')
    const f = (await app.inject({ url: `/v1/files/${up.body.id}`, headers: alice })).json()
    assert.equal(f.status, 'completed', 'changed after the listing began: left for the next run')
  })

  it('a provider down during a sweep leaves tombstones with provider_deleted: false, and a later sweep finishes them', async (t) => {
    if (!(await requirePostgres(t))) return
    const { app, fakes, sql } = await setup(t, { CIRCUIT_RESET_MS: '200', RETRY_MAX_ATTEMPTS: '1' })
    for (let i = 0; i < 4; i++) assert.equal((await upload(app, `outage ${i}`)).statusCode, 201)
    await expire(sql)
    fakes.kimi.failNext(1000, 503, 'delete')
    const first = await cleanup(app, { dry_run: false, jobs: ['expired'] })
    assert.deepEqual(first.jobs.expired?.providers.kimi, { candidates: 4, deleted: 0, failed: 4 })
    const listed = await app.inject({ url: '/v1/files?status=deleted', headers: alice })
    assert.equal(listed.json().data.length, 4)
    assert.ok(listed.json().data.every((f: { provider_deleted: boolean }) => !f.provider_deleted))
    assert.equal(fakes.kimi.files.size, 4)

    fakes.kimi.reset()
    // Backoff would wait minutes: let that time pass.
    await sql`update provider_file_uploads set next_delete_at = now() - interval '1 second' where not provider_deleted`
    await new Promise((r) => setTimeout(r, 250)) // the circuit half-opens after CIRCUIT_RESET_MS
    const second = await cleanup(app, { dry_run: false, jobs: ['provider_deletes'] })
    assert.deepEqual(second.jobs.provider_deletes?.providers.kimi, { candidates: 4, deleted: 4, failed: 0 })
    const [row] =
      await sql`select count(*)::int as n from provider_file_uploads where provider_deleted and delete_attempts >= 2`
    assert.equal(row?.n, 4)
  })

  it('a dry run reports exactly the candidates that the following real run deletes', async (t) => {
    if (!(await requirePostgres(t))) return
    const { app, fakes, sql } = await setup(t)
    const ids: string[] = []
    for (let i = 0; i < 6; i++) ids.push(String((await upload(app, `dry ${i}`)).body.id))
    await sql`update provider_file_uploads set expires_at = now() - interval '1 minute' where id = any(${ids.slice(0, 4)})`
    const dry = await cleanup(app, { dry_run: true, jobs: ['expired'], limit: 3 })
    const dryIds = dry.jobs.expired?.providers.kimi?.candidate_ids ?? []
    assert.equal(dryIds.length, 3)
    const real = await cleanup(app, { dry_run: false, jobs: ['expired'], limit: 3 })
    assert.equal(real.jobs.expired?.providers.kimi?.deleted, 3)
    const rows = await sql`select id::text from provider_file_uploads where deletion_reason = 'expired'`
    assert.deepEqual(rows.map((r) => r.id).sort(), [...dryIds].sort())
    assert.equal(fakes.kimi.deletes.length, 3)
  })
})
