/**
 * `npm run soak`: two replicas of the compiled service (started as `npm start` starts it) on one
 * Postgres behind a proxy the soak cuts, the fake Kimi and GLM behind taps, originals in s3rver
 * behind a proxy the soak cuts, a seeded workload and a seeded fault schedule for SOAK_SECONDS
 * (600), then a settling time with the sweeps running, then the invariants. Prints a summary and
 * exits 1 on any violation. SOAK_SEED (printed at the start) replays the run's choices.
 *
 * Every child leads its own process group and is killed with it at the end, on Ctrl-C too; the
 * database is dropped. docs/testing.md says how to read the summary.
 */
import { randomInt } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import { type FakeProvider, startFakeProvider } from '../../tests/fakes/provider-server.js'
import { httpRequest } from '../../tests/process-support.js'
import { createBenchDatabase } from '../harness/db.js'
import { buildCompiled, freePort, repoRoot, startS3rver } from '../harness/processes.js'
import { classify, readDocumentedCodes } from './classify.js'
import { FaultRunner, planFaults } from './faults.js'
import { json, Router, SoakClient } from './http.js'
import { checkInvariants, type InvariantInputs } from './invariants.js'
import { Ledger } from './ledger.js'
import { type ProviderTap, startProviderTap } from './provider-tap.js'
import { newObservations, Replica } from './replicas.js'
import { dbFigures, poolWaiting, summarize } from './report.js'
import { Rng, sha256Hex } from './rng.js'
import { startCuttableProxy } from './tcp-proxy.js'
import { type Tenant, Workload } from './workload.js'

const env = (name: string, fallback: number) => {
  const raw = process.env[name]
  const value = raw === undefined || raw === '' ? fallback : Number(raw)
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number, got ${raw}`)
  return value
}

const seconds = env('SOAK_SECONDS', 600)
const seed = env('SOAK_SEED', randomInt(1, 2 ** 31))
const settleSeconds = env('SOAK_SETTLE_SECONDS', 75)
const rssLimitBytes = env('SOAK_RSS_LIMIT_MB', 400) * 1024 * 1024

/** The service's timeouts under soak: short, nested as config.ts requires. */
const timeouts = { provider: 4_000, upload: 12_000, request: 20_000, shutdown: 25_000, circuitReset: 5_000 }
const PROVIDERS = ['kimi', 'glm'] as const
const BUCKET = 'filegate-soak'
const PREFIX = 'originals'

const cleanups: Array<() => Promise<unknown> | unknown> = []
const replicas: Replica[] = []
let cleaning: Promise<void> | undefined

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const r of replicas) r.retire()
    for (const r of replicas) await r.signal('SIGKILL').catch(() => {})
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => {})
  })()
  return cleaning
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\nsoak: ${signal}, stopping every child and dropping the database\n`)
    void cleanup().finally(() => process.exit(130))
  })
}

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  return dir
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))
const log = (line: string) => process.stdout.write(`soak: ${line}\n`)

