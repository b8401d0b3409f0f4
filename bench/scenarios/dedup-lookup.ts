/**
 * Scenario 5: dedup lookup latency through the store port (`createPostgresStore(url).call`) at
 * two table sizes, each in its own database, rows bulk-inserted with generate_series (distinct
 * sha256 each, 8 tenants). One call at a time, so the figures are latencies and not queueing; the
 * calls run in rounds that alternate the two tables, so a slow moment of the machine (a p99 of
 * sub-millisecond calls is ~30 calls) lands on both sizes alike instead of on whichever ran then.
 */
import { createHash } from 'node:crypto'
import { migrateStore } from '../../src/store/index.js'
import type { StorePort } from '../../src/store/port.js'
import { createPostgresStore } from '../../src/store/postgres.js'
import { claimUpload, findLiveDuplicates } from '../../src/store/queries.js'
import { type BenchContext, envNumber, type Figure, type ScenarioResult } from '../harness/context.js'
import { type BenchDatabase, createBenchDatabase } from '../harness/db.js'
import { percentile, round, sortedCopy } from '../harness/stats.js'

const tenants = 8
const shaOf = (g: number) => createHash('sha256').update(`dedup-${g}`).digest('hex')
const tenantOf = (g: number) => `tenant-${g % tenants}`

interface Latency {
  p50: number
  p99: number
  mean: number
}

/** Runs `fn` `calls` times, one at a time, appending each call's milliseconds to `out`. */
async function time(calls: number, fn: (i: number) => Promise<unknown>, out: number[] = []): Promise<number[]> {
  for (let i = 0; i < calls; i++) {
    const t0 = performance.now()
    await fn(i)
    out.push(performance.now() - t0)
  }
  return out
}

const latency = (samples: number[]): Latency => {
  const sorted = sortedCopy(samples)
  return {
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    mean: samples.reduce((a, b) => a + b, 0) / samples.length,
  }
}

type Kind = 'find' | 'claim' | 'miss' | 'batch16'

/** The calls of one table size; `block(calls, round)` runs one round of every kind into `samples`. */
async function prepare(store: StorePort, size: number, warmupCalls: number) {
  const pick = () => 1 + Math.floor(Math.random() * size)
  // What every upload asks first (src/domain/dedup-probe.ts): find_live_duplicates, here with one
  // probe per call (a lone request) and with 16 (a busy replica's batch).
  const probe = (g: number, sha256 = shaOf(g)) => ({
    tenant_id: tenantOf(g),
    providers: ['kimi'],
    purpose: 'file-extract',
    sha256,
  })
  const find = (g: number) => findLiveDuplicates(store, [probe(g)])
  const batch = () =>
    findLiveDuplicates(
      store,
      Array.from({ length: 16 }, () => probe(pick())),
    )
  const claim = (g: number) =>
    claimUpload(store, {
      tenantId: tenantOf(g),
      provider: 'kimi',
      purpose: 'file-extract',
      sha256: shaOf(g),
      bytes: 1024,
      filename: `dedup-${g}.txt`,
      mimeType: 'text/plain',
      metadata: {},
      expiresAt: undefined,
      stuckMinutes: 30,
      // What the service passes for Kimi (1,000 files, 10 GiB): the duplicate path answers before the quota check.
      maxFiles: 1000,
      maxBytes: 10 * 1024 ** 3,
      maxPurposeFiles: undefined,
      owner: 'bench',
      leaseSeconds: 10,
      tenantMaxFiles: null,
      tenantMaxBytes: null,
    })
  await time(warmupCalls, () => find(pick()))
  await time(warmupCalls, () => claim(pick()))
  const first = await claim(pick())
  if (first.outcome !== 'duplicate') throw new Error(`claim_upload on an existing row answered ${first.outcome}`)
  const miss = (i: number) =>
    findLiveDuplicates(store, [probe(i, createHash('sha256').update(`absent-${size}-${i}`).digest('hex'))])
  const samples: Record<Kind, number[]> = { find: [], claim: [], miss: [], batch16: [] }
  return {
    samples,
    async block(calls: number, round: number) {
      await time(calls, () => find(pick()), samples.find)
      await time(calls, () => claim(pick()), samples.claim)
      await time(calls, (i) => miss(round * calls + i), samples.miss)
      await time(Math.ceil(calls / 4), () => batch(), samples.batch16)
    },
  }
}

/** Bulk-loads `size` rows, then vacuum analyze and a checkpoint; returns the plan of the lookup. */
async function load(db: BenchDatabase, size: number): Promise<string> {
  const chunk = 250_000
  for (let from = 1; from <= size; from += chunk) {
    const to = Math.min(size, from + chunk - 1)
    await db.sql`
      insert into provider_file_uploads
        (tenant_id, provider, provider_file_id, purpose, filename, mime_type, bytes, sha256, status,
         created_at, updated_at, last_used_at)
      select 'tenant-' || (g % ${tenants}), 'kimi', 'file-dedup-' || g, 'file-extract', 'dedup-' || g || '.txt',
             'text/plain', 1024, encode(sha256(convert_to('dedup-' || g, 'UTF8')), 'hex'), 'completed',
             now() - make_interval(secs => g), now() - make_interval(secs => g), now() - make_interval(secs => g)
        from generate_series(${from}::int, ${to}::int) g`
  }
  await db.sql`vacuum analyze provider_file_uploads`
  // Write out the bulk load now: a checkpoint the load triggers would otherwise run during the
  // measurement and show up in its p99 (the lookups are measured, not the load's WAL).
  await db.sql`checkpoint`
  const g = Math.ceil(size / 2)
  const plan = await db.sql.unsafe(
    `explain select id from provider_file_uploads
      where tenant_id = $1 and provider = any($2) and purpose = $3 and sha256 = $4
        and deleted_at is null and status = 'completed' limit 1`,
    [tenantOf(g), ['kimi'], 'file-extract', shaOf(g)],
  )
  return plan.map((row) => String(Object.values(row)[0])).join(' / ')
}

