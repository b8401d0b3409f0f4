/**
 * Shared by the originals-copies, originals-ensure and originals-job suites: a real app with
 * originals kept in a local directory (file:///) or a real S3-protocol server (s3rver) (the
 * backends of originals-support.ts), on the file's Postgres database, with fresh fake providers;
 * files uploaded through POST /v1/files, which keeps their originals; and a way to damage an
 * original behind filegate's back.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type { TestContext } from 'node:test'
import type { FastifyInstance } from 'fastify'
import postgres from 'postgres'
import type { FileRow } from '../../src/domain/file-record.js'
import type { OriginalsStore } from '../../src/originals/index.js'
import { build, type Fakes, startFakes, type TestDatabase, tempDir } from '../helper.js'
import { type Backend, backends } from './originals-support.js'
import { type Part, postFile, sha256, shortTimeouts, useFileDatabase } from './uploads-support.js'

export type StoreKind = 'file' | 's3'

export interface KeptContext {
  app: FastifyInstance
  fakes: Fakes
  kind: StoreKind
  /** UPLOAD_TMP_DIR of this app */
  spoolDir: string
  /** The env that points an app at the same database, fakes and originals store (a second replica). */
  env: Record<string, string>
  /** Direct SQL on the test database, for what the API does not show (history, file_originals). */
  sql: postgres.Sql
  /** Replaces the stored bytes of (tenant, sha256) without filegate knowing. */
  corrupt(tenant: string, sha: string, bytes: Buffer): Promise<void>
}

/** The test file's database (useFileDatabase), for tests that checked requirePostgres first. */
export function useKeptDatabase(): () => TestDatabase {
  const database = useFileDatabase()
  return () => {
    const db = database()
    if (!db) throw new Error('no test database')
    return db
  }
}

/** Content no other test uploads. */
export const content = (label: string) => Buffer.from(`${label} ${randomBytes(8).toString('hex')}\n`)

export async function keptApp(
  t: TestContext,
  db: TestDatabase,
  options: {
    kind?: StoreKind
    env?: Record<string, string>
    /** originals off: no ORIGINALS_URL */
    off?: boolean
    /** An already-open store to use instead of ORIGINALS_URL's (the app does not close it). */
    originals?: OriginalsStore
  } = {},
): Promise<KeptContext> {
  const kind = options.kind ?? 'file'
  const fakes = await startFakes(t)
  const spoolDir = await tempDir(t, 'filegate-spool-')
  const backend = backends.find((b) => (kind === 's3' ? b.name.startsWith('s3') : b.name === 'local directory'))
  const originals = options.off
    ? { env: {}, corrupt: async () => assert.fail('originals are off') }
    : await (backend as Backend).open(t)
  const env = { DATABASE_URL: db.url, ...fakes.env, ...shortTimeouts, ...originals.env, ...options.env }
  const app = await build(
    t,
    { ...env, UPLOAD_TMP_DIR: spoolDir },
    options.originals ? { originals: options.originals } : {},
  )
  const sql = postgres(db.url, { max: 2, onnotice: () => {} })
  t.after(() => sql.end({ timeout: 1 }))
  return { app, fakes, kind, spoolDir, env, sql, corrupt: originals.corrupt }
}

/** POST /v1/files (to kimi unless `parts` say otherwise), which keeps the original: the row. */
export async function uploadKept(
  ctx: KeptContext,
  tenant: string,
  content: Buffer,
  parts: Part[] = [['provider', 'kimi']],
  filename = 'doc.txt',
): Promise<FileRow> {
  const res = await postFile(ctx.app, tenant, [...parts, ['file', { filename, content, type: 'text/plain' }]])
  assert.ok(res.statusCode === 201 || res.statusCode === 200, res.body)
  const file = res.json() as FileRow
  assert.equal(file.sha256, sha256(content))
  assert.equal(file.original_stored, true, 'the upload kept its original')
  return file
}

/** The row's provider id history, oldest first. */
export async function historyOf(
  ctx: KeptContext,
  id: string,
): Promise<Array<{ provider_file_id: string; reason: string }>> {
  const [row] = await ctx.sql<Array<{ h: Array<{ provider_file_id: string; reason: string }> }>>`
    select provider_file_id_history as h from provider_file_uploads where id = ${id}`
  return row?.h ?? []
}

/** The file_originals row of (tenant, sha256), or undefined. */
export async function originalRow(ctx: { sql: postgres.Sql }, tenant: string, sha: string) {
  const [row] = await ctx.sql<Array<{ stored_at: Date | null; deleting_until: Date | null; bytes: string }>>`
    select stored_at, deleting_until, bytes from file_originals where tenant_id = ${tenant} and sha256 = ${sha}`
  return row
}

export const ensure = (app: FastifyInstance, headers: Record<string, string>, id: string) =>
  app.inject({ method: 'POST', url: `/v1/files/${id}/ensure`, headers })

export const copy = (
  app: FastifyInstance,
  headers: Record<string, string>,
  id: string,
  body: Record<string, unknown>,
) => app.inject({ method: 'POST', url: `/v1/files/${id}/copies`, headers, payload: body })