async function main(): Promise<number> {
  log(`SOAK_SEED=${seed} SOAK_SECONDS=${seconds} (settling ${settleSeconds} s; replay with the same SOAK_SEED)`)
  // The replicas' logs are kept (not cleaned up): a violation's request id finds its lines there.
  const logDir = process.env.SOAK_LOG_DIR || (await mkdtemp(join(tmpdir(), 'filegate-soak-logs-')))
  await mkdir(logDir, { recursive: true })
  log(`replica logs in ${logDir}`)
  const rng = new Rng(seed)
  const planRng = rng.fork('faults')
  const workRng = rng.fork('workload')
  const faultRng = rng.fork('fault-picks')

  const compiled = await buildCompiled(await tempDir('filegate-soak-build-'))
  const db = await createBenchDatabase('soak')
  cleanups.push(() => db.drop())
  const pg = new URL(db.url)
  const dbProxy = await startCuttableProxy(pg.hostname, Number(pg.port || 5432))
  cleanups.push(() => dbProxy.close())
  const proxiedDb = new URL(db.url)
  proxiedDb.port = String(dbProxy.port)

  const s3 = await startS3rver(await tempDir('filegate-soak-s3-'), BUCKET)
  cleanups.push(() => s3.stop())
  const s3Url = new URL(s3.endpoint)
  const storeProxy = await startCuttableProxy(s3Url.hostname, Number(s3Url.port))
  cleanups.push(() => storeProxy.close())

  const fakes = new Map<string, FakeProvider>()
  const taps = new Map<string, ProviderTap>()
  const foreign = new Set<string>()
  const providerEnv: Record<string, string> = {}
  for (const kind of PROVIDERS) {
    const apiKey = `sk-soak-${kind}-0123456789`
    const fake = await startFakeProvider({ kind, apiKey })
    // The soak bounds each tenant's live files itself; the fake's Kimi account cap is not under test.
    fake.maxFiles = Number.POSITIVE_INFINITY
    cleanups.push(() => fake.close())
    // Another application's files on the same account: reconcile must report them, nothing delete them.
    for (let i = 0; i < 3; i++)
      foreign.add(fake.addFile({ filename: `other-app-${i}.txt`, created_at: 1_700_000_000 }).id)
    const tap = await startProviderTap(fake.baseUrl)
    cleanups.push(() => tap.close())
    fakes.set(kind, fake)
    taps.set(kind, tap)
    const upper = kind.toUpperCase()
    providerEnv[`${upper}_API_KEY`] = apiKey
    providerEnv[`${upper}_BASE_URL`] = tap.baseUrl
  }

  const tenants: Tenant[] = ['acme', 'globex', 'initech', 'umbrella'].map((name) => ({
    name,
    key: `soak-${name}-key-0123456789abcdef`,
  }))
  const adminKey = 'soak-admin-key-0123456789abcdef'
  const observed = newObservations()
  for (const name of ['replica-a', 'replica-b']) {
    const serviceEnv: Record<string, string> = {
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      DATABASE_URL: proxiedDb.toString(),
      API_KEYS: [...tenants.map((t) => `${t.name}:${t.key}`), `*:${adminKey}`].join(','),
      DEFAULT_PROVIDER: 'kimi',
      ...providerEnv,
      RATE_LIMIT_PER_MINUTE: '0',
      CLEANUP_ENABLED: 'true',
      CLEANUP_CRON: '*/2 * * * * *',
      ORPHAN_AGE_DAYS: '0',
      STUCK_UPLOAD_MINUTES: '1',
      RECONCILE_GRACE_MINUTES: '0',
      ORIGINALS_URL: `s3://${BUCKET}/${PREFIX}`,
      S3_ENDPOINT: `http://127.0.0.1:${storeProxy.port}`,
      S3_REGION: 'us-east-1',
      S3_ACCESS_KEY_ID: 'S3RVER',
      S3_SECRET_ACCESS_KEY: 'S3RVER',
      S3_FORCE_PATH_STYLE: 'true',
      ORIGINALS_GRACE_MINUTES: '0',
      PROVIDER_TIMEOUT_MS: String(timeouts.provider),
      UPLOAD_TIMEOUT_MS: String(timeouts.upload),
      REQUEST_TIMEOUT_MS: String(timeouts.request),
      SHUTDOWN_TIMEOUT_MS: String(timeouts.shutdown),
      SHUTDOWN_DRAIN_MS: '500',
      CIRCUIT_RESET_MS: String(timeouts.circuitReset),
      CLAIM_LEASE_SECONDS: '5',
      UPLOAD_TMP_DIR: await tempDir(`filegate-soak-spool-${name}-`),
    }
    replicas.push(new Replica(name, await freePort(), compiled, serviceEnv, observed, logDir))
  }
  for (const r of replicas) r.start()
  for (const r of replicas) if (!(await r.ready(120_000))) throw new Error(`${r.name} did not become ready`)
  log(
    `replicas ready on ${replicas.map((r) => r.port).join(', ')}; Postgres proxy :${dbProxy.port}, store proxy :${storeProxy.port}`,
  )

  const router = new Router(replicas.map((r) => ({ name: r.name, baseUrl: r.baseUrl })))
  const client = new SoakClient(timeouts.request + 15_000)
  cleanups.push(() => client.close())
  const ledger = new Ledger()
  const faults = new FaultRunner({ fakes, taps, db: dbProxy, store: storeProxy, replicas, router, foreign }, faultRng)
  let stopping = false
  const poolWaitingMax = new Map<string, number>()
  const monitors = monitor(() => stopping, faults, router, observed.metrics, poolWaitingMax)

  const workload = new Workload(
    {
      seed,
      tenants,
      adminKey,
      clientsPerTenant: env('SOAK_CLIENTS_PER_TENANT', 3),
      providers: [...PROVIDERS],
      paceMs: env('SOAK_PACE_MS', 240),
      maxInFlight: 4,
      workingSet: 40,
      minBytes: 1024,
      maxBytes: 3 * 1024 * 1024,
    },
    workRng,
    ledger,
    router,
    client,
  )
  const plans = planFaults(
    planRng,
    seconds,
    replicas.map((r) => r.name),
    [...PROVIDERS],
    timeouts.provider,
  )
  const t0 = Date.now()
  const stalls = watchOwnEventLoop(t0)
  const storeWatch = watchStore(t0, s3.endpoint, BUCKET)
  workload.start()
  faults.run(plans, t0)
  log(`running ${seconds} s: ${plans.length} faults planned`)
  await sleep(seconds * 1000)
  await faults.stop()
  await workload.stop()
  log(
    `workload stopped after ${((Date.now() - t0) / 1000).toFixed(0)} s; settling ${settleSeconds} s with the sweeps running`,
  )

  // Settling: every fault off, every replica up; the sweeps run; a reconcile heals what the fakes lost.
  for (const fake of fakes.values()) Object.assign(fake, { hang: false, latencyMs: 0, ops: null })
  await faults.drainBursts()
  await dbProxy.set('pass')
  await storeProxy.set('pass')
  for (const r of replicas)
    if (!r.running() && !faults.down.has(r.name))
      await faults.restart(r, faults.open('replica-crash', r.name, 'restarted for the settling'))
  faults.close()
  await sleep((settleSeconds * 1000) / 2)
  const admin = { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' }
  await client.send(`${router.pick().baseUrl}/v1/cleanup`, {
    method: 'POST',
    headers: admin,
    body: JSON.stringify({ dry_run: false, jobs: ['reconcile'] }),
  })
  await sleep((settleSeconds * 1000) / 2)

  const retrieved = await retrieve(ledger, tenants, router, client)
  const notes: string[] = [stalls.stop(), await storeWatch.stop()]
  const reconcileUnknown = await reconcileDryRun(router, client, admin, notes)
  stopping = true
  for (const r of replicas) await r.scrapeMetrics()
  await monitors.stop()
  for (const r of replicas) await r.stop(timeouts.shutdown + 5_000)
  for (const r of replicas) await r.closeLog()

  const judge = {
    documented: readDocumentedCodes(join(repoRoot, 'docs', 'api.md')),
    windows: faults.timeline,
    slotWaitMs: timeouts.upload - timeouts.provider,
    // A provider fault's effects outlast it: an attempt begun in the window fails up to
    // PROVIDER_TIMEOUT_MS after it ended, and the circuit that failure opens stays open
    // CIRCUIT_RESET_MS (docs/operations.md): 503 PROVIDER_UNAVAILABLE until then is the promise.
    tails: { dbMs: 5_000, storeMs: 5_000, providerMs: timeouts.provider + timeouts.circuitReset + 2_000 },
  }
  const judged = ledger.outcomes.map((outcome) => ({ outcome, verdict: classify(outcome, judge) }))
  await writeFile(
    join(logDir, 'outcomes.jsonl'),
    judged.map(({ outcome, verdict }) => JSON.stringify({ ...outcome, t: outcome.start - t0, verdict })).join('\n'),
  )
  const sql = postgres(db.url, { max: 2, onnotice: () => {} })
  cleanups.push(() => sql.end({ timeout: 1 }))
  const inputs: InvariantInputs = {
    sql,
    ledger,
    fakes,
    taps,
    foreign,
    reconcileUnknown,
    timeline: faults.timeline,
    observed,
    retrieved,
    s3: { endpoint: s3.endpoint, bucket: BUCKET, prefix: PREFIX },
    stagingAgeMs: timeouts.request + timeouts.upload + settleSeconds * 500,
    rssLimitBytes,
    stuckAfterSeconds: 60 + 6,
  }
  const invariants = await checkInvariants(inputs)
  invariants.notes.push(...notes, `${observed.jsonLines} JSON lines read from the replicas (kept in ${logDir})`)
  const summary = summarize({
    seed,
    seconds,
    t0,
    judged,
    timeline: faults.timeline,
    violations: invariants.violations,
    notes: invariants.notes,
    db: dbFigures(observed.metrics, poolWaitingMax),
  })
  process.stdout.write(summary)
  return /\nPASS:/.test(summary) ? 0 : 1
}

/** RSS every second, /metrics every 5 s, and a crash check every 500 ms (a crashed replica is restarted). */
function monitor(
  stopping: () => boolean,
  faults: FaultRunner,
  router: Router,
  metrics: Map<string, string>,
  poolWaitingMax: Map<string, number>,
) {
  let ticks = 0
  const restarting = new Set<string>()
  const timer = setInterval(() => {
    ticks++
    for (const r of replicas) {
      if (ticks % 2 === 0) void r.sampleRss()
      if (ticks % 10 === 0) {
        void r.scrapeMetrics().then(() => {
          const text = metrics.get(r.incarnation)
          const waiting = text === undefined ? undefined : poolWaiting(text)
          if (waiting !== undefined)
            poolWaitingMax.set(r.incarnation, Math.max(waiting, poolWaitingMax.get(r.incarnation) ?? 0))
        })
      }
      if (!r.running() && !faults.down.has(r.name) && !restarting.has(r.name) && !stopping()) {
        restarting.add(r.name)
        router.take(r.name)
        const w = faults.open('replica-crash', r.name, 'exited without a signal from the soak; restarted')
        void faults.restart(r, w).finally(() => restarting.delete(r.name))
      }
    }
  }, 500)
  return {
    async stop() {
      clearInterval(timer)
      while (restarting.size > 0) await sleep(100)
    },
  }
}

/** After the settling: each file the soak believes live, asked for; up to 100 originals read back and hashed. */
async function retrieve(ledger: Ledger, tenants: Tenant[], router: Router, client: SoakClient) {
  const out: InvariantInputs['retrieved'] = new Map()
  const keys = new Map(tenants.map((t) => [t.name, t.key]))
  let originals = 0
  for (const file of ledger.files.values()) {
    if (file.state !== 'live') continue
    const headers = { authorization: `Bearer ${keys.get(file.tenant)}` }
    const base = `${router.pick().baseUrl}/v1/files/${file.id}`
    const got = await client.send(base, { method: 'GET', headers })
    const entry: { status?: number; status_field?: string; original_ok?: boolean } = {}
    if (got.status !== undefined) entry.status = got.status
    const status = json<{ status?: string }>(got)?.status
    if (status) entry.status_field = status
    if (originals < 100 && got.status === 200) {
      originals++
      const original = await client.send(`${base}/original`, { method: 'GET', headers })
      const body = original.body ?? Buffer.alloc(0)
      entry.original_ok = original.status === 200 && sha256Hex(body) === file.content.sha256
    }
    out.set(file.id, entry)
  }
  return out
}

/**
 * This process runs the fake providers, their taps, the clients and the proxies before Postgres and
 * the store: while its event loop is held, the replicas see a silent database or store that no fault
 * made. Every wait of more than half a second past a 100 ms tick is noted with its time since the
 * start, to set beside the violations.
 */
function watchOwnEventLoop(t0: number): { stop(): string } {
  const stalls: string[] = []
  let expected = Date.now() + 100
  const timer = setInterval(() => {
    const now = Date.now()
    if (now - expected > 500) stalls.push(`+${((expected - t0) / 1000).toFixed(1)} s for ${now - expected} ms`)
    expected = now + 100
  }, 100)
  return {
    stop() {
      clearInterval(timer)
      return stalls.length === 0
        ? 'the soak process never held its event loop past 0.5 s (its proxies, fakes and clients kept pace)'
        : `the soak process held its event loop past 0.5 s ${stalls.length} time(s) (its proxies and fakes stalled meanwhile): ${stalls.slice(0, 12).join(', ')}`
    },
  }
}

/**
 * The store itself (s3rver, its own process), asked directly, not through the proxy the faults cut:
 * a HEAD of the bucket every 250 ms, one at a time. An answer slower than a second (or none within
 * 10 s) is noted with its time since the start: a store that fell silent on its own, not by a fault,
 * shows here (and a stall of this process in watchOwnEventLoop's note).
 */
function watchStore(t0: number, endpoint: string, bucket: string): { stop(): Promise<string> } {
  const port = Number(new URL(endpoint).port)
  const slow: string[] = []
  let probes = 0
  let running = true
  const loop = (async () => {
    while (running) {
      const started = Date.now()
      const outcome = await httpRequest(port, `/${bucket}`, { method: 'HEAD', timeoutMs: 10_000 }).then(
        (answer) => String(answer.status),
        (err: Error) => err.message,
      )
      probes++
      const ms = Date.now() - started
      if (ms > 1000 || !/^[23]\d\d$/.test(outcome)) {
        slow.push(`+${((started - t0) / 1000).toFixed(1)} s: ${outcome} after ${ms} ms`)
      }
      await sleep(250)
    }
  })()
  return {
    async stop() {
      running = false
      await loop
      return slow.length === 0
        ? `the store, asked directly ${probes} times, always answered within a second`
        : `the store, asked directly ${probes} times, was slow or failed ${slow.length} time(s): ${slow.slice(0, 12).join(', ')}`
    },
  }
}

/**
 * A reconcile dry run's report: per provider, the ids it names (provider files no row knows among
 * them). Asked up to three times for a run that completes (a listing may fail once).
 */
async function reconcileDryRun(router: Router, client: SoakClient, headers: Record<string, string>, notes: string[]) {
  type Report = {
    jobs?: {
      reconcile?: { status?: string; reason?: string; providers?: Record<string, { candidate_ids?: string[] }> }
    }
  }
  let job: NonNullable<NonNullable<Report['jobs']>['reconcile']> | undefined
  for (let attempt = 1; attempt <= 3; attempt++) {
    const answer = await client.send(`${router.pick().baseUrl}/v1/cleanup`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ dry_run: true, jobs: ['reconcile'] }),
    })
    job = json<Report>(answer)?.jobs?.reconcile
    notes.push(
      `reconcile dry run ${attempt}: ${answer.status ?? answer.error} ${job?.status ?? ''} ${job?.reason ?? ''}`.trim(),
    )
    if (job?.status === 'completed') break
    await sleep(2_000)
  }
  const out = new Map<string, Set<string>>()
  for (const [provider, t] of Object.entries(job?.providers ?? {})) out.set(provider, new Set(t.candidate_ids ?? []))
  return out
}

let code = 1
try {
  code = await main()
} catch (err) {
  process.stderr.write(`soak: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
} finally {
  await cleanup()
}
process.exit(code)
