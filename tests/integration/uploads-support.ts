/**
 * Shared by the uploads*.test.ts suites: one real app per test on the file's Postgres database,
 * fresh fake providers and a spool directory of its own, plus the probes the tests assert on
 * (what is left in the spool, the rows of a tenant, what the fakes received, a metric's value
 * as /metrics exposes it) and a raw HTTP client for the cases app.inject cannot show.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import type { FileRow } from '../../src/domain/file-record.js'
import type { StorePort } from '../../src/store/port.js'
import {
  build,
  createTestDatabase,
  type Fakes,
  multipart,
  postgresAvailable,
  requirePostgres,
  startFakes,
  type TestDatabase,
  tempDir,
  testKeys,
} from '../helper.js'

export interface UploadContext {
  app: FastifyInstance
  fakes: Fakes
  /** UPLOAD_TMP_DIR of this app */
  spoolDir: string
}

/** Timeouts that nest (provider attempt < upload < request < shutdown) and keep a hung provider short. */
export const shortTimeouts = {
  PROVIDER_TIMEOUT_MS: '1500',
  UPLOAD_TIMEOUT_MS: '4000',
  REQUEST_TIMEOUT_MS: '8000',
  SHUTDOWN_TIMEOUT_MS: '10000',
}

export async function uploadApp(
  t: { after(fn: () => Promise<void>): void },
  db: TestDatabase,
  env: Record<string, string> = {},
  fakes?: Fakes,
): Promise<UploadContext> {
  const f = fakes ?? (await startFakes(t))
  const spoolDir = await tempDir(t, 'filegate-spool-')
  const app = await build(t, { DATABASE_URL: db.url, ...f.env, UPLOAD_TMP_DIR: spoolDir, ...env })
  return { app, fakes: f, spoolDir }
}

/**
 * One database for the test file, created before its tests and dropped after them. Registered at
 * module level: an `after` registered from inside a `before` hook would run as that hook ends.
 */
export function useFileDatabase(): () => TestDatabase | undefined {
  let db: TestDatabase | undefined
  before(async () => {
    if (await postgresAvailable()) db = await createTestDatabase()
  })
  after(() => db?.drop())
  return () => db
}

/** The context of one test, or undefined when Postgres is missing (skipped; a failure in CI). */
export async function setupUploads(
  t: TestContext,
  database: () => TestDatabase | undefined,
  env: Record<string, string> = {},
  fakes?: Fakes,
): Promise<UploadContext | undefined> {
  if (!(await requirePostgres(t))) return undefined
  const db = database()
  if (!db) return undefined
  return uploadApp(t, db, env, fakes)
}

let tenantSeq = 0
/** A tenant of its own for one test, acted for through the admin key (X-Tenant-Id). */
export const freshTenant = (label = 't') => `${label}-${process.pid}-${Date.now().toString(36)}-${tenantSeq++}`

export const as = (tenant: string) => ({ authorization: `Bearer ${testKeys.admin}`, 'x-tenant-id': tenant })

export const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex')

export type Part = Parameters<typeof multipart>[0][number]

export function postFile(app: FastifyInstance, tenant: string, parts: Part[], headers: Record<string, string> = {}) {
  const body = multipart(parts)
  return app.inject({
    method: 'POST',
    url: '/v1/files',
    headers: { ...as(tenant), ...body.headers, ...headers },
    payload: body.payload,
  })
}

export const filePart = (content: Buffer | string, filename = 'doc.txt', type = 'text/plain'): Part => [
  'file',
  { filename, content, type },
]

/** Every row of the tenant, tombstones included, straight from the database. */
export async function rowsOf(app: FastifyInstance, tenant: string): Promise<FileRow[]> {
  const page = await app.store.call<{ data: FileRow[] }>('list_files', {
    p_tenant_id: tenant,
    p_include_deleted: true,
    p_limit: 1000,
  })
  return page.data
}

export const spoolEntries = (dir: string) => readdir(dir)

/**
 * A metric as GET /metrics shows it: the sum of the series of `name` whose labels include
 * `labels` (0 when there is none).
 */
export async function metric(app: FastifyInstance, name: string, labels: Record<string, string> = {}): Promise<number> {
  const res = await app.inject({ method: 'GET', url: '/metrics' })
  assert.equal(res.statusCode, 200)
  return metricIn(res.body, name, labels)
}

/**
 * A metric's value as the registry holds it now (summed over the series whose labels match), without
 * rendering the whole exposition: for a check made after every one of many requests.
 */
