/**
 * Rolling restart: SIGTERM while a keep-alive client has an upload in flight, and a probe opens a
 * new keep-alive connection during the shutdown. The upload answers 201, every response written
 * during the shutdown says Connection: close, and the process exits 0 about a second after its
 * last response, not when SHUTDOWN_TIMEOUT_MS runs out (exit 1, "killed by timeout").
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Agent as HttpAgent, request as httpGet } from 'node:http'
import { describe, it, type TestContext } from 'node:test'
import { Agent, request } from 'undici'
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
import { serverEnv, spawnNode, waitForStatus, waitUntil, within } from '../process-support.js'

const needsPostgres = await postgresSuiteSkip()

// SHUTDOWN_TIMEOUT_MS short enough that the old behaviour (exit 1 when it runs out) shows within
// the test, far longer than the upload: an exit near it is the failure this test looks for.
const timeouts = {
  PROVIDER_TIMEOUT_MS: '10000',
  UPLOAD_TIMEOUT_MS: '15000',
  REQUEST_TIMEOUT_MS: '20000',
  SHUTDOWN_TIMEOUT_MS: '30000',
  SHUTDOWN_DRAIN_MS: '1000',
}

/** GET on a new keep-alive connection of `agent` (node:http), answering status and Connection header. */
function probe(
  agent: HttpAgent,
  port: number,
  path: string,
): Promise<{ status: number; connection: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpGet({ host: '127.0.0.1', port, path, agent }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }))
    })
    req.on('error', reject)
    req.end()
  })
}

async function rollingRestart(t: TestContext, storeEnv: Record<string, string>) {
  const fakes = await startFakes(t)
  fakes.kimi.latencyMs = 3_000
  fakes.kimi.ops = ['upload']
  const port = await freePort()
  const child = spawnNode(
    t,
    'src/server.ts',
    await serverEnv(t, port, { ...storeEnv, ...fakes.env, ...timeouts, LOG_LEVEL: 'info', CLEANUP_ENABLED: 'true' }),
  )
  await waitForStatus(child, port, '/readyz', 200, 60_000)

  // A keep-alive client: its connection is open (and idle) before the upload starts on it.
  const agent = new Agent({ keepAliveTimeout: 120_000, keepAliveMaxTimeout: 120_000, connections: 1 })
  t.after(() => agent.destroy())
  const origin = `http://127.0.0.1:${port}`
  const warm = await request(`${origin}/healthz`, { dispatcher: agent })
  await warm.body.text()
  assert.notEqual(warm.headers.connection, 'close')

  const body = multipart([
    ['provider', 'kimi'],
    [
      'file',
      { filename: 'restart.txt', content: `rolling restart ${randomBytes(8).toString('hex')}`, type: 'text/plain' },
    ],
  ])
  let lastResponseAt = 0
  const upload = request(`${origin}/v1/files`, {
    dispatcher: agent,
    method: 'POST',
    headers: { ...auth(testKeys.alice), ...body.headers },
    body: body.payload,
  }).then(async (res) => {
    const text = await res.body.text()
    lastResponseAt = Date.now()
    return { status: res.statusCode, connection: res.headers.connection, text }
  })
  upload.catch(() => {})
  await waitUntil('the upload to reach the provider', () => fakes.kimi.requests.upload >= 1, 15_000)

  child.proc.kill('SIGTERM')
  await waitUntil('the signal to be handled', () => /shutting down/.test(child.output()), 10_000)
  // A probe on a new keep-alive connection during the drain: answered, and told to close.
  const probeAgent = new HttpAgent({ keepAlive: true, keepAliveMsecs: 60_000 })
  t.after(() => probeAgent.destroy())
  const ready = await probe(probeAgent, port, '/readyz')
  assert.equal(ready.status, 503)
  assert.equal(ready.connection, 'close')

  const answer = await within(20_000, 'the in-flight upload to answer', upload, child.output)
  assert.equal(answer.status, 201, answer.text)
  assert.equal(answer.connection, 'close', 'a response written during shutdown says Connection: close')
  const code = await within(25_000, 'the process to exit', child.exited, child.output)
  const exitMs = (child.exitedAt() as number) - lastResponseAt
  t.diagnostic(`exited ${exitMs} ms after its last response`)
  assert.equal(code, 0, child.output())
  assert.doesNotMatch(child.output(), /killed by timeout/)
  // About a second on a quiet machine; the old behaviour is SHUTDOWN_TIMEOUT_MS (30 s).
  assert.ok(exitMs < 8_000, `exited ${exitMs} ms after the last response`)
}

describe('rolling restart with keep-alive clients', () => {
  it('on Postgres: exits 0 right after its last in-flight response', { skip: needsPostgres }, async (t) => {
    const db = await createTestDatabase('filegate_restart')
    t.after(() => db.drop())
    await rollingRestart(t, { DATABASE_URL: db.url })
  })

  it('on PGlite: exits 0 right after its last in-flight response', async (t) => {
    await rollingRestart(t, { DATA_DIR: await pgliteDataDir(t, 'filegate-restart-pglite-') })
  })
})
