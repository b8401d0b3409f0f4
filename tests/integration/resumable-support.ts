/**
 * Shared by the resumable-*.test.ts suites: the running service on a real listener, the real
 * tus-js-client against it, raw tus requests for what a client library hides (a connection cut
 * mid-PATCH, two PATCHes at one offset), and what is left behind (rows, staged segments).
 */
import { createHash } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, type TestContext } from 'node:test'
import type { FastifyInstance } from 'fastify'
import postgres from 'postgres'
import * as tus from 'tus-js-client'
import {
  build,
  createTestDatabase,
  type Fakes,
  fileDatabase,
  startFakes,
  type TestDatabase,
  tempDir,
} from '../helper.js'

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')
export const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex')

/** Distinct bytes of `size` (a seed keeps contents apart between tests). */
export function content(size: number, seed: string): Buffer {
  const out = Buffer.alloc(size)
  let block = createHash('sha256').update(seed).digest()
  for (let i = 0; i < size; i += block.length) {
    block.copy(out, i)
    block = createHash('sha256').update(block).digest()
  }
  return out
}

/** One database for a test file (made before its tests, dropped after them); none while `skip`. */
export function suiteDatabase(skip: false | string): () => TestDatabase {
  let db: TestDatabase | undefined
  before(async () => {
    if (!skip) db = await createTestDatabase()
  })
  after(async () => {
    await db?.drop()
  })
  return () => db as TestDatabase
}

export interface Served {
  app: FastifyInstance
  fakes: Fakes
  db: TestDatabase
  base: string
  tmpDir: string
  port: number
}

/** The service on a loopback listener over its own database, with fake Kimi and GLM. */
export async function serve(t: TestContext, env: Record<string, string> = {}, db?: TestDatabase): Promise<Served> {
  const database = db ?? (await fileDatabase(t))
  const fakes = await startFakes(t)
  const tmpDir = await tempDir(t, 'fg-resumable-')
  const app = await build(t, { DATABASE_URL: database.url, UPLOAD_TMP_DIR: tmpDir, ...fakes.env, ...env })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  return { app, fakes, db: database, base: `http://127.0.0.1:${port}`, tmpDir, port }
}

export interface TusResult {
  url: string
  fileId: string | undefined
}

/** One upload with the real tus-js-client: `chunkSize` bytes a PATCH (creation without a body). */
export function tusUpload(
  base: string,
  key: string,
  bytes: Buffer,
  metadata: Record<string, string>,
  options: { chunkSize?: number; uploadDataDuringCreation?: boolean; retryDelays?: number[] } = {},
): Promise<TusResult> {
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(bytes, {
      endpoint: `${base}/v1/uploads`,
      headers: { authorization: `Bearer ${key}` },
      metadata,
      chunkSize: options.chunkSize ?? 64 * 1024,
      retryDelays: options.retryDelays ?? [50, 100, 200],
      uploadDataDuringCreation: options.uploadDataDuringCreation ?? false,
      storeFingerprintForResuming: false,
      onSuccess: ({ lastResponse }) =>
        resolve({ url: upload.url as string, fileId: lastResponse.getHeader('filegate-file-id') }),
      onError: reject,
    })
    upload.start()
  })
}

/** The staged segments left under UPLOAD_TMP_DIR (directory staging). */
export async function stagedSegments(tmpDir: string): Promise<string[]> {
  const root = join(tmpDir, 'resumable')
  const uploads = await readdir(root).catch(() => [] as string[])
  const all: string[] = []
  for (const id of uploads) {
    for (const segment of await readdir(join(root, id)).catch(() => [] as string[])) all.push(`${id}/${segment}`)
  }
  return [...all, ...uploads.filter((id) => !all.some((s) => s.startsWith(id)))]
}

/** Rows of resumable uploads and segments in the database. */
export async function resumableRows(db: TestDatabase): Promise<{ uploads: number; segments: number }> {
  const sql = postgres(db.url, { max: 1, onnotice: () => {} })
  try {
    const [u] = await sql`select count(*)::int as n from resumable_uploads`
    const [s] = await sql`select count(*)::int as n from resumable_segments`
    return { uploads: u?.n as number, segments: s?.n as number }
  } finally {
    await sql.end()
  }
}

/** A counter's value from /metrics (0 when absent). */
export async function metricValue(app: FastifyInstance, name: string, labels: Record<string, string>) {
  const text = (await app.inject('/metrics')).body
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`)
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && wanted.every((w) => l.includes(w)))
  return line ? Number(line.split(' ').at(-1)) : 0
}

export const tusHeaders = (key: string, extra: Record<string, string> = {}) => ({
  authorization: `Bearer ${key}`,
  'tus-resumable': '1.0.0',
  ...extra,
})

export const tusMetadata = (fields: Record<string, string>) =>
  Object.entries(fields)
    .map(([k, v]) => `${k} ${Buffer.from(v).toString('base64')}`)
    .join(',')
