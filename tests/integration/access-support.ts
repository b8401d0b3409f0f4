/**
 * Shared by the access-*.test.ts suites: one app per transport (Postgres, a database of the file's
 * own; PGlite, a data directory of its own) built once for a suite, keys made through the API, raw
 * SQL on either transport (what the tests look at in the database), and a bounded wait that reports
 * how long the awaited event took.
 */
import assert from 'node:assert/strict'
import { after, before } from 'node:test'
import type { FastifyInstance } from 'fastify'
import type { AppOverrides } from '../../src/app.js'
import {
  auth,
  build,
  createTestDatabase,
  type Fakes,
  multipart,
  pgliteDataDir,
  postgresSuiteSkip,
  startFakes,
  type TestDatabase,
  testKeys,
} from '../helper.js'

export type Transport = 'postgres' | 'pglite'

export const transports: Transport[] = ['postgres', 'pglite']

/** Why a transport's suite is skipped (Postgres unreachable outside CI), or false. */
export const skipOf = async (transport: Transport): Promise<false | string> =>
  transport === 'postgres' ? postgresSuiteSkip() : false

/** What `after` registrations a suite's `before` made, run when the suite ends (last first). */
export function suiteScope(): { after(fn: () => Promise<void>): void } {
  const closers: Array<() => Promise<void>> = []
  after(async () => {
    for (const close of closers.reverse()) await close()
  })
  return { after: (fn) => closers.push(fn) }
}

export interface Place {
  transport: Transport
  /** The environment that points an app at this database. */
  env: Record<string, string>
  db?: TestDatabase
}

/** A database of the suite's own on `transport`: a Postgres database, or a PGlite data directory. */
export async function place(scope: { after(fn: () => Promise<void>): void }, transport: Transport): Promise<Place> {
  if (transport === 'pglite') return { transport, env: { DATA_DIR: await pgliteDataDir(scope, 'filegate-access-') } }
  const db = await createTestDatabase('filegate_access')
  scope.after(() => db.drop())
  return { transport, env: { DATABASE_URL: db.url }, db }
}

/** One app on `where`, with the fake providers; `overrides.store` shares one open store (PGlite replicas). */
export function accessApp(
  scope: { after(fn: () => Promise<void>): void },
  where: Place,
  fakes: Fakes,
  env: Record<string, string> = {},
  overrides: AppOverrides = {},
): Promise<FastifyInstance> {
  return build(scope, { ...where.env, ...fakes.env, ...env }, overrides)
}

/** Sets up the suite's place, fakes and app once, before its tests. */
export function suiteApp(
  transport: Transport,
  env:
    | Record<string, string>
    | ((scope: { after(fn: () => Promise<void>): void }) => Promise<Record<string, string>>) = {},
): () => { app: FastifyInstance; fakes: Fakes; where: Place } {
  const scope = suiteScope()
  let made: { app: FastifyInstance; fakes: Fakes; where: Place } | undefined
  before(async () => {
    if (await skipOf(transport)) return
    const where = await place(scope, transport)
    const fakes = await startFakes(scope)
    const extra = typeof env === 'function' ? await env(scope) : env
    made = { app: await accessApp(scope, where, fakes, extra), fakes, where }
  })
  return () => {
    assert.ok(made, 'the suite app is built')
    return made
  }
}

/** Raw SQL on the app's own database, whatever the transport (what the tests look at there). */
export async function sql<R extends Record<string, unknown>>(
  app: FastifyInstance,
  text: string,
  params: unknown[] = [],
): Promise<R[]> {
  const migrator = app.store.migrator
  assert.ok(migrator, 'a transport that runs SQL')
  return migrator.withLock((session) => session.query<R>(text, params))
}

export const admin = auth(testKeys.admin)

export interface MadeKey {
  id: string
  key: string
  body: Record<string, unknown>
}

/** POST /v1/keys with `headers`; asserts 201. */
export async function createKey(
  app: FastifyInstance,
  body: Record<string, unknown>,
  headers: Record<string, string> = admin,
): Promise<MadeKey> {
  const res = await app.inject({ method: 'POST', url: '/v1/keys', headers, payload: body })
  assert.equal(res.statusCode, 201, res.body)
  const made = res.json() as Record<string, unknown> & { id: string; key: string }
  return { id: made.id, key: made.key, body: made }
}

/** POST /v1/files of `content` with `key`: `fields` before the file part (provider first), `headers` added. */
export function uploadWith(
  app: FastifyInstance,
  key: string,
  content: string,
  fields: Array<[string, string]> = [['provider', 'kimi']],
  headers: Record<string, string> = {},
) {
  const body = multipart([...fields, ['file', { filename: 'doc.txt', content, type: 'text/plain' }]])
  return app.inject({
    method: 'POST',
    url: '/v1/files',
    headers: { ...auth(key), ...body.headers, ...headers },
    payload: body.payload,
  })
}

/** The status of GET /v1/files with `key` (what a client holding it sees). */
export async function statusWith(app: FastifyInstance, key: string): Promise<number> {
  return (await app.inject({ method: 'GET', url: '/v1/files', headers: auth(key) })).statusCode
}

/** Polls `check` every `everyMs` until it holds; the milliseconds it took, or fails after `timeoutMs`. */
export async function within(what: string, timeoutMs: number, check: () => Promise<boolean>, everyMs = 10) {
  const started = performance.now()
  for (;;) {
    if (await check()) return performance.now() - started
    if (performance.now() - started > timeoutMs) assert.fail(`${what}: not within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

/** The problem body of a 403 FORBIDDEN, asserted. */
export function forbidden(res: Awaited<ReturnType<FastifyInstance['inject']>>, what: string) {
  assert.equal(res.statusCode, 403, `${what}: ${res.body}`)
  const body = res.json() as { code: string; required_scope?: string; detail: string }
  assert.equal(body.code, 'FORBIDDEN', what)
  return body
}

/**
 * Searches every text-like column of every table (text, varchar, json, jsonb, arrays) for any of
 * `secrets`; fails naming the column where one is found. Returns how many columns were searched.
 */
export async function assertNoSecretStored(app: FastifyInstance, secrets: string[]): Promise<number> {
  const columns = await sql<{ table_name: string; column_name: string }>(
    app,
    `select c.table_name, c.column_name from information_schema.columns c
       join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name
      where c.table_schema = current_schema() and t.table_type = 'BASE TABLE'
        and (c.data_type in ('text', 'character varying', 'character', 'json', 'jsonb', 'ARRAY'))`,
  )
  assert.ok(columns.length > 20, `${columns.length} columns`)
  for (const { table_name: table, column_name: column } of columns) {
    const found = await sql<{ n: number }>(
      app,
      `select count(*)::int as n from "${table}" r
        where exists (select 1 from unnest($1::text[]) s where position(s in r."${column}"::text) > 0)`,
      [secrets],
    )
    assert.equal(Number(found[0]?.n), 0, `a secret in clear in ${table}.${column}`)
  }
  return columns.length
}
