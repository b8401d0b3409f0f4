/**
 * The database cut between the provider's answer and the settle that records it (Postgres behind a
 * proxy the test cuts): a provider copy is never left behind with no row pointing at it. A cut
 * shorter than the settle's retry window is ridden out (one copy, the upload answered); a longer
 * one that refuses connections has the copy deleted before the 503; a silent one (a settle may be
 * under way and may yet commit) has it journaled, and the journal's sweep records it once the
 * database is back: tombstoned and deleted. Uploads and heals (ensure); each claim is let go, no
 * row is left `uploading`, no provider delete owed, and the retried upload makes the one copy.
 */
import assert from 'node:assert/strict'
import { readdir } from 'node:fs/promises'
import { describe, it, type TestContext } from 'node:test'
import postgres from 'postgres'
import type { FileRow } from '../../src/domain/file-record.js'
import { unsettledJournalDir } from '../../src/domain/files.js'
import { type Fakes, postgresSuiteSkip, type TestDatabase } from '../helper.js'
import { type CutMode, type PostgresProxy, postgresProxy } from '../postgres-proxy.js'
import { content, ensure, keptApp, uploadKept } from './originals-kept-support.js'
import {
  as,
  assertProblem,
  eventually,
  filePart,
  freshTenant,
  postFile,
  registryValue,
  shortTimeouts,
  uploadApp,
  useFileDatabase,
} from './uploads-support.js'

const skip = await postgresSuiteSkip()
const database = useFileDatabase()
const db = () => database() as TestDatabase

/** A lease short enough that the journal's sweep (every third of it) runs often. */
const leaseEnv = { CLAIM_LEASE_SECONDS: '2' }

/** The app under test, on the test database through a proxy the test cuts; its own SQL session beside it. */
async function cutApp(t: TestContext, env: Record<string, string> = {}) {
  const proxy = await postgresProxy(t)
  const ctx = await uploadApp(t, db(), { ...shortTimeouts, ...leaseEnv, DATABASE_URL: proxy.urlFor(db().url), ...env })
  const sql = postgres(db().url, { max: 1, onnotice: () => {} })
  t.after(() => sql.end({ timeout: 1 }))
  return { ...ctx, proxy, sql }
}

/** The tenant's rows as the database holds them (read beside the proxy: the cut does not stop it). */
async function rowsIn(sql: postgres.Sql, tenant: string) {
  return sql<Array<Pick<FileRow, 'status' | 'provider_file_id' | 'deletion_reason'> & { provider_deleted: boolean }>>`
    select status, provider_file_id, deletion_reason, provider_deleted from provider_file_uploads
     where tenant_id = ${tenant} order by created_at`
}

const journal = (spoolDir: string) => readdir(unsettledJournalDir(spoolDir)).catch(() => [] as string[])

const orphans = (app: Parameters<typeof registryValue>[0], outcome: string) =>
  registryValue(app, 'filegate_provider_orphans_total', { provider: 'kimi', outcome })

/**
 * Starts `send`, cuts the database once the provider has the upload (it answers a second later, so
 * the settle meets the cut however slow the machine), and returns the answer.
 */
async function cutWhileProviderAnswers<T>(
  ctx: { fakes: Fakes; proxy: PostgresProxy },
  mode: CutMode,
  send: () => Promise<T>,
): Promise<T> {
  const { kimi } = ctx.fakes
  const before = kimi.log.filter((r) => r.op === 'upload').length
  kimi.latencyMs = 1_000
  kimi.ops = ['upload']
  const answer = send()
  await eventually('the provider receives the upload', () => kimi.log.filter((r) => r.op === 'upload').length > before)
  await ctx.proxy.cut(mode)
  try {
    return await answer
  } finally {
    kimi.latencyMs = 0
  }
}

