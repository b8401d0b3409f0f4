/**
 * Cold start against the real process: a store that takes 15 s to open (Postgres behind a proxy
 * that holds every connection for 15 s: longer than Fastify's 10 s plugin timeout). The cold start
 * of a fresh PGlite DATA_DIR with every core busy is faults-startup-busy.test.ts (it runs alone).
 * The process listens at once (liveness 200, readiness 503 "starting"), requests that need the
 * database answer 503 DATABASE_UNAVAILABLE with Retry-After, and readiness turns 200 when the
 * store is ready; it never dies of Fastify's plugin timeout. A broken migration still stops it.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import postgres from 'postgres'
import { auth, createTestDatabase, freePort, postgresSuiteSkip, testKeys } from '../helper.js'
import { postgresProxy } from '../postgres-proxy.js'
import { httpRequest, serverEnv, spawnNode, waitForStatus, watchStartUp, within } from '../process-support.js'

const needsPostgres = await postgresSuiteSkip()

describe('cold start', () => {
  it('a Postgres that takes 15 s to answer: listens at once, 503 meanwhile, ready after', {
    skip: needsPostgres,
  }, async (t) => {
    const db = await createTestDatabase('filegate_cold')
    t.after(() => db.drop())
    const releaseAt = Date.now() + 15_000
    // Every connection is held until releaseAt, then forwarded.
    const proxy = await postgresProxy(t, { heldUntil: releaseAt })
    const port = await freePort()
    const child = spawnNode(t, 'src/server.ts', await serverEnv(t, port, { DATABASE_URL: proxy.urlFor(db.url) }))

    const live = await waitForStatus(child, port, '/healthz', 200, 12_000)
    assert.equal(live.status, 200)
    assert.ok(Date.now() < releaseAt, 'liveness answered while the database was still held')
    const ready = await httpRequest(port, '/readyz')
    assert.equal(ready.status, 503)
    assert.match(String(ready.headers['retry-after']), /^\d+$/)
    const files = await httpRequest(port, '/v1/files', { headers: auth(testKeys.alice) })
    assert.equal(files.status, 503, files.body)
    assert.match(String(files.headers['content-type']), /application\/problem\+json/)
    assert.equal(JSON.parse(files.body).code, 'DATABASE_UNAVAILABLE')
    assert.match(String(files.headers['retry-after']), /^\d+$/)

    const seen = await watchStartUp(child, port, 60_000)
    assert.ok(Date.now() >= releaseAt, 'ready only once the database answered')
    t.diagnostic(`ready ${seen.readyAfterMs} ms after polling began`)
    const after = await httpRequest(port, '/v1/files', { headers: auth(testKeys.alice) })
    assert.equal(after.status, 200, after.body)
  })

  it('a broken migration stops the process with a message naming it', { skip: needsPostgres }, async (t) => {
    const db = await createTestDatabase('filegate_broken')
    t.after(() => db.drop())
    // A schema object in the way of migration 0001: its own SQL fails, which waiting cannot cure.
    const sql = postgres(db.url, { max: 1, onnotice: () => {} })
    await sql`create function provider_usage(p_provider text default null) returns integer language sql as 'select 1'`
    await sql.end()
    const port = await freePort()
    const child = spawnNode(t, 'src/server.ts', await serverEnv(t, port, { DATABASE_URL: db.url }))
    const code = await within(60_000, 'the process to stop', child.exited, child.output)
    assert.equal(code, 1, child.output())
    assert.match(child.output(), /start-up failed: migration 0001_provider_file_uploads failed: /)
  })
})
