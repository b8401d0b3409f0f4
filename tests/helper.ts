/**
 * Test helpers: a throwaway Postgres database per test file (created here, dropped after),
 * a config from a plain env object, and build(t) that returns the real app, closed after the test.
 * With CI=true the Postgres-backed suites are mandatory; elsewhere they skip with a notice.
 */
import { randomBytes } from 'node:crypto'
import { cp, mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import type { FastifyInstance } from 'fastify'
import postgres from 'postgres'
import { type AppOverrides, buildApp } from '../src/app.js'
import { type Config, loadConfig } from '../src/config.js'
import { createPgliteStore } from '../src/store/pglite.js'
import type { StorePort } from '../src/store/port.js'
import { type FakeProvider, startFakeProvider } from './fakes/provider-server.js'

/** A TCP port free on loopback right now (for a child process that cannot report its own). */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

export const adminUrl = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
export const isCI = process.env.CI === 'true'

let available: Promise<boolean> | undefined
export function postgresAvailable(): Promise<boolean> {
  available ??= (async () => {
    const sql = postgres(adminUrl, { max: 1, connect_timeout: 3, onnotice: () => {} })
    try {
      await sql`select 1`
      return true
    } catch {
      return false
    } finally {
      await sql.end({ timeout: 1 })
    }
  })()
  return available
}

/** Call at the top of a Postgres-backed test: skips (visibly) without Postgres, fails in CI. */
export async function requirePostgres(t: TestContext): Promise<boolean> {
  if (await postgresAvailable()) return true
  if (isCI) throw new Error(`CI=true but Postgres is not reachable at ${adminUrl}`)
  t.diagnostic(`NOTICE: Postgres not reachable at ${adminUrl}; skipping`)
  t.skip('Postgres not reachable')
  return false
}

/**
 * For a file of Postgres-backed suites: `false` (run them) or the reason to skip them, noted once;
 * with CI=true an unreachable Postgres is an error instead.
 */
export async function postgresSuiteSkip(): Promise<false | string> {
  if (await postgresAvailable()) return false
  if (isCI) throw new Error(`CI=true but Postgres is not reachable at ${adminUrl}`)
  console.log(`# NOTICE: Postgres not reachable at ${adminUrl}; the Postgres-backed suites are skipped`)
  return 'Postgres not reachable'
}

export interface TestDatabase {
  name: string
  url: string
  drop(): Promise<void>
}

export async function createTestDatabase(prefix = 'filegate_test'): Promise<TestDatabase> {
  const name = `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} })
  await admin.unsafe(`create database ${name}`)
  await admin.end()
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return {
    name,
    url: url.toString(),
    async drop() {
      const sql = postgres(adminUrl, { max: 1, onnotice: () => {} })
      await sql.unsafe(`drop database if exists ${name} with (force)`)
      await sql.end()
    },
  }
}

/** A database for the whole test file, dropped when the file's tests end. */
export async function fileDatabase(t: { after(fn: () => Promise<void>): void }): Promise<TestDatabase> {
  const db = await createTestDatabase()
  t.after(() => db.drop())
  return db
}

export async function tempDir(t: { after(fn: () => Promise<void>): void }, prefix = 'filegate-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/**
 * A PGlite data directory for one test, removed after it: a copy of the run's template when there
 * is one (an initialised cluster with the schema applied, made once per run by
 * scripts/run-tests.ts: creating a cluster costs seconds of CPU each time), else empty, and PGlite
 * creates the cluster itself. A test about a first start on a fresh DATA_DIR uses tempDir instead.
 */
export async function pgliteDataDir(t: { after(fn: () => Promise<void>): void }, prefix = 'filegate-pglite-') {
  const dir = await tempDir(t, prefix)
  await copyPgliteTemplate(dir)
  return dir
}

async function copyPgliteTemplate(dir: string): Promise<void> {
  const template = process.env.FILEGATE_TEST_PGLITE_TEMPLATE
  if (template) await cp(template, dir, { recursive: true })
}

/** A PGlite store in this process on a data directory of its own (as pgliteDataDir); closed, then removed, after the test. */
export async function pgliteStore(t: { after(fn: () => Promise<void>): void }): Promise<StorePort> {
  const dir = await mkdtemp(join(tmpdir(), 'filegate-pglite-'))
  await copyPgliteTemplate(dir)
  const store = await createPgliteStore(dir)
  // One hook, in this order: PGlite writes its files as it closes.
  t.after(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })
  return store
}

export const testKeys = {
  alice: 'alice-key-0123456789abcdef',
  bob: 'bob-key-0123456789abcdef0',
  admin: 'admin-key-0123456789abcdef',
}

export const auth = (key: string) => ({ authorization: `Bearer ${key}` })

export function testConfig(env: Record<string, string | undefined> = {}): Config {
  return loadConfig({
    LOG_LEVEL: 'silent',
    PORT: '0',
    API_KEYS: `alice:${testKeys.alice},bob:${testKeys.bob},*:${testKeys.admin}`,
    CLEANUP_ENABLED: 'false',
    RATE_LIMIT_PER_MINUTE: '0',
    ...env,
  })
}

/** Builds the real app; it is closed after the test. Waits until the schema is ready. */
export async function build(
  t: { after(fn: () => Promise<void>): void },
  env: Record<string, string | undefined> = {},
  overrides: AppOverrides = {},
): Promise<FastifyInstance> {
  const app = await buildApp(testConfig(env), { logger: false, ...overrides })
  t.after(() => app.close())
  await app.ready()
  await app.readiness.schemaReadyPromise
  return app
}

export interface Fakes {
  kimi: FakeProvider
  glm: FakeProvider
  /** Environment pointing filegate at the fakes. */
  env: Record<string, string>
}

export const fakeKeys = { kimi: 'sk-kimi-fake-0123456789', glm: 'glm-fake-0123456789.abcdef' }

/** Fake Kimi and GLM servers on loopback, closed after the test. */
export async function startFakes(t: { after(fn: () => Promise<void>): void }): Promise<Fakes> {
  const kimi = await startFakeProvider({ kind: 'kimi', apiKey: fakeKeys.kimi })
  const glm = await startFakeProvider({ kind: 'glm', apiKey: fakeKeys.glm })
  t.after(async () => {
    await Promise.all([kimi.close(), glm.close()])
  })
  return {
    kimi,
    glm,
    env: {
      KIMI_API_KEY: fakeKeys.kimi,
      KIMI_BASE_URL: kimi.baseUrl,
      GLM_API_KEY: fakeKeys.glm,
      GLM_BASE_URL: glm.baseUrl,
      RETRY_BASE_DELAY_MS: '10',
      RETRY_MAX_DELAY_MS: '200',
    },
  }
}

/** A multipart body for app.inject or fetch. */
export function multipart(
  fields: Array<[string, string] | [string, { filename: string; content: Buffer | string; type?: string }]>,
): { payload: Buffer; headers: Record<string, string> } {
  const boundary = `----filegate${Math.random().toString(16).slice(2)}`
  const chunks: Buffer[] = []
  for (const [name, value] of fields) {
    chunks.push(Buffer.from(`--${boundary}\r\n`))
    if (typeof value === 'string') {
      chunks.push(Buffer.from(`Content-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`))
    } else {
      chunks.push(
        Buffer.from(
          `Content-Disposition: form-data; name="${name}"; filename="${value.filename}"\r\n` +
            `Content-Type: ${value.type ?? 'application/octet-stream'}\r\n\r\n`,
        ),
        Buffer.isBuffer(value.content) ? value.content : Buffer.from(value.content),
        Buffer.from('\r\n'),
      )
    }
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`))
  return { payload: Buffer.concat(chunks), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } }
}
