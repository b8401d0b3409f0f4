/**
 * `npm run bench:faults`: the fault figures of docs/operations.md, measured against the compiled
 * service run as `npm start` runs it (its Node flags), on the machine's Postgres and on PGlite,
 * with fake providers on loopback:
 *
 * 1. rolling restart: SIGTERM during an upload on a keep-alive connection; time from the last
 *    response to the process's exit (and its exit code);
 * 2. crash: a replica SIGKILLed mid-upload (20 MB); time from the kill until the same upload,
 *    retried at once on another replica, answers (default CLAIM_LEASE_SECONDS);
 * 3. slow client: a head sent at a byte a second with REQUEST_TIMEOUT_MS=5000; time until cut;
 * 4. cold start: a fresh PGlite DATA_DIR with every core busy; time to liveness and to readiness.
 *
 * Prints a markdown table. Every process it starts leads its own process group and is killed
 * with it at the end, whatever happens.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { availableParallelism, cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { startFakeProvider } from '../tests/fakes/provider-server.js'
import { createBenchDatabase } from './harness/db.js'
import { buildCompiled, freePort, productionNodeFlags } from './harness/processes.js'

const keys = { tenant: 'faults-key-0123456789abcdef', admin: 'faults-admin-0123456789abcdef' }
const cleanups: Array<() => Promise<unknown> | unknown> = []
const groups = new Set<ChildProcess>()

const killGroup = (child: ChildProcess) => {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  try {
    process.kill(-child.pid, 'SIGKILL')
  } catch {
    // Already gone.
  }
}

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** A fresh database (BENCH_DATABASE_ADMIN_URL, as the bench's), dropped at the end. */
async function database(): Promise<string> {
  const db = await createBenchDatabase('faults')
  cleanups.push(() => db.drop())
  return db.url
}

interface Service {
  port: number
  child: ChildProcess
  exited: Promise<{ code: number | null; at: number }>
}

let compiled = ''

async function startService(env: Record<string, string>, port?: number): Promise<Service> {
  const listenPort = port ?? (await freePort())
  const child = spawn(process.execPath, [...productionNodeFlags(compiled), join(compiled, 'src/server.js')], {
    cwd: compiled,
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      PORT: String(listenPort),
      API_KEYS: `faults:${keys.tenant},*:${keys.admin}`,
      LOG_LEVEL: 'warn',
      CLEANUP_ENABLED: 'false',
      RATE_LIMIT_PER_MINUTE: '0',
      UPLOAD_TMP_DIR: await tempDir('filegate-faults-spool-'),
      ...env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
    detached: true,
  })
  groups.add(child)
  const exited = new Promise<{ code: number | null; at: number }>((resolve) =>
    child.once('exit', (code) => resolve({ code, at: Date.now() })),
  )
  return { port: listenPort, child, exited }
}

async function status(port: number, path: string): Promise<number | undefined> {
  try {
    const res = await request(`http://127.0.0.1:${port}${path}`, { headersTimeout: 5_000, bodyTimeout: 5_000 })
    await res.body.dump()
    return res.statusCode
  } catch {
    return undefined
  }
}

async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

function multipart(filename: string, content: Buffer): { body: Buffer; contentType: string } {
  const boundary = `faults${randomBytes(6).toString('hex')}`
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="provider"\r\n\r\nkimi\r\n`),
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: text/plain\r\n\r\n`,
    ),
    content,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ])
  return { body, contentType: `multipart/form-data; boundary=${boundary}` }
}

async function upload(port: number, form: ReturnType<typeof multipart>, dispatcher?: Agent) {
  const res = await request(`http://127.0.0.1:${port}/v1/files`, {
    method: 'POST',
    headers: { authorization: `Bearer ${keys.tenant}`, 'content-type': form.contentType },
    body: form.body,
    ...(dispatcher ? { dispatcher } : {}),
    headersTimeout: 120_000,
    bodyTimeout: 120_000,
  })
  await res.body.dump()
  return { status: res.statusCode, at: Date.now() }
}

async function fakeKimi() {
  const fake = await startFakeProvider({ kind: 'kimi', apiKey: 'sk-faults-0123456789' })
  cleanups.push(() => fake.close())
  return { fake, env: { KIMI_API_KEY: 'sk-faults-0123456789', KIMI_BASE_URL: fake.baseUrl } }
}

/** 1. SIGTERM during a keep-alive upload: ms from its response to the exit, and the exit code. */
async function rollingRestart(storeEnv: Record<string, string>): Promise<string> {
  const { fake, env } = await fakeKimi()
  fake.latencyMs = 2_000
  fake.ops = ['upload']
  const service = await startService({ ...storeEnv, ...env, SHUTDOWN_DRAIN_MS: '1000' })
  await until('ready', async () => (await status(service.port, '/readyz')) === 200, 120_000)
  const agent = new Agent({ keepAliveTimeout: 120_000, keepAliveMaxTimeout: 120_000, connections: 1 })
  cleanups.push(() => agent.destroy())
  await status(service.port, '/healthz')
  const inFlight = upload(service.port, multipart('restart.txt', randomBytes(1024)), agent)
  await until('the upload at the provider', () => fake.requests.upload >= 1, 30_000)
  service.child.kill('SIGTERM')
  const answer = await inFlight
  const exit = await service.exited
  return `${exit.at - answer.at} ms (exit ${exit.code}, upload ${answer.status})`
}

