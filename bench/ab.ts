/**
 * Interleaved A/B of scenario 3 (10 KB dedup hits at 32 connections): several service variants
 * (a checkout and/or extra environment each) and the bare-Fastify baseline, measured in turns
 * (A B C, B C A, …) so that drift in the machine's speed lands on every variant alike. Prints the
 * median requests/s, ratio to the baseline and service CPU per request of each.
 *
 *   npm run bench:ab -- base=/tmp/fg-base new=. new-pool4=.,DATABASE_POOL_MAX=4
 *
 *   BENCH_AB_ROUNDS (5), BENCH_AB_SECONDS (4), BENCH_AB_HEADER=1 (send X-Content-SHA256)
 *
 * A tool for trying a fix, not a record: `npm run bench` writes the figures.
 */
import { rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { request } from 'undici'
import { envNumber } from './harness/context.js'
import { type BenchDatabase, createBenchDatabase } from './harness/db.js'
import type { LoadResult } from './harness/load.js'
import { buildCompiled, type FakeHandle, startBaseline, startFake, startService } from './harness/processes.js'
import { median, round } from './harness/stats.js'
import { smallUploadLoad, smallUploadRequest } from './scenarios/small-uploads.js'

interface Variant {
  name: string
  baseUrl: string
  pid: number
  stop(): Promise<void>
}

const rounds = envNumber('BENCH_AB_ROUNDS', 5)
const seconds = envNumber('BENCH_AB_SECONDS', 4)
const specs = process.argv.slice(2).map((arg) => {
  const [name, rest = '.'] = arg.split('=', 2) as [string, string?]
  const [dir, ...pairs] = (arg.slice(name.length + 1) || rest).split(',')
  const env: Record<string, string> = Object.fromEntries(pairs.map((p) => p.split('=', 2) as [string, string]))
  // NODE_ARGS=… is not an environment variable but Node/V8 flags for that variant's process.
  const nodeArgs = (env.NODE_ARGS ?? '').split(/\s+/).filter(Boolean)
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
  const req = smallUploadRequest()
  const headers = process.env.BENCH_AB_HEADER === '1' ? { ...req.headers, 'x-content-sha256': req.sha256 } : req.headers
  const base = await startBaseline()
  variants.push({ name: 'bare Fastify', ...base })
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
  const results = new Map<string, LoadResult[]>(variants.map((v) => [v.name, []]))
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < variants.length; i++) {
      const v = variants[(i + r) % variants.length] as Variant
      const res = await smallUploadLoad(
        v.baseUrl,
        req.body,
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
} finally {
  for (const v of variants) await v.stop().catch(() => {})
  await fake?.stop().catch(() => {})
  await db?.drop().catch(() => {})
  await rm(workDir, { recursive: true, force: true })
}
