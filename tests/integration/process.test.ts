/**
 * The real process: `node --import tsx src/server.ts` (and src/migrate.ts) spawned with an
 * environment the test controls. Start-up refusals, replicas starting together on one empty
 * database, graceful shutdown during a slow upload, the second signal, and the embedded default.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it, type TestContext } from 'node:test'
import postgres from 'postgres'
import {
  auth,
  createTestDatabase,
  freePort,
  multipart,
  postgresSuiteSkip,
  startFakes,
  tempDir,
  testKeys,
} from '../helper.js'
import { httpRequest, root, serverEnv, spawnNode, waitForStatus, waitUntil, within } from '../process-support.js'

const needsPostgres = await postgresSuiteSkip()

async function database(t: TestContext) {
  const db = await createTestDatabase('filegate_proc')
  t.after(() => db.drop())
  return db
}

const slowUpload = (content: string) =>
  multipart([
    ['provider', 'kimi'],
    ['file', { filename: 'slow.txt', content, type: 'text/plain' }],
  ])

describe('start-up refusals', () => {
  const badEnv = { PORT: 'abc', RETENTION_DAYS: '-1', HOST: '0.0.0.0' }

  it('bad values stop start-up with one message naming each offending variable', async (t) => {
    const child = spawnNode(t, 'src/server.ts', badEnv)
    const code = await within(30_000, 'the refused start-up to exit', child.exited, child.output)
    assert.notEqual(code, 0)
    const out = child.output()
    assert.match(out, /PORT/)
    assert.match(out, /RETENTION_DAYS/)
    assert.equal(out.match(/Invalid configuration/g)?.length, 1, `one message:\n${out}`)
    assert.doesNotMatch(out, /at .*\(.*\.ts:\d+/, 'a message, not a stack trace')
  })

  it('the same message also names API_KEYS (open mode refused on 0.0.0.0)', async (t) => {
    const child = spawnNode(t, 'src/server.ts', badEnv)
    assert.notEqual(await within(30_000, 'the refused start-up to exit', child.exited, child.output), 0)
    const out = child.output()
    assert.equal(out.match(/Invalid configuration/g)?.length, 1, `one message:\n${out}`)
    for (const variable of ['PORT', 'RETENTION_DAYS', 'API_KEYS']) assert.match(out, new RegExp(variable), out)
  })

  it('misordered timeouts stop start-up, naming them', async (t) => {
    const child = spawnNode(t, 'src/server.ts', {
      PROVIDER_TIMEOUT_MS: '5000',
      UPLOAD_TIMEOUT_MS: '4000',
      REQUEST_TIMEOUT_MS: '300000',
      SHUTDOWN_TIMEOUT_MS: '200000',
    })
    const code = await within(30_000, 'the refused start-up to exit', child.exited, child.output)
    assert.notEqual(code, 0)
    const out = child.output()
    assert.match(out, /UPLOAD_TIMEOUT_MS/)
    assert.match(out, /PROVIDER_TIMEOUT_MS/)
    assert.match(out, /SHUTDOWN_TIMEOUT_MS/)
    assert.match(out, /REQUEST_TIMEOUT_MS/)
  })
})

describe('on Postgres', { skip: needsPostgres }, () => {
  it('two processes started together on one empty database both become ready; each migration is applied once', async (t) => {
    const db = await database(t)
    const [portA, portB] = [await freePort(), await freePort()]
    const a = spawnNode(t, 'src/server.ts', await serverEnv(t, portA, { DATABASE_URL: db.url }))
    const b = spawnNode(t, 'src/server.ts', await serverEnv(t, portB, { DATABASE_URL: db.url }))
    const [readyA, readyB] = await Promise.all([
      waitForStatus(a, portA, '/readyz', 200, 30_000),
      waitForStatus(b, portB, '/readyz', 200, 30_000),
    ])
    assert.equal(JSON.parse(readyA.body).transport, 'postgres')
    assert.equal(JSON.parse(readyB.body).transport, 'postgres')

    const files = (await readdir(join(root, 'migrations'))).filter((f) => /^\d{4}_.*\.sql$/.test(f)).sort()
    const sql = postgres(db.url, { max: 1, onnotice: () => {} })
    try {
      const rows = await sql<{ version: number; name: string }[]>`
        select version, name from filegate_schema_migrations order by version`
      assert.deepEqual(
        rows.map((r) => `${r.name}.sql`),
        files,
        'exactly one row per migration file',
      )
    } finally {
      await sql.end()
    }
    assert.doesNotMatch(a.output() + b.output(), /"level":(50|60)/, 'neither process logged an error')
  })

  it('SIGTERM during a slow upload: readiness fails at once, the upload finishes with 201, the process exits 0', async (t) => {
    const db = await database(t)
    const fakes = await startFakes(t)
    fakes.kimi.latencyMs = 3_000
    fakes.kimi.ops = ['upload']
    const port = await freePort()
    const child = spawnNode(
      t,
      'src/server.ts',
      await serverEnv(t, port, {
        DATABASE_URL: db.url,
        ...fakes.env,
        SHUTDOWN_DRAIN_MS: '1500',
        LOG_LEVEL: 'info',
        // The scheduler is on, as in production: its stop is part of the shutdown under test.
        CLEANUP_ENABLED: 'true',
      }),
    )
    await waitForStatus(child, port, '/readyz', 200, 30_000)

    const body = slowUpload(`slow upload ${randomBytes(8).toString('hex')}`)
    const upload = httpRequest(port, '/v1/files', {
      method: 'POST',
      headers: { ...auth(testKeys.alice), ...body.headers },
      body: body.payload,
      timeoutMs: 30_000,
    })
    upload.catch(() => {}) // awaited below; keeps an early rejection from being unhandled
    await waitUntil('the upload to reach the fake provider', () => fakes.kimi.requests.upload >= 1, 15_000)

    child.proc.kill('SIGTERM')
    const notReady = await waitForStatus(child, port, '/readyz', 503, 10_000)
    assert.equal(JSON.parse(notReady.body).checks.shutdown.ok, false)
    // New work is refused while the drain lasts.
    const refused = await httpRequest(port, '/v1/files', { headers: auth(testKeys.alice) }).catch(() => undefined)
    if (refused) assert.equal(refused.status, 503, refused.body)

    const answer = await within(20_000, 'the in-flight upload to finish', upload, child.output)
    assert.equal(answer.status, 201, answer.body)
    assert.equal(JSON.parse(answer.body).provider, 'kimi')
    const code = await within(20_000, 'the process to exit after draining', child.exited, child.output)
    assert.equal(code, 0, child.output())
    assert.match(child.output(), /shutdown complete/)
  })

  it('a second signal exits at once, while a slow request is still in flight', async (t) => {
    const db = await database(t)
    const fakes = await startFakes(t)
    fakes.kimi.hang = true
    fakes.kimi.ops = ['upload']
    const port = await freePort()
    const child = spawnNode(
      t,
      'src/server.ts',
      await serverEnv(t, port, { DATABASE_URL: db.url, ...fakes.env, LOG_LEVEL: 'info' }),
    )
    await waitForStatus(child, port, '/readyz', 200, 30_000)

    const body = slowUpload(`hanging upload ${randomBytes(8).toString('hex')}`)
    const upload = httpRequest(port, '/v1/files', {
      method: 'POST',
      headers: { ...auth(testKeys.alice), ...body.headers },
      body: body.payload,
      timeoutMs: 60_000,
    })
    let uploadSettled = false
    upload.then(
      () => {
        uploadSettled = true
      },
      () => {
        uploadSettled = true
      },
    )
    await waitUntil('the upload to reach the fake provider', () => fakes.kimi.requests.upload >= 1, 15_000)

    child.proc.kill('SIGTERM')
    // The first signal is being handled once the process says so; the hanging upload holds the close.
    await waitUntil('the first signal to be handled', () => /shutting down/.test(child.output()), 10_000)
    assert.equal(child.proc.exitCode, null, 'still draining after the first signal')
    child.proc.kill('SIGTERM')
    const code = await within(5_000, 'the process to exit on the second signal', child.exited, child.output)
    assert.notEqual(code, 'SIGKILL')
    assert.equal(typeof code, 'number')
    assert.equal(fakes.kimi.uploads.length, 0, 'the provider never finished the upload')
    // The request was cut, not answered: exiting did not wait for it.
    await within(
      5_000,
      'the cut upload to settle',
      upload.catch(() => undefined),
    )
    assert.ok(uploadSettled)
  })

  it('db:migrate applies the schema to a fresh database, prints the version and exits 0', async (t) => {
    const db = await database(t)
    const child = spawnNode(t, 'src/migrate.ts', { DATABASE_URL: db.url })
    const code = await within(30_000, 'the migration to finish', child.exited, child.output)
    assert.equal(code, 0, child.output())
    const files = (await readdir(join(root, 'migrations'))).filter((f) => /^\d{4}_.*\.sql$/.test(f)).sort()
    const latest = Number.parseInt(files.at(-1)?.slice(0, 4) ?? '0', 10)
    assert.match(child.output(), new RegExp(`version ${latest}\\b`))

    const again = spawnNode(t, 'src/migrate.ts', { DATABASE_URL: db.url })
    assert.equal(await within(30_000, 'the second migration run', again.exited, again.output), 0, again.output())
    assert.match(again.output(), /nothing to apply/)
  })
})

describe('db:migrate without a database', () => {
  it('exits non-zero when DATABASE_URL is unreachable', async (t) => {
    const child = spawnNode(t, 'src/migrate.ts', { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/filegate' })
    const code = await within(30_000, 'the failed migration to exit', child.exited, child.output)
    assert.notEqual(code, 0)
    assert.match(child.output(), /migration failed/)
  })
})

describe('embedded default', () => {
  it('with no DATABASE_URL the service runs on PGlite under DATA_DIR and becomes ready', async (t) => {
    const dataDir = await tempDir(t, 'filegate-proc-pglite-')
    const port = await freePort()
    const env = await serverEnv(t, port, { DATA_DIR: dataDir })
    const child = spawnNode(t, 'src/server.ts', env)
    // A bound against a hang, not a speed check: creating a PGlite cluster takes seconds of CPU,
    // several times that while other test files load both cores (31 s seen).
    const ready = await waitForStatus(child, port, '/readyz', 200, 120_000)
    assert.equal(JSON.parse(ready.body).transport, 'pglite')
    assert.ok((await readdir(dataDir)).length > 0, 'PGlite keeps its data under DATA_DIR')
    child.proc.kill('SIGTERM')
    assert.equal(await within(20_000, 'the process to exit', child.exited, child.output), 0, child.output())
  })
})
