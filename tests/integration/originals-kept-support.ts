/**
 * Shared by the originals-copies, originals-ensure and originals-job suites: a real app with
 * originals kept in a local directory (file:///) or a real S3-protocol server (s3rver), on the
 * file's Postgres database, with fresh fake providers; plus ways to give a file its original and to
 * damage one behind filegate's back.
 *
 * `uploadKept` uploads through POST /v1/files; when the upload path does not keep the original
 * itself, it keeps it the way that path does (stage and commit into the store, reference_original,
 * mark_original_stored) and marks the row original_stored, so these suites test copies, heals and
 * the originals job whatever writes the originals.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pathToFileURL } from 'node:url'
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import type { FastifyInstance } from 'fastify'
import postgres from 'postgres'
import type { FileRow } from '../../src/domain/file-record.js'
import type { OriginalsStore } from '../../src/originals/index.js'
import { markOriginalStored, referenceOriginal } from '../../src/store/queries.js'
import { startS3Server } from '../fakes/s3-server.js'
import { build, type Fakes, startFakes, type TestDatabase, tempDir } from '../helper.js'
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

type Test = { after(fn: () => Promise<void>): void }

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

/** The env of an originals store of `kind`, started (s3rver) or made (a directory) for this test. */
export async function originalsEnv(
  t: Test,
  kind: StoreKind,
): Promise<{ env: Record<string, string>; corrupt: KeptContext['corrupt'] }> {
  if (kind === 'file') {
    const root = await tempDir(t, 'fg-originals-')
    return {
      env: { ORIGINALS_URL: pathToFileURL(root).href },
      corrupt: (tenant, sha, bytes) => writeFile(join(root, tenant, sha), bytes),
    }
  }
  const s3 = await startS3Server(t)
  const raw = new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  })
  t.after(async () => raw.destroy())
  return {
    env: {
      ORIGINALS_URL: `s3://${s3.bucket}/originals`,
      S3_ENDPOINT: s3.endpoint,
      S3_REGION: 'us-east-1',
      S3_ACCESS_KEY_ID: 'S3RVER',
      S3_SECRET_ACCESS_KEY: 'S3RVER',
      S3_FORCE_PATH_STYLE: 'true',
    },
    corrupt: async (tenant, sha, bytes) => {
      await raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `originals/${tenant}/${sha}`, Body: bytes }))
    },
  }
}

export async function keptApp(
  t: Test,
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
  const originals = options.off
    ? { env: {}, corrupt: async () => assert.fail('originals are off') }
    : await originalsEnv(t, kind)
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

/** Gives the row its original, as the upload path does, unless the upload already kept it. */
export async function keepOriginalOf(ctx: KeptContext, file: FileRow, content: Buffer): Promise<void> {
  if (file.original_stored) return
  const store = ctx.app.originals
  assert.ok(store, 'originals are kept')
  const ref = { tenantId: file.tenant_id, sha256: file.sha256 }
  assert.equal((await referenceOriginal(ctx.app.store, ref, content.length)).outcome, 'referenced')
  const staged = await store.stage(file.tenant_id, Readable.from([content]))
  await staged.commit(file.sha256)
  assert.equal(await markOriginalStored(ctx.app.store, ref), true)
  await ctx.sql`update provider_file_uploads set original_stored = true where id = ${file.id}`
}

/** POST /v1/files (to kimi unless `parts` say otherwise), then the original kept: the row (original_stored: true). */
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
  await keepOriginalOf(ctx, file, content)
  return { ...file, original_stored: true }
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