/** Nothing is owed or stuck: no row `uploading`, no tombstone owing its provider delete, the journal empty. */
async function assertSettled(ctx: Awaited<ReturnType<typeof cutApp>>, tenant: string) {
  await eventually('no row left uploading and no provider delete owed', async () =>
    (await rowsIn(ctx.sql, tenant)).every(
      (r) => r.status !== 'uploading' && (r.status !== 'deleted' || r.provider_deleted),
    ),
  )
  await eventually('the journal is empty', async () => (await journal(ctx.spoolDir)).length === 0)
  assert.equal(await registryValue(ctx.app, 'filegate_file_active_uploads'), 0, 'no upload is counted active')
}

describe('the database cut between the provider answer and the settle', { skip }, () => {
  it('a cut shorter than the retry window: the settle is tried again and records the one copy', async (t) => {
    // A retry window (REQUEST_TIMEOUT_MS - UPLOAD_TIMEOUT_MS) of 16 s: longer than the driver's own
    // reconnect backoff after a second of refused connections, however loaded the machine.
    const ctx = await cutApp(t, { REQUEST_TIMEOUT_MS: '20000', SHUTDOWN_TIMEOUT_MS: '25000' })
    const tenant = freshTenant('cut-short')
    const res = await cutWhileProviderAnswers(ctx, 'refuse', async () => {
      const answer = postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('a short cut')])
      setTimeout(() => void ctx.proxy.restore(), 1_000)
      return answer
    })
    assert.equal(res.statusCode, 201, res.body)
    const file = res.json() as FileRow
    assert.equal(file.status, 'completed')
    assert.deepEqual([...ctx.fakes.kimi.files.keys()], [file.provider_file_id])
    assert.deepEqual(ctx.fakes.kimi.deletes, [])
    assert.equal(await orphans(ctx.app, 'deleted'), 0)
    assert.equal(await orphans(ctx.app, 'journaled'), 0)
    await assertSettled(ctx, tenant)
  })

  it('a cut that refuses connections: the copy is deleted or journaled before the 503, and gone once the database is back', async (t) => {
    const ctx = await cutApp(t)
    const tenant = freshTenant('cut-refuse')
    const bytes = 'the provider had it when the database went'
    const res = await cutWhileProviderAnswers(ctx, 'refuse', () =>
      postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(bytes)]),
    )
    assertProblem(res, 503, 'DATABASE_UNAVAILABLE')
    const [made] = ctx.fakes.kimi.uploads
    assert.equal(ctx.fakes.kimi.uploads.length, 1)
    // Deleted when every settle was refused outright; journaled when the last one was still waiting
    // for the driver to connect again (it cannot tell whether that one reached the database).
    const deleted = await orphans(ctx.app, 'deleted')
    assert.equal(deleted + (await orphans(ctx.app, 'journaled')), 1, 'the copy was deleted or journaled, once')
    assert.equal((await journal(ctx.spoolDir)).length, 1, 'the journal holds it (deleted: to let its claim go)')
    assert.equal(ctx.fakes.kimi.files.size, 1 - deleted)
    assert.deepEqual(
      (await rowsIn(ctx.sql, tenant)).map((r) => r.status),
      ['uploading'],
      'the claim is as the cut left it',
    )

    await ctx.proxy.restore()
    await eventually('the copy is gone from the provider', () => ctx.fakes.kimi.files.size === 0)
    await assertSettled(ctx, tenant)
    assert.deepEqual(ctx.fakes.kimi.deletes, [made?.id], 'deleted once')
    assert.equal(await registryValue(ctx.app, 'filegate_file_deletions_total', { reason: 'orphaned' }), 1)
    assert.deepEqual(
      (await rowsIn(ctx.sql, tenant)).map((r) => r.status),
      [deleted ? 'failed' : 'deleted'],
      'the claim was let go (failed), or became the tombstone of its copy',
    )
    // The client's retry makes the one copy.
    const again = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(bytes)])
    assert.equal(again.statusCode, 201, again.body)
    assert.deepEqual([...ctx.fakes.kimi.files.keys()], [(again.json() as FileRow).provider_file_id])
    await assertSettled(ctx, tenant)
  })

  it('a silent cut (a settle may yet commit): the copy is journaled, then recorded and deleted once the database is back', async (t) => {
    const ctx = await cutApp(t)
    const tenant = freshTenant('cut-silent')
    const bytes = 'nothing answered the settle'
    const res = await cutWhileProviderAnswers(ctx, 'silent', () =>
      postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(bytes)]),
    )
    assertProblem(res, 503, 'DATABASE_UNAVAILABLE')
    const [made] = ctx.fakes.kimi.uploads
    assert.equal(ctx.fakes.kimi.files.size, 1, 'not deleted: a settle under way may have recorded it')
    assert.equal((await journal(ctx.spoolDir)).length, 1, 'the copy is in the journal')
    assert.equal(await orphans(ctx.app, 'journaled'), 1)

    await ctx.proxy.restore()
    await eventually('the journal sweep deletes the copy', () => ctx.fakes.kimi.files.size === 0)
    await assertSettled(ctx, tenant)
    assert.deepEqual(ctx.fakes.kimi.deletes, [made?.id])
    assert.equal(await orphans(ctx.app, 'recorded'), 1)
    assert.deepEqual(
      (await rowsIn(ctx.sql, tenant)).map((r) => [r.status, r.deletion_reason, r.provider_file_id]),
      [['deleted', 'orphaned', made?.id]],
      'the claim became the tombstone of its copy',
    )
    const again = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(bytes)])
    assert.equal(again.statusCode, 201, again.body)
    assert.equal(ctx.fakes.kimi.files.size, 1)
    await assertSettled(ctx, tenant)
  })
})

