/**
 * The app's foundation against the machine's real Postgres: probes, request ids, problem+json,
 * authentication, list validation, shutdown and database-outage behaviour, metrics,
 * rate limiting and log hygiene. Fake providers are real HTTP servers on loopback.
 */
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { Writable } from 'node:stream'
import { after, describe, it, type TestContext } from 'node:test'
import type { FastifyInstance } from 'fastify'
import postgres from 'postgres'
import { buildApp } from '../../src/app.js'
import { createPostgresStore } from '../../src/store/postgres.js'
import {
  adminUrl,
  auth,
  build,
  createTestDatabase,
  fakeKeys,
  freePort,
  isCI,
  multipart,
  postgresAvailable,
  startFakes,
  type TestDatabase,
  testConfig,
  testKeys,
} from '../helper.js'

const pgOk = await postgresAvailable()
if (!pgOk && isCI) throw new Error(`CI=true but Postgres is not reachable at ${adminUrl}`)
if (!pgOk) console.log(`# NOTICE: Postgres not reachable at ${adminUrl}; the app integration suite is skipped`)
const skip = pgOk ? false : 'Postgres not reachable'

const PROBLEM_JSON = /^application\/problem\+json/

/** Polls `check` until it returns a value, or fails after `timeoutMs`. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (err) {
      last = err
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`)
}

async function upload(app: FastifyInstance, headers: Record<string, string>, name: string, content: string) {
  const body = multipart([
    ['provider', 'kimi'],
    ['file', { filename: name, content, type: 'text/plain' }],
  ])
  return app.inject({
    method: 'POST',
    url: '/v1/files',
    headers: { ...headers, ...body.headers },
    payload: body.payload,
  })
}

describe('app on Postgres', { skip }, () => {
  // One database for the suite (the first app applies the migrations), dropped when it ends.
  let db: Promise<TestDatabase> | undefined
  const dbUrl = async () => {
    db ??= createTestDatabase()
    return (await db).url
  }
  after(async () => {
    await (await db)?.drop()
  })

  describe('probes, request ids and problem+json', () => {
    it('/healthz answers 200 and /readyz 200 on the postgres transport', async (t) => {
      const app = await build(t, { DATABASE_URL: await dbUrl() })
      const live = await app.inject({ method: 'GET', url: '/healthz' })
      assert.equal(live.statusCode, 200)
      assert.deepEqual(live.json(), { status: 'ok' })
      const ready = await app.inject({ method: 'GET', url: '/readyz' })
      assert.equal(ready.statusCode, 200)
      const body = ready.json()
      assert.equal(body.status, 'ready')
      assert.equal(body.transport, 'postgres')
      assert.deepEqual(body.checks.database, { ok: true })
      assert.deepEqual(body.checks.schema, { ok: true })
    })

    it('honours a valid x-request-id and generates one otherwise, on success and on errors', async (t) => {
      const app = await build(t, { DATABASE_URL: await dbUrl() })
      const given = `req-${randomBytes(6).toString('hex')}`
      const ok = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': given } })
      assert.equal(ok.headers['x-request-id'], given)

      const unauthorized = await app.inject({ method: 'GET', url: '/v1/files', headers: { 'x-request-id': given } })
      assert.equal(unauthorized.statusCode, 401)
      assert.equal(unauthorized.headers['x-request-id'], given)
      assert.equal(unauthorized.json().instance, given)

      const invalid = 'has spaces and $ymbols'
      const generated = await app.inject({ method: 'GET', url: '/v1/files', headers: { 'x-request-id': invalid } })
      const id = String(generated.headers['x-request-id'])
      assert.notEqual(id, invalid)
      assert.match(id, /^[0-9a-f-]{36}$/)
      assert.equal(generated.json().instance, id)

      const tooLong = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'a'.repeat(200) } })
      assert.match(String(tooLong.headers['x-request-id']), /^[0-9a-f-]{36}$/)

      const none1 = await app.inject({ method: 'GET', url: '/healthz' })
      const none2 = await app.inject({ method: 'GET', url: '/healthz' })
      assert.match(String(none1.headers['x-request-id']), /^[0-9a-f-]{36}$/)
      assert.notEqual(none1.headers['x-request-id'], none2.headers['x-request-id'])
    })

    it('an unknown route is a 404 problem+json whose instance is the request id', async (t) => {
      const app = await build(t, { DATABASE_URL: await dbUrl() })
      const res = await app.inject({ method: 'GET', url: '/no/such/route', headers: { 'x-request-id': 'probe-404' } })
      assert.equal(res.statusCode, 404)
      assert.match(String(res.headers['content-type']), PROBLEM_JSON)
      assert.equal(res.headers['x-request-id'], 'probe-404')
      const problem = res.json()
      assert.equal(problem.status, 404)
      assert.equal(problem.code, 'NOT_FOUND')
      assert.equal(problem.instance, 'probe-404')
      assert.equal(typeof problem.type, 'string')
      assert.equal(typeof problem.title, 'string')
      assert.equal(typeof problem.detail, 'string')
    })
  })

  describe('authentication (API_KEYS)', () => {
    it('no Authorization header is 401 UNAUTHORIZED with WWW-Authenticate: Bearer', async (t) => {
      const app = await build(t, { DATABASE_URL: await dbUrl() })
      const res = await app.inject({ method: 'GET', url: '/v1/files' })
      assert.equal(res.statusCode, 401)
      assert.match(String(res.headers['content-type']), PROBLEM_JSON)
      assert.match(String(res.headers['www-authenticate']), /^Bearer\b/)
      assert.equal(res.json().code, 'UNAUTHORIZED')
    })

    it('a wrong key is 401, a malformed header is 401', async (t) => {
      const app = await build(t, { DATABASE_URL: await dbUrl() })
      const wrong = await app.inject({ method: 'GET', url: '/v1/files', headers: auth('not-a-key-0123456789abcdef') })
      assert.equal(wrong.statusCode, 401)
      assert.equal(wrong.json().code, 'UNAUTHORIZED')
      assert.match(String(wrong.headers['www-authenticate']), /^Bearer\b/)
      const basic = await app.inject({
        method: 'GET',
        url: '/v1/files',
        headers: { authorization: `Basic ${Buffer.from(`alice:${testKeys.alice}`).toString('base64')}` },
      })
      assert.equal(basic.statusCode, 401)
    })

    it('a tenant key works on /v1/files; with X-Tenant-Id it is 403 FORBIDDEN', async (t) => {
      const app = await build(t, { DATABASE_URL: await dbUrl() })
      const ok = await app.inject({ method: 'GET', url: '/v1/files', headers: auth(testKeys.alice) })
      assert.equal(ok.statusCode, 200)
      assert.deepEqual(Object.keys(ok.json()).sort(), ['data', 'has_more', 'next_cursor'])
      const forbidden = await app.inject({
        method: 'GET',
        url: '/v1/files',
        headers: { ...auth(testKeys.alice), 'x-tenant-id': 'bob' },
      })
      assert.equal(forbidden.statusCode, 403)
      assert.match(String(forbidden.headers['content-type']), PROBLEM_JSON)
      assert.equal(forbidden.json().code, 'FORBIDDEN')
    })

    it('an admin key must name the tenant: without X-Tenant-Id /v1/files is 400', async (t) => {
      const app = await build(t, { DATABASE_URL: await dbUrl() })
      const res = await app.inject({ method: 'GET', url: '/v1/files', headers: auth(testKeys.admin) })
      assert.equal(res.statusCode, 400)
      assert.equal(res.json().code, 'VALIDATION_FAILED')
    })

    it("the admin acting as alice sees alice's files only; bob cannot read alice's file", async (t) => {
      const fakes = await startFakes(t)
      const app = await build(t, { DATABASE_URL: await dbUrl(), ...fakes.env })
      const tag = randomUUID()
      const mine = await upload(app, auth(testKeys.alice), 'alice.txt', `alice ${tag}`)
      assert.equal(mine.statusCode, 201, mine.body)
      const aliceFile = mine.json()
      assert.equal(aliceFile.tenant_id, 'alice')
      const theirs = await upload(app, auth(testKeys.bob), 'bob.txt', `bob ${tag}`)
      assert.equal(theirs.statusCode, 201, theirs.body)
      const bobFile = theirs.json()

      const asAlice = await app.inject({
        method: 'GET',
        url: '/v1/files?limit=100',
        headers: { ...auth(testKeys.admin), 'x-tenant-id': 'alice' },
      })
      assert.equal(asAlice.statusCode, 200)
      const ids = asAlice.json().data.map((f: { id: string }) => f.id)
      assert.ok(ids.includes(aliceFile.id))
      assert.ok(!ids.includes(bobFile.id))
      for (const f of asAlice.json().data) assert.equal(f.tenant_id, 'alice')

      const adminGet = await app.inject({
        method: 'GET',
        url: `/v1/files/${aliceFile.id}`,
        headers: { ...auth(testKeys.admin), 'x-tenant-id': 'alice' },
      })
      assert.equal(adminGet.statusCode, 200)
      assert.equal(adminGet.json().id, aliceFile.id)

      const bobGet = await app.inject({ method: 'GET', url: `/v1/files/${aliceFile.id}`, headers: auth(testKeys.bob) })
      assert.equal(bobGet.statusCode, 404)
      assert.equal(bobGet.json().code, 'NOT_FOUND')
      const aliceGet = await app.inject({
        method: 'GET',
        url: `/v1/files/${aliceFile.id}`,
        headers: auth(testKeys.alice),
      })
      assert.equal(aliceGet.statusCode, 200)
    })

    it('open mode (no API_KEYS) acts as tenant default', async (t) => {
      const fakes = await startFakes(t)
      const app = await build(t, { DATABASE_URL: await dbUrl(), API_KEYS: '', ...fakes.env })
      const res = await upload(app, {}, 'open.txt', `open mode ${randomUUID()}`)
      assert.equal(res.statusCode, 201, res.body)
      assert.equal(res.json().tenant_id, 'default')
      const list = await app.inject({ method: 'GET', url: '/v1/files?limit=100' })
      assert.equal(list.statusCode, 200)
      const files = list.json().data as Array<{ id: string; tenant_id: string }>
      assert.ok(files.some((f) => f.id === res.json().id))
      for (const f of files) assert.equal(f.tenant_id, 'default')
    })
  })

  describe('list validation', () => {
    it('limit outside 1..100 is 400 VALIDATION_FAILED, not clamped', async (t) => {
      const app = await build(t, { DATABASE_URL: await dbUrl() })
      for (const limit of ['0', '101', '-1', 'ten']) {
        const res = await app.inject({ method: 'GET', url: `/v1/files?limit=${limit}`, headers: auth(testKeys.alice) })
        assert.equal(res.statusCode, 400, `limit=${limit}`)
        assert.match(String(res.headers['content-type']), PROBLEM_JSON)
        assert.equal(res.json().code, 'VALIDATION_FAILED', `limit=${limit}`)
      }
      for (const limit of ['1', '100']) {
        const res = await app.inject({ method: 'GET', url: `/v1/files?limit=${limit}`, headers: auth(testKeys.alice) })
        assert.equal(res.statusCode, 200, `limit=${limit}`)
      }
    })

    it('a cursor this service did not issue is 400 VALIDATION_FAILED', async (t) => {
      const app = await build(t, { DATABASE_URL: await dbUrl() })
      const forged = Buffer.from(JSON.stringify(['yesterday', 'not-a-uuid'])).toString('base64url')
      for (const cursor of ['garbage!!', forged]) {
        const res = await app.inject({
          method: 'GET',
          url: `/v1/files?after=${encodeURIComponent(cursor)}`,
          headers: auth(testKeys.alice),
        })
        assert.equal(res.statusCode, 400, `after=${cursor}`)
        assert.equal(res.json().code, 'VALIDATION_FAILED')
      }
    })
  })

  describe('shutdown and database outages', () => {
    it('from the first moment of shutdown /readyz is 503 and /v1/* is 503 SHUTTING_DOWN with Retry-After', async (t) => {
      const app = await build(t, { DATABASE_URL: await dbUrl() })
      assert.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200)
      app.readiness.beginShutdown()
      const ready = await app.inject({ method: 'GET', url: '/readyz' })
      assert.equal(ready.statusCode, 503)
      assert.equal(ready.json().status, 'unavailable')
      assert.equal(ready.json().checks.shutdown.ok, false)
      assert.equal(ready.json().checks.database.ok, true)
      const live = await app.inject({ method: 'GET', url: '/healthz' })
      assert.equal(live.statusCode, 200, 'liveness holds while draining')
      const refused = await app.inject({ method: 'GET', url: '/v1/files', headers: auth(testKeys.alice) })
      assert.equal(refused.statusCode, 503)
      assert.match(String(refused.headers['content-type']), PROBLEM_JSON)
      assert.equal(refused.json().code, 'SHUTTING_DOWN')
      assert.match(String(refused.headers['retry-after']), /^\d+$/)
      assert.equal(refused.headers.connection, 'close', 'every response says Connection: close')
      const badKey = await app.inject({ method: 'GET', url: '/v1/files', headers: auth('not-a-key-at-all-xx') })
      assert.equal(badKey.statusCode, 401, 'authentication still runs before the shutdown gate')
    })

    it('starts while its database does not exist, answers 503 DATABASE_UNAVAILABLE, and recovers by itself', async (t) => {
      const name = `filegate_test_late_${process.pid}_${randomBytes(4).toString('hex')}`
      const url = new URL(adminUrl)
      url.pathname = `/${name}`
      const admin = postgres(adminUrl, { max: 1, onnotice: () => {} })
      t.after(async () => {
        await admin.unsafe(`drop database if exists ${name} with (force)`)
        await admin.end()
      })
      const app = await buildApp(testConfig({ DATABASE_URL: url.toString() }), { logger: false })
      t.after(() => app.close())
      await app.ready()
      assert.equal(app.readiness.schemaReady, false)

      assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200)
      const ready = await app.inject({ method: 'GET', url: '/readyz' })
      assert.equal(ready.statusCode, 503)
      assert.equal(ready.json().checks.database.ok, false)
      const files = await app.inject({ method: 'GET', url: '/v1/files', headers: auth(testKeys.alice) })
      assert.equal(files.statusCode, 503, files.body)
      assert.match(String(files.headers['content-type']), PROBLEM_JSON)
      assert.equal(files.json().code, 'DATABASE_UNAVAILABLE')
      assert.match(String(files.headers['retry-after']), /^\d+$/)
      const one = await app.inject({ method: 'GET', url: `/v1/files/${randomUUID()}`, headers: auth(testKeys.alice) })
      assert.equal(one.statusCode, 503, one.body)

      await admin.unsafe(`create database ${name}`)
      await waitFor('readiness after the database appears', async () => {
        const res = await app.inject({ method: 'GET', url: '/readyz' })
        return res.statusCode === 200 ? res : undefined
      })
      const recovered = await app.inject({ method: 'GET', url: '/v1/files', headers: auth(testKeys.alice) })
      assert.equal(recovered.statusCode, 200, recovered.body)
    })

    it('with the database up but the schema not applied, /readyz is 503 and /v1/* is 503, never 500', async (t) => {
      // A store that cannot migrate (like Supabase without DATABASE_URL) on an empty database.
      const empty = await createTestDatabase()
      const inner = createPostgresStore(empty.url, { max: 2 })
      t.after(async () => {
        await inner.close()
        await empty.drop()
      })
      const store = { transport: inner.transport, call: inner.call, close: async () => {} }
      const app = await buildApp(testConfig({ DATABASE_URL: empty.url }), { logger: false, store })
      t.after(() => app.close())
      await app.ready()
      // The store opens in the background: once its first attempt found the schema missing,
      // readiness asks the database and tells the two apart.
      const ready = await waitFor('the first start-up attempt', async () => {
        const res = await app.inject({ method: 'GET', url: '/readyz' })
        return res.json().reason === 'starting' ? undefined : res
      })
      assert.equal(ready.statusCode, 503)
      assert.equal(ready.json().checks.database.ok, true)
      assert.equal(ready.json().checks.schema.ok, false)
      const files = await app.inject({ method: 'GET', url: '/v1/files', headers: auth(testKeys.alice) })
      assert.equal(files.statusCode, 503, files.body)
      assert.equal(files.json().code, 'DATABASE_UNAVAILABLE')
      assert.match(String(files.headers['retry-after']), /^\d+$/)
    })
  })

  describe('metrics', () => {
    it('/metrics labels HTTP durations by route template and includes the default process metrics', async (t) => {
      const app = await build(t, { DATABASE_URL: await dbUrl() })
      const id = randomUUID()
      const miss = await app.inject({ method: 'GET', url: `/v1/files/${id}`, headers: auth(testKeys.alice) })
      assert.equal(miss.statusCode, 404)
      await app.inject({ method: 'GET', url: `/scanner/${id}` })

      const res = await app.inject({ method: 'GET', url: '/metrics' })
      assert.equal(res.statusCode, 200)
      assert.match(String(res.headers['content-type']), /^text\/plain/)
      const text = res.body
      assert.match(text, /filegate_http_request_duration_seconds_count\{[^}]*route="\/v1\/files\/:id"[^}]*\} 1/)
      assert.match(text, /filegate_http_request_duration_seconds_count\{[^}]*status_code="404"/)
      assert.ok(!text.includes(id), 'no raw path (nor id) as a label')
      assert.match(text, /^process_cpu_user_seconds_total /m)
      assert.match(text, /^nodejs_heap_size_total_bytes /m)
    })

    it('METRICS_PORT serves the same registry on a second listener', async (t) => {
      const port = await freePort()
      const app = await build(t, { DATABASE_URL: await dbUrl(), METRICS_PORT: String(port) })
      await app.inject({ method: 'GET', url: '/healthz' })
      const res = await fetch(`http://127.0.0.1:${port}/metrics`)
      assert.equal(res.status, 200)
      const text = await res.text()
      assert.match(text, /filegate_http_request_duration_seconds_count\{[^}]*route="\/healthz"/)
      assert.match(text, /^process_cpu_user_seconds_total /m)
      const other = await fetch(`http://127.0.0.1:${port}/v1/files`)
      assert.equal(other.status, 404)
      await other.body?.cancel()
    })
  })

  describe('rate limiting', () => {
    it('the request over RATE_LIMIT_PER_MINUTE is 429 RATE_LIMITED with Retry-After; probes are not limited', async (t) => {
      const app = await build(t, { DATABASE_URL: await dbUrl(), RATE_LIMIT_PER_MINUTE: '3' })
      for (let i = 0; i < 3; i++) {
        const res = await app.inject({ method: 'GET', url: '/v1/files', headers: auth(testKeys.alice) })
        assert.equal(res.statusCode, 200, `request ${i + 1}`)
      }
      const limited = await app.inject({ method: 'GET', url: '/v1/files', headers: auth(testKeys.alice) })
      assert.equal(limited.statusCode, 429)
      assert.match(String(limited.headers['content-type']), PROBLEM_JSON)
      assert.equal(limited.json().code, 'RATE_LIMITED')
      assert.equal(limited.json().status, 429)
      assert.ok(Number(limited.headers['retry-after']) >= 1, `retry-after ${limited.headers['retry-after']}`)

      // The budget is per tenant: bob still has his.
      const bob = await app.inject({ method: 'GET', url: '/v1/files', headers: auth(testKeys.bob) })
      assert.equal(bob.statusCode, 200)

      for (let i = 0; i < 10; i++) {
        assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200)
        assert.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200)
        assert.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 200)
      }
    })
  })

  describe('logs', () => {
    /**
     * Makes requests with bearer keys against failing providers (Kimi is given a wrong key and
     * answers 401 echoing it, as real providers do; GLM answers 500s) and returns the whole log.
     */
    async function captureLog(t: TestContext, logger: Record<string, unknown>) {
      const fakes = await startFakes(t)
      const lines: string[] = []
      const stream = new Writable({
        write(chunk, _encoding, done) {
          lines.push(String(chunk))
          done()
        },
      })
      const wrongKimiKey = `sk-kimi-wrong-${randomBytes(8).toString('hex')}`
      const app = await build(
        t,
        { DATABASE_URL: await dbUrl(), ...fakes.env, KIMI_API_KEY: wrongKimiKey, RETRY_MAX_ATTEMPTS: '2' },
        { logger: { ...logger, stream } },
      )
      const rejected = await upload(app, auth(testKeys.alice), 'secret.txt', `kimi ${randomUUID()}`)
      assert.ok(rejected.statusCode >= 500, `${rejected.statusCode} ${rejected.body}`)
      assert.ok(!rejected.body.includes(wrongKimiKey), 'the response does not echo the provider key')
      fakes.glm.failNext(10, 500)
      const glmBody = multipart([
        ['provider', 'glm'],
        ['file', { filename: 'secret.txt', content: `glm ${randomUUID()}`, type: 'text/plain' }],
      ])
      const failed = await app.inject({
        method: 'POST',
        url: '/v1/files',
        headers: { ...auth(testKeys.alice), ...glmBody.headers },
        payload: glmBody.payload,
      })
      assert.ok(failed.statusCode >= 500, `${failed.statusCode} ${failed.body}`)
      await app.inject({ method: 'GET', url: '/v1/files', headers: auth(testKeys.bob) })
      await app.inject({ method: 'GET', url: '/v1/files', headers: { ...auth(testKeys.admin), 'x-tenant-id': 'bob' } })
      await app.inject({ method: 'GET', url: '/v1/files', headers: auth(presentedWrongKey) })
      await app.close()
      const log = lines.join('')
      assert.ok(log.includes('/v1/files'), 'the logger captured these requests')
      return { log, secrets: [...Object.values(testKeys), presentedWrongKey, wrongKimiKey, ...Object.values(fakeKeys)] }
    }
    const presentedWrongKey = 'wrong-key-0123456789abcdefgh'
    const assertNoSecret = (log: string, secrets: string[]) => {
      for (const secret of secrets) {
        const at = log.indexOf(secret)
        assert.equal(at, -1, `the log contains a secret: …${log.slice(Math.max(0, at - 300), at + 40)}`)
      }
    }

    it('at debug level, with no redaction at all, never contain a bearer key nor a provider key', async (t) => {
      // No redact paths: what passes here holds whatever the production redaction list misses.
      const { log, secrets } = await captureLog(t, { level: 'debug', redact: { paths: [] } })
      assertNoSecret(log, secrets)
    })

    it('at trace level never contain a bearer key nor a provider key', async (t) => {
      // The production redaction applies (overrides are merged over it).
      const { log, secrets } = await captureLog(t, { level: 'trace' })
      assertNoSecret(log, secrets)
    })
  })
})
