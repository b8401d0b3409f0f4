/**
 * Shared by the originals-*.test.ts suites: the two kinds of originals store (a local directory and
 * a real S3-protocol server, s3rver), each opened twice: by the app under test (through
 * ORIGINALS_URL, or injected) and by the test itself, to look at what the app left in the store
 * (objects, the staging area) and to corrupt an object behind the app's back.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import type { TestContext } from 'node:test'
import type { FastifyInstance } from 'fastify'
import type { AppOverrides } from '../../src/app.js'
import { createOriginalsStore, type OriginalsStore } from '../../src/originals/index.js'
import type { StoredObject } from '../../src/originals/store.js'
import { type S3Server, startS3Server } from '../fakes/s3-server.js'
import { build, type Fakes, requirePostgres, startFakes, type TestDatabase, tempDir } from '../helper.js'

export interface OriginalsUnderTest {
  kind: 'file' | 's3'
  /** ORIGINALS_URL and the S3_* settings of the app. */
  env: Record<string, string>
  /** The same store, opened by the test. */
  store: OriginalsStore
  /** The S3 server (s3 only), to stop it. */
  s3?: S3Server
  /** Replaces the object's bytes behind the app's back. */
  corrupt(tenant: string, sha256: string, bytes: Buffer): Promise<void>
  /** What is in the staging area: the store's listing, and for a directory its raw entries too. */
  staging(): Promise<string[]>
}

export interface Backend {
  name: string
  open(t: TestContext): Promise<OriginalsUnderTest>
}

export const backends: Backend[] = [
  {
    name: 'local directory',
    async open(t) {
      const root = await tempDir(t, 'fg-originals-')
      const url = `file://${root}`
      const store = await createOriginalsStore({ url, s3: { region: 'us-east-1', forcePathStyle: false } })
      t.after(() => store.close())
      return {
        kind: 'file',
        env: { ORIGINALS_URL: url },
        store,
        corrupt: (tenant, sha256, bytes) => writeFile(join(root, tenant, sha256), bytes),
        // Every entry, not only the names listStaging recognises.
        staging: () => readdir(join(root, '.staging')).catch(() => []),
      }
    },
  },
  {
    name: 's3 (s3rver)',
    async open(t) {
      const s3 = await startS3Server(t)
      const url = `s3://${s3.bucket}/originals`
      const store = await createOriginalsStore({ url, s3: s3.options })
      t.after(() => store.close())
      return {
        kind: 's3',
        env: {
          ORIGINALS_URL: url,
          S3_ENDPOINT: s3.endpoint,
          S3_REGION: 'us-east-1',
          S3_ACCESS_KEY_ID: 'S3RVER',
          S3_SECRET_ACCESS_KEY: 'S3RVER',
          S3_FORCE_PATH_STYLE: 'true',
        },
        store,
        s3,
        corrupt: async (tenant, sha256, bytes) => {
          await s3.put(`originals/${tenant}/${sha256}`, bytes)
        },
        staging: async () => (await collect(store.listStaging())).map((o) => o.id),
      }
    },
  },
]

export interface OriginalsApp {
  app: FastifyInstance
  fakes: Fakes
  originals: OriginalsUnderTest
  spoolDir: string
}

/** The app with originals kept in `originals` (or in `overrides.originals`, injected). */
export async function originalsApp(
  t: TestContext,
  db: TestDatabase,
  originals: OriginalsUnderTest,
  env: Record<string, string> = {},
  overrides: AppOverrides = {},
): Promise<OriginalsApp> {
  const fakes = await startFakes(t)
  const spoolDir = await tempDir(t, 'filegate-spool-')
  const app = await build(
    t,
    { DATABASE_URL: db.url, ...fakes.env, UPLOAD_TMP_DIR: spoolDir, ...originals.env, ...env },
    overrides,
  )
  return { app, fakes, originals, spoolDir }
}

/**
 * One test's app on the file's database with `backend` as its originals store (`wrap` injects a
 * store around it); undefined when Postgres is missing (skipped; a failure in CI).
 */
export async function setupOriginals(
  t: TestContext,
  database: () => TestDatabase | undefined,
  backend: Backend,
  env: Record<string, string> = {},
  wrap?: (store: OriginalsStore) => OriginalsStore,
): Promise<OriginalsApp | undefined> {
  if (!(await requirePostgres(t))) return undefined
  const db = database()
  if (!db) return undefined
  const originals = await backend.open(t)
  return originalsApp(t, db, originals, env, wrap ? { originals: wrap(originals.store) } : {})
}

export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of items) out.push(item)
  return out
}

/** The objects of `tenant` in the store. */
export async function objectsOf(store: OriginalsStore, tenant: string): Promise<StoredObject[]> {
  return (await collect(store.list())).filter((o) => o.tenant === tenant)
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

export const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/** The object at <tenant>/<sha256> holds exactly `content`. */
export async function assertStored(store: OriginalsStore, tenant: string, content: Buffer): Promise<void> {
  const sha256 = digest(content)
  assert.equal(await store.stat({ tenant, sha256 }), content.length, `an object at ${tenant}/${sha256}`)
  const { stream } = await store.read({ tenant, sha256 })
  assert.equal(digest(await readAll(stream)), sha256)
}

export async function assertStagingEmpty(originals: OriginalsUnderTest, what = 'nothing is left in staging') {
  assert.deepEqual(await originals.staging(), [], what)
}

/**
 * An originals store that fails where told, around a real one: `stage` breaks off after
 * `stageFailsAfter` bytes (the real store cleans up its staging, as it does for a dead disk or
 * bucket), `commit` refuses, `stat` and `ping` fail.
 */
export function failingStore(
  real: OriginalsStore,
  fail: { stageFailsAfter?: number; commit?: boolean; stat?: boolean; ping?: boolean },
): OriginalsStore {
  return {
    ...real,
    kind: real.kind,
    async stat(key) {
      if (fail.stat) throw new Error('injected: the originals store did not answer')
      return real.stat(key)
    },
    async stage(tenant, body) {
      const limit = fail.stageFailsAfter
      const source =
        limit === undefined
          ? body
          : (async function* () {
              let seen = 0
              for await (const chunk of body) {
                seen += chunk.byteLength
                if (seen > limit) throw new Error('injected: the originals store stopped answering')
                yield chunk
              }
            })()
      const staged = await real.stage(tenant, source)
      if (!fail.commit) return staged
      return {
        ...staged,
        bytes: staged.bytes,
        async commit() {
          await staged.discard()
          throw new Error('injected: the originals store refused the write')
        },
      }
    },
    async ping() {
      if (fail.ping) throw new Error('injected: the originals store is down')
      return real.ping()
    },
  }
}