export async function dedupLookup(ctx: BenchContext): Promise<ScenarioResult> {
  const sizes = (process.env.BENCH_DEDUP_ROWS ?? '100000,1000000')
    .split(',')
    .map(Number)
    .filter((n) => n > 0)
  const calls = envNumber('BENCH_DEDUP_CALLS', 3000)
  const rounds = 5
  const perRound = Math.ceil(calls / rounds)
  const tables: Array<{ size: number; db: BenchDatabase; store: StorePort; plan: string }> = []
  const results: Array<{ size: number; r: Record<Kind, Latency>; plan: string }> = []
  try {
    for (const size of sizes) {
      const t0 = Date.now()
      const db = await createBenchDatabase(`dedup${size}`)
      const store = createPostgresStore(db.url, { max: 2 })
      const table = { size, db, store, plan: '' }
      tables.push(table) // before anything can fail, so that `finally` drops it
      await migrateStore(store)
      table.plan = await load(db, size)
      ctx.log(`  table of ${size} rows (insert + vacuum analyze + checkpoint ${round((Date.now() - t0) / 1000, 1)} s)`)
    }
    const prepared = await Promise.all(tables.map((t) => prepare(t.store, t.size, Math.min(500, calls))))
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < tables.length; i++) await prepared[(i + r) % tables.length]?.block(perRound, r)
    }
    tables.forEach((t, i) => {
      const samples = (prepared[i] as Awaited<ReturnType<typeof prepare>>).samples
      const r = {
        find: latency(samples.find),
        claim: latency(samples.claim),
        miss: latency(samples.miss),
        batch16: latency(samples.batch16),
      }
      ctx.log(
        `  ${t.size} rows: find_live_duplicates (1 probe) p50 ${round(r.find.p50, 3)} p99 ${round(r.find.p99, 3)} ms; claim_upload(duplicate) p50 ${round(r.claim.p50, 3)} p99 ${round(r.claim.p99, 3)} ms; miss p50 ${round(r.miss.p50, 3)} p99 ${round(r.miss.p99, 3)} ms; 16 probes p50 ${round(r.batch16.p50, 3)} p99 ${round(r.batch16.p99, 3)} ms`,
      )
      results.push({ size: t.size, r, plan: t.plan })
    })
  } finally {
    for (const t of tables) {
      await t.store.close().catch(() => {})
      await t.db.drop().catch(() => {})
    }
  }
  const small = results[0]
  const large = results.at(-1)
  const figures: Figure[] = []
  if (small && large && large !== small) {
    const pair = (label: string, key: Kind, informative = false) => {
      for (const q of ['p50', 'p99'] as const) {
        const ratio = large.r[key][q] / small.r[key][q]
        figures.push({
          scenario: 5,
          name: `${label} ${q} at ${large.size.toLocaleString('en')} rows`,
          value: large.r[key][q],
          unit: 'ms',
          baseline: { name: `at ${small.size.toLocaleString('en')} rows`, value: small.r[key][q], unit: 'ms' },
          ratio,
          target: informative ? 'informative' : 'growth ≤ 1.5×',
          met: informative ? null : ratio <= 1.5,
        })
      }
    }
    pair('find_live_duplicates, 1 probe (hit)', 'find')
    pair('claim_upload (duplicate path)', 'claim')
    pair('find_live_duplicates, 1 probe (miss)', 'miss', true)
    pair('find_live_duplicates, 16 probes (hits)', 'batch16', true)
  }
  return {
    figures,
    notes: [
      `- Scenario 5: ${perRound * rounds} sequential calls per figure (a quarter of that for 16-probe calls; after a warm-up) on random existing rows, in ${rounds} rounds that alternate the table sizes (each in its own database), through \`createPostgresStore(url, { max: 2 }).call(...)\` in the bench process (so each figure includes the driver and one loopback round trip). Rows: ${tenants} tenants, provider kimi, purpose file-extract, distinct sha256, all live; after each load \`vacuum analyze\` and \`checkpoint\`. Growth ≤ 1.5× is the bench's reading of "must not grow" on a noisy 2-core machine.`,
      ...results.map(
        (x) =>
          `  - ${x.size.toLocaleString('en')} rows: find hit p50/p99/mean ${round(x.r.find.p50, 3)}/${round(x.r.find.p99, 3)}/${round(x.r.find.mean, 3)} ms; claim dup ${round(x.r.claim.p50, 3)}/${round(x.r.claim.p99, 3)}/${round(x.r.claim.mean, 3)} ms; find miss ${round(x.r.miss.p50, 3)}/${round(x.r.miss.p99, 3)}/${round(x.r.miss.mean, 3)} ms; 16 probes in one call ${round(x.r.batch16.p50, 3)}/${round(x.r.batch16.p99, 3)}/${round(x.r.batch16.mean, 3)} ms. Plan of the lookup: \`${x.plan}\``,
      ),
    ],
  }
}
