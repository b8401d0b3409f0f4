/**
 * Interleaved A/B of scenario 3 (10 KB dedup hits at 32 connections) or, with BENCH_AB_SCENARIO=1,
 * of scenario 1 (100 MB of new content, store-and-forward and stream-through): several service
 * variants (a checkout, extra environment and/or Node flags each) and the scenario's baselines
 * (bare Fastify; or direct to the fake and the bare relay), measured in turns (A B C, B C A, …) so
 * that drift in the machine's speed lands on every variant alike. Prints medians, ratios to the
 * baseline and the service's CPU per request or per 100 MB.
 *
 *   npm run bench:ab -- base=/tmp/fg-base new=. new-pool4=.,DATABASE_POOL_MAX=4
 *   BENCH_AB_SCENARIO=1 npm run bench:ab -- now=. gc=.,NODE_ARGS=--no-single-threaded-gc
 *
 *   BENCH_AB_ROUNDS (5), BENCH_AB_SECONDS (4), BENCH_AB_HEADER=1 (send X-Content-SHA256);
 *   for scenario 1 BENCH_AB_ROUNDS and BENCH_LARGE_BYTES. NODE_ARGS=… in a variant are Node flags.
 *
 * BENCH_AB_SCENARIO=summary: the figures `npm run bench` prints as its summary (three ratios, the
 * RSS peaks), per variant, and a flag on any more than 10 % worse than the first variant's (exit
 * code 1). BENCH_AB_ROUNDS (1 here) rounds of every variant's set; the scenarios' own settings apply.
 *
 * A tool for trying a fix, not a record: `npm run bench` writes the figures.
 */
import { rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { request } from 'undici'
import { freshRandomFile } from './harness/client.js'
import { type BenchContext, envNumber } from './harness/context.js'
import { type BenchDatabase, createBenchDatabase } from './harness/db.js'
import type { LoadResult } from './harness/load.js'
import {
  buildCompiled,
  type FakeHandle,
  splitFlags,
  startBaseline,
  startFake,
  startRelay,
  startService,
} from './harness/processes.js'
import { MB, median, round } from './harness/stats.js'
import { quickSettings } from './quick.js'
import { summaryFigures, summaryKeys, summaryValue, worseBy } from './report.js'
import { clientView } from './scenarios/client-view.js'
import { directTarget, largeFileBytes, largeRounds, relayTarget, serviceTargets } from './scenarios/large-upload.js'
import { variant } from './scenarios/memory.js'
import { smallUploadLoad, smallUploadRequest, smallUploads } from './scenarios/small-uploads.js'

interface Variant {
  name: string
  baseUrl: string
  pid: number
  stop(): Promise<void>
}

// BENCH_QUICK=1: the small sizes of `npm run bench`'s quick run, to prove a mode works.
quickSettings()
const rounds = envNumber('BENCH_AB_ROUNDS', 5)
const seconds = envNumber('BENCH_AB_SECONDS', 4)
const specs = process.argv.slice(2).map((arg) => {
  // Split at the first '=' only: values may hold more (NODE_ARGS=--max-semi-space-size=4).
  const atFirst = (text: string): [string, string] => {
    const i = text.indexOf('=')
    return i < 0 ? [text, ''] : [text.slice(0, i), text.slice(i + 1)]
  }
  const [name, rest] = atFirst(arg)
  const [dir, ...pairs] = rest.split(',')
  const env: Record<string, string> = Object.fromEntries(pairs.map(atFirst))
  // NODE_ARGS=… is not an environment variable but Node/V8 flags for that variant's process.
  const nodeArgs = splitFlags(env.NODE_ARGS)
  delete env.NODE_ARGS
  return { name, dir: resolve(dir || '.'), env, nodeArgs }
})
if (specs.length === 0) {
  console.error('usage: npm run bench:ab -- name=dir[,ENV=value…] …')
  process.exit(2)
}

const workDir = join('/tmp', `filegate-ab-${process.pid}`)
let db: BenchDatabase | undefined
let fake: FakeHandle | undefined
const variants: Variant[] = []
try {
  db = await createBenchDatabase('ab')
  fake = await startFake('sk-bench-kimi-0123456789')
  const builds = new Map<string, string>()
  for (const s of specs) {
    if (!builds.has(s.dir)) builds.set(s.dir, await buildCompiled(join(workDir, `build-${builds.size}`), s.dir))
  }
  if (process.env.BENCH_AB_SCENARIO === 'summary') await summaryAb(db, fake, builds)
  else await turnsAb(db, fake, builds)
} finally {
  for (const v of variants) await v.stop().catch(() => {})
  await fake?.stop().catch(() => {})
  await db?.drop().catch(() => {})
  await rm(workDir, { recursive: true, force: true })
}

/** Scenario 3 or 1 in turns: every variant started once, measured beside the scenario's baselines. */
async function turnsAb(db: BenchDatabase, fake: FakeHandle, builds: Map<string, string>) {
  const req = smallUploadRequest()
  const headers = process.env.BENCH_AB_HEADER === '1' ? { ...req.headers, 'x-content-sha256': req.sha256 } : req.headers
  const large = process.env.BENCH_AB_SCENARIO === '1'
  if (!large) variants.push({ name: 'bare Fastify', ...(await startBaseline()) })
  for (const s of specs) {
    const handle = await startService({
      databaseUrl: db.url,
      fake,
      spoolDir: join(workDir, 'spool'),
      env: s.env,
      nodeArgs: s.nodeArgs,
      compiledRoot: builds.get(s.dir),
    })
    const first = await request(`${handle.baseUrl}/v1/files`, { method: 'POST', headers, body: req.body })
    await first.body.dump()
    if (first.statusCode !== 201 && first.statusCode !== 200) throw new Error(`${s.name}: HTTP ${first.statusCode}`)
    variants.push({ name: s.name, ...handle })
  }
  if (large) await largeAb(variants, fake, workDir)
  else await smallAb(variants, req.body, headers)
}

/**
 * The summary of `npm run bench` per variant: scenario 3 (its Postgres-lookup ratio), scenario 7
 * (both ratios) and the peak RSS of scenario 2 and of scenario 6 with originals in a directory,
 * each variant's set run in turns (rotated every round), each against its own same-run baselines.
 * Medians per variant; a figure more than 10 % worse than the first variant's is a regression
 * (exit code 1).
 */
async function summaryAb(db: BenchDatabase, fake: FakeHandle, builds: Map<string, string>) {
  const summaryRounds = envNumber('BENCH_AB_ROUNDS', 1)
  const template = await freshRandomFile(undefined, join(workDir, 'large-template.bin'), largeFileBytes())
  const values = new Map<string, Map<string, number[]>>(specs.map((s) => [s.name, new Map()]))
  for (let r = 0; r < summaryRounds; r++) {
    for (let i = 0; i < specs.length; i++) {
      const s = specs[(i + r) % specs.length] as (typeof specs)[number]
      console.log(`round ${r + 1}: ${s.name}`)
      const ctx: BenchContext = {
        db,
        fake,
        workDir,
        log: (line) => console.log(`[${s.name}]${line}`),
        startService: (_name, env = {}) =>
          startService({
            databaseUrl: db.url,
            fake,
            spoolDir: join(workDir, 'spool'),
            env: { ...s.env, ...env },
            nodeArgs: s.nodeArgs,
            compiledRoot: builds.get(s.dir),
          }),
      }
      const dir = {
        key: 'file',
        label: 'originals in a directory',
        env: { ORIGINALS_URL: `file://${join(workDir, 'originals')}` },
        scenario: 6,
      }
      const figures = [
        ...(await smallUploads(ctx)).figures,
        ...(await clientView(ctx, template)).figures,
        await variant(ctx, template, false),
        await variant(ctx, template, true),
        await variant(ctx, template, false, false, dir),
        await variant(ctx, template, true, false, dir),
      ]
      const mine = values.get(s.name) as Map<string, number[]>
      for (const { key, figure } of summaryFigures(figures))
        mine.set(key, [...(mine.get(key) ?? []), summaryValue(figure)])
    }
  }
  const [first] = specs
  console.log(`\nsummary figure | ${specs.map((s) => s.name).join(' | ')} | vs ${first?.name}`)
  let regressions = 0
  for (const { key, label } of summaryKeys) {
    const medians = specs.map((s) => median(values.get(s.name)?.get(key) ?? []))
    if (medians.every((m) => Number.isNaN(m))) continue
    const base = medians[0] as number
    const flags = medians.slice(1).map((m, i) => {
      const worse = worseBy(key, base, m)
      if (worse > 0.1) regressions++
      return `${specs[i + 1]?.name} ${worse > 0 ? `${round(worse * 100, 1)} % worse` : `${round(-worse * 100, 1)} % better`}${worse > 0.1 ? ' REGRESSION' : ''}`
    })
    console.log(`${label} | ${medians.map((m) => round(m, 3)).join(' | ')} | ${flags.join('; ')}`)
  }
  if (regressions) {
    console.log(`\n${regressions} figure(s) more than 10 % worse than ${first?.name}`)
    process.exitCode = 1
  }
}

/** Scenario 1 in turns: direct, the bare relay, and both upload paths of every variant. */
async function largeAb(services: Variant[], fake: FakeHandle, dir: string) {
  const relay = await startRelay(`${fake.baseUrl}/files`)
  try {
    const template = await freshRandomFile(undefined, join(dir, 'large-template.bin'), largeFileBytes())
    const targets = [
      directTarget(fake),
      relayTarget(relay, fake),
      ...services.flatMap((v) => serviceTargets(v, `${v.name} `)),
    ]
    const runs = await largeRounds(targets, { template, workDir: dir, runs: rounds, log: console.log })
    const mbps = (name: string) => median(runs.mbps.get(name) ?? [])
    const per100 = largeFileBytes() / (100 * MB)
    console.log('\ntarget | median MB/s | ratio to direct | ratio to the bare relay | median CPU ms per 100 MB')
    for (const t of targets) {
      const cpu = t.pids.length ? String(Math.round(median(runs.cpuMs.get(t.name) ?? []) / per100)) : '—'
      console.log(
        `${t.name} | ${round(mbps(t.name), 1)} | ${round(mbps(t.name) / mbps('direct'), 3)} | ${round(mbps(t.name) / mbps('bare relay'), 3)} | ${cpu}`,
      )
    }
  } finally {
    await relay.stop()
  }
}

/** Scenario 3 in turns: the bare Fastify baseline and every variant. */
async function smallAb(variants: Variant[], body: Buffer, headers: Record<string, string>) {
  const results = new Map<string, LoadResult[]>(variants.map((v) => [v.name, []]))
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < variants.length; i++) {
      const v = variants[(i + r) % variants.length] as Variant
      const res = await smallUploadLoad(
        v.baseUrl,
        body,
        headers,
        { service: [v.pid], postgres: 'postgres' },
        { connections: 32, warmupMs: 1000, durationMs: seconds * 1000 },
      )
      results.get(v.name)?.push(res)
      const cpu = res.cpu?.groups ?? {}
      console.log(
        `round ${r + 1} ${v.name}: ${round(res.rps)} req/s, p99 ${round(res.p99Ms)} ms, service ${Math.round(((cpu.service ?? 0) / res.requests) * 1e6)} µs/req, postgres ${Math.round(((cpu.postgres ?? 0) / res.requests) * 1e6)} µs/req, errors ${res.errors}`,
      )
    }
  }
  const baseRps = median((results.get('bare Fastify') ?? []).map((r) => r.rps))
  console.log('\nvariant | median req/s | ratio to bare Fastify | median service µs/req | median p99 ms')
  for (const v of variants) {
    const rs = results.get(v.name) ?? []
    const us = median(rs.map((r) => ((r.cpu?.groups.service ?? 0) / r.requests) * 1e6))
    console.log(
      `${v.name} | ${round(median(rs.map((r) => r.rps)))} | ${round(median(rs.map((r) => r.rps)) / baseRps, 3)} | ${Math.round(us)} | ${round(median(rs.map((r) => r.p99Ms)))}`,
    )
  }
}
