/**
 * A replica SIGKILLed while it forwards a 20 MB upload: its claim's lease runs out, and the same
 * content retried (on two replicas at once, or on the restarted embedded process) is taken over
 * by exactly one of them: one provider upload, 201 for one retry and 200 for the other, within
 * a few lease periods rather than UPLOAD_TIMEOUT_MS (504) or STUCK_UPLOAD_MINUTES.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it, type TestContext } from 'node:test'
import postgres from 'postgres'
import {
  auth,
  createTestDatabase,
  freePort,
  multipart,
  pgliteDataDir,
  postgresSuiteSkip,
  startFakes,
  testKeys,
} from '../helper.js'
import {
  type Child,
  httpRequest,
  killGroup,
  serverEnv,
  spawnNode,
  waitForStatus,
  waitUntil,
  within,
} from '../process-support.js'

const needsPostgres = await postgresSuiteSkip()

const leaseSeconds = 2
// Short enough that the old behaviour (wait for the dead owner until the upload budget runs out,
// then 504) shows within the test; long enough for a 20 MB upload on a loaded machine.
const timeouts = {
  PROVIDER_TIMEOUT_MS: '20000',
  UPLOAD_TIMEOUT_MS: '30000',
  REQUEST_TIMEOUT_MS: '40000',
  SHUTDOWN_TIMEOUT_MS: '50000',
  CLAIM_LEASE_SECONDS: String(leaseSeconds),
}

const bigUpload = (content: Buffer) =>
  multipart([
    ['provider', 'kimi'],
    ['file', { filename: 'big.txt', content, type: 'text/plain' }],
  ])

function upload(port: number, body: ReturnType<typeof bigUpload>) {
  return httpRequest(port, '/v1/files', {
    method: 'POST',
    headers: { ...auth(testKeys.alice), ...body.headers },
    body: body.payload,
    timeoutMs: 60_000,
  })
}

/** Starts an upload on `victim`, waits until the provider has it in flight, and SIGKILLs the victim's group. */
async function crashMidUpload(
  victim: Child,
  port: number,
  body: ReturnType<typeof bigUpload>,
  fakes: { kimi: { requests: { upload: number } } },
) {
  let early: string | undefined
  const inFlight = upload(port, body)
  // The connection dies with the process; an answer before that is a failed set-up.
  inFlight.then(
    (a) => {
      early = `${a.status} ${a.body}`
    },
    () => {},
  )
  await waitUntil(
    'the upload to reach the provider',
    () => fakes.kimi.requests.upload >= 1 || early !== undefined,
    30_000,
  )
  assert.equal(early, undefined, 'the upload was still in flight')
  killGroup(victim.proc)
  assert.equal(await within(10_000, 'the SIGKILLed replica to exit', victim.exited), 'SIGKILL')
  await inFlight.then(
    (answer) => assert.fail(`the killed replica answered ${answer.status}`),
    () => undefined,
  )
}

/** Two retries of the same content at once: one uploads (201), the other waits for it (200). */
async function racingRetries(t: TestContext, ports: [number, number], body: ReturnType<typeof bigUpload>) {
  const started = Date.now()
  const answers = await Promise.all(ports.map((port) => upload(port, body)))
  const elapsedMs = Date.now() - started
  t.diagnostic(`both retries answered ${elapsedMs} ms after they were sent (lease ${leaseSeconds} s)`)
  const statuses = answers.map((a) => a.status).sort()
  assert.deepEqual(statuses, [200, 201], answers.map((a) => `${a.status} ${a.body.slice(0, 300)}`).join('\n'))
  const files = answers.map((a) => JSON.parse(a.body) as { id: string; status: string })
  assert.equal(files[0]?.id, files[1]?.id, 'both answer the same file')
  assert.equal(files[0]?.status, 'completed')
  // The old behaviour waits the whole upload budget (30 s) and answers 504; a lease is 2 s.
  assert.ok(elapsedMs < 25_000, `the retries took ${elapsedMs} ms`)
}

describe('crash mid-upload', () => {
  it('on Postgres: a SIGKILLed replica blocks nothing; two replicas racing for its claim cause one provider upload', {
    skip: needsPostgres,
  }, async (t) => {
    const db = await createTestDatabase('filegate_crash')
    t.after(() => db.drop())
    const fakes = await startFakes(t)
    fakes.kimi.hang = true
    fakes.kimi.ops = ['upload']
    const ports = [await freePort(), await freePort(), await freePort()] as const
    const replicas = await Promise.all(
      ports.map(async (port) =>
        spawnNode(t, 'src/server.ts', await serverEnv(t, port, { DATABASE_URL: db.url, ...fakes.env, ...timeouts })),
      ),
    )
    await Promise.all(replicas.map((child, i) => waitForStatus(child, ports[i] as number, '/readyz', 200, 60_000)))

    const body = bigUpload(randomBytes(20 * 1024 * 1024))
    await crashMidUpload(replicas[0] as Child, ports[0], body, fakes)
    const sql = postgres(db.url, { max: 1, onnotice: () => {} })
    t.after(() => sql.end())
    const [left] = await sql<
      { status: string; claimed_until: Date }[]
    >`select status, claimed_until from provider_file_uploads`
    assert.equal(left?.status, 'uploading', 'the dead replica left its claim behind')

    fakes.kimi.hang = false
    await racingRetries(t, [ports[1], ports[2]], body)
    assert.equal(fakes.kimi.uploads.length, 1, 'one provider upload for the two retries')
    const rows = await sql<{ status: string }[]>`select status from provider_file_uploads where deleted_at is null`
    assert.deepEqual(
      rows.map((r) => r.status),
      ['completed'],
    )
  })

  it('on PGlite: the restarted process takes over its own dead claim; two retries cause one provider upload', async (t) => {
    const dataDir = await pgliteDataDir(t, 'filegate-crash-pglite-')
    const fakes = await startFakes(t)
    fakes.kimi.hang = true
    fakes.kimi.ops = ['upload']
    const port = await freePort()
    const env = await serverEnv(t, port, { DATA_DIR: dataDir, ...fakes.env, ...timeouts })
    const first = spawnNode(t, 'src/server.ts', env)
    await waitForStatus(first, port, '/readyz', 200, 60_000)
    const body = bigUpload(randomBytes(20 * 1024 * 1024))
    await crashMidUpload(first, port, body, fakes)

    fakes.kimi.hang = false
    const restarted = spawnNode(t, 'src/server.ts', env)
    await waitForStatus(restarted, port, '/readyz', 200, 60_000)
    await racingRetries(t, [port, port], body)
    assert.equal(fakes.kimi.uploads.length, 1, 'one provider upload for the two retries')
  })
})