/** 2. SIGKILL mid-upload, retry on another replica: ms from the kill to the retry's answer. */
async function crashRetry(): Promise<string> {
  const { fake, env } = await fakeKimi()
  fake.hang = true
  fake.ops = ['upload']
  const url = await database()
  const [a, b] = await Promise.all([
    startService({ DATABASE_URL: url, ...env }),
    startService({ DATABASE_URL: url, ...env }),
  ])
  for (const s of [a, b]) await until('ready', async () => (await status(s.port, '/readyz')) === 200, 120_000)
  const form = multipart('crash.txt', randomBytes(20 * 1024 * 1024))
  upload(a.port, form).catch(() => {})
  await until('the upload at the provider', () => fake.requests.upload >= 1, 60_000)
  fake.hang = false
  killGroup(a.child)
  const killedAt = Date.now()
  await a.exited
  const retry = await upload(b.port, form)
  return `${retry.at - killedAt} ms (answer ${retry.status}, CLAIM_LEASE_SECONDS 10)`
}

/** 3. A head at a byte a second, REQUEST_TIMEOUT_MS=5000: ms from connect to the cut. */
async function slowClientCut(): Promise<string> {
  const service = await startService({
    DATA_DIR: await tempDir('filegate-faults-slow-'),
    PROVIDER_TIMEOUT_MS: '3000',
    UPLOAD_TIMEOUT_MS: '4000',
    REQUEST_TIMEOUT_MS: '5000',
    SHUTDOWN_TIMEOUT_MS: '10000',
  })
  await until('ready', async () => (await status(service.port, '/readyz')) === 200, 120_000)
  const cuts: number[] = []
  for (let i = 0; i < 3; i++) cuts.push(await cutSlowHead(service.port))
  return `${cuts.join(' / ')} ms over three clients (REQUEST_TIMEOUT_MS 5000)`
}

async function cutSlowHead(port: number): Promise<number> {
  const { connect } = await import('node:net')
  return new Promise<number>((resolve) => {
    const socket = connect(port, '127.0.0.1')
    const started = Date.now()
    let timer: NodeJS.Timeout | undefined
    socket.on('error', () => {})
    // Read what comes (the 408): a socket nobody reads from reports its close only at the next write.
    socket.resume()
    socket.once('connect', () => {
      socket.write('POST /v1/files HTTP/1.1\r\nHost: x\r\n')
      timer = setInterval(() => socket.write('a'), 1_000)
    })
    socket.once('close', () => {
      clearInterval(timer)
      resolve(Date.now() - started)
    })
  })
}

/** 4. A fresh PGlite DATA_DIR with every core busy: ms from spawn to liveness and to readiness. */
async function coldStart(): Promise<string> {
  const cores = availableParallelism()
  for (let i = 0; i < cores; i++) {
    const burner = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore', detached: true })
    groups.add(burner)
  }
  const started = Date.now()
  const service = await startService({ DATA_DIR: await tempDir('filegate-faults-cold-') })
  let liveAt = 0
  await until(
    'ready',
    async () => {
      if (!liveAt && (await status(service.port, '/healthz')) === 200) liveAt = Date.now()
      return (await status(service.port, '/readyz')) === 200
    },
    300_000,
  )
  return `liveness ${liveAt - started} ms, readiness ${Date.now() - started} ms (${cores} cores busy)`
}

async function main() {
  compiled = await buildCompiled(await tempDir('filegate-faults-build-'))
  const rows: Array<[string, string]> = []
  rows.push([
    'exit after the last response (SIGTERM, keep-alive upload), Postgres',
    await rollingRestart({ DATABASE_URL: await database() }),
  ])
  rows.push([
    'exit after the last response (SIGTERM, keep-alive upload), PGlite',
    await rollingRestart({ DATA_DIR: await tempDir('filegate-faults-pglite-') }),
  ])
  rows.push(['retry after a crash answered, from the SIGKILL (20 MB, two replicas on Postgres)', await crashRetry()])
  rows.push(['slow client (head at 1 byte/s) cut, from connect', await slowClientCut()])
  rows.push(['cold start on a fresh DATA_DIR (PGlite), every core busy', await coldStart()])
  const cpu = cpus()[0]?.model ?? 'unknown CPU'
  process.stdout.write(
    `\nMeasured ${new Date().toISOString()} on ${availableParallelism()} cores (${cpu}), Node ${process.version}\n\n| figure | value |\n|---|---|\n${rows.map(([k, v]) => `| ${k} | ${v} |`).join('\n')}\n`,
  )
}

try {
  await main()
} finally {
  for (const child of groups) killGroup(child)
  for (const cleanup of cleanups.reverse()) await Promise.resolve(cleanup()).catch(() => {})
}