describe('a heal (ensure) whose settle meets the cut', { skip }, () => {
  it('the remade copy is journaled, recorded and deleted; the heal claim is let go and the next ensure heals', async (t) => {
    const proxy = await postgresProxy(t)
    const kept = await keptApp(t, db(), { env: { ...leaseEnv, DATABASE_URL: proxy.urlFor(db().url) } })
    const ctx = { ...kept, proxy }
    const tenant = freshTenant('cut-heal')
    const file = await uploadKept(kept, tenant, content('heal across a cut'))
    assert.ok(kept.fakes.kimi.forget(file.provider_file_id as string))

    const res = await cutWhileProviderAnswers(ctx, 'silent', () => ensure(kept.app, as(tenant), file.id))
    assertProblem(res, 503, 'DATABASE_UNAVAILABLE')
    const remade = kept.fakes.kimi.uploads.at(-1)?.id as string
    assert.ok(kept.fakes.kimi.files.has(remade))
    assert.equal((await journal(kept.spoolDir)).length, 1)

    await proxy.restore()
    await eventually('the journal sweep deletes the remade copy', () => !kept.fakes.kimi.files.has(remade))
    await eventually('the journal is empty', async () => (await journal(kept.spoolDir)).length === 0)
    assert.equal(await orphans(kept.app, 'recorded'), 1)
    const [row] = await kept.sql<Array<{ provider_file_id: string; heal_token: string | null }>>`
      select provider_file_id, heal_token from provider_file_uploads where id = ${file.id}`
    assert.equal(row?.provider_file_id, file.provider_file_id, 'the row still names the copy it had')
    assert.equal(row?.heal_token, null, 'the heal claim was let go')

    const healed = await ensure(kept.app, as(tenant), file.id)
    assert.equal(healed.statusCode, 200, healed.body)
    const now = healed.json() as FileRow
    assert.notEqual(now.provider_file_id, remade)
    assert.deepEqual([...kept.fakes.kimi.files.keys()], [now.provider_file_id])
    const owed = await kept.sql`
      select 1 from provider_file_uploads where tenant_id = ${tenant} and deleted_at is not null and not provider_deleted`
    assert.equal(owed.length, 0, 'no provider delete is owed')
  })
})