export async function registryValue(
  app: FastifyInstance,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const found = app.metrics.registry.getSingleMetric(name)
  assert.ok(found, `metric ${name} is registered`)
  const { values } = await found.get()
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((sum, v) => sum + v.value, 0)
}

export function metricIn(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line)
    if (!m || m[1] !== name) continue
    const seen: Record<string, string> = {}
    for (const pair of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      seen[pair[1] as string] = pair[2] as string
    }
    if (Object.entries(labels).every(([k, v]) => seen[k] === v)) total += Number(m[3])
  }
  return total
}

/** Polls `probe` until it holds; fails after `timeoutMs` with `what`. */
export async function eventually(what: string, probe: () => Promise<boolean> | boolean, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await probe()) return
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`)
    await sleep(25)
  }
}

/** The refusal left nothing anywhere: no spool file, no row, no provider copy, no active upload. */
export async function assertNothingLeft(ctx: UploadContext, tenant: string) {
  assert.deepEqual(await spoolEntries(ctx.spoolDir), [], 'no temp file is left in UPLOAD_TMP_DIR')
  assert.deepEqual(await rowsOf(ctx.app, tenant), [], 'no row was written')
  assert.equal(ctx.fakes.kimi.uploads.length + ctx.fakes.glm.uploads.length, 0, 'no provider upload')
  assert.equal(ctx.fakes.kimi.files.size + ctx.fakes.glm.files.size, 0, 'no provider file')
  assert.equal(await metric(ctx.app, 'filegate_file_active_uploads'), 0, 'no upload is counted active')
}

export function assertProblem(
  res: { statusCode: number; headers: Record<string, unknown>; json(): unknown },
  status: number,
  code: string,
): Record<string, unknown> {
  const body = res.json() as Record<string, unknown>
  assert.equal(res.statusCode, status, `expected ${status} ${code}, got ${res.statusCode} ${JSON.stringify(body)}`)
  assert.match(String(res.headers['content-type']), /^application\/problem\+json/)
  assert.equal(body.code, code)
  assert.equal(body.status, status)
  assert.equal(typeof body.type, 'string')
  assert.equal(typeof body.title, 'string')
  assert.equal(typeof body.instance, 'string')
  return body
}

/** Listens on an ephemeral loopback port; returns the base URL. */
export async function listen(app: FastifyInstance): Promise<{ host: string; port: number }> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  return { host: '127.0.0.1', port }
}

export interface RawResponse {
  status: number
  headers: IncomingHttpHeaders
  body: string
}

/** Reads a node:http response to the end. */
export function readResponse(res: import('node:http').IncomingMessage): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    res.on('data', (c: Buffer) => chunks.push(c))
    res.on('end', () =>
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
    )
    res.on('error', reject)
  })
}

/** A multipart body split into its head (parts before the file content) and its tail. */
export function multipartFrame(
  fields: Array<[string, string]>,
  file: { filename: string; type?: string },
  after: Array<[string, string]> = [],
) {
  const boundary = `----filegate-raw${Math.random().toString(16).slice(2)}`
  let head = ''
  for (const [name, value] of fields) {
    head += `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`
  }
  head +=
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${file.filename}"\r\n` +
    `Content-Type: ${file.type ?? 'application/octet-stream'}\r\n\r\n`
  let tail = '\r\n'
  for (const [name, value] of after) {
    tail += `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`
  }
  tail += `--${boundary}--\r\n`
  return {
    head: Buffer.from(head),
    tail: Buffer.from(tail),
    contentType: `multipart/form-data; boundary=${boundary}`,
  }
}

export { httpRequest }

/**
 * Routes `app.store.call` through `through` (which may pass on to the real `call`) until the test
 * ends; returns the restore, for a test that needs the real store back before it checks the rows.
 */
export function routeStoreCalls(
  t: TestContext,
  app: FastifyInstance,
  through: (call: StorePort['call'], fn: string, args?: Record<string, unknown>) => Promise<unknown>,
): () => void {
  const store = app.store
  const call = store.call.bind(store)
  store.call = ((fn: string, args?: Record<string, unknown>) => through(call, fn, args)) as StorePort['call']
  const restore = () => {
    store.call = call
  }
  t.after(restore)
  return restore
}

/** Calls `fn` `n` times at once and waits for all of them. */
export const concurrently = <T>(n: number, fn: (i: number) => Promise<T>) =>
  Promise.all(Array.from({ length: n }, (_, i) => fn(i)))
