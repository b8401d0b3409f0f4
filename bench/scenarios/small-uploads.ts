/**
 * Scenario 3: 10 KB uploads that are all dedup hits, at 32 connections for a fixed window after a
 * warm-up, against two baselines: bare Fastify + @fastify/multipart hashing the file part (the
 * framework limit), and the same plus one indexed Postgres lookup of the hash in the same database
 * (postgres.js, a pool of 4: what a dedup hit cannot do without). Interleaved rounds after one
 * unmeasured turn each.
 */
import { createHash, randomBytes } from 'node:crypto'
import { cpus } from 'node:os'
import { request } from 'undici'
import { bufferedForm } from '../harness/client.js'
import { type BenchContext, envNumber, type Figure, type ScenarioResult } from '../harness/context.js'
import type { CpuGroups } from '../harness/cpu.js'
import { describeSplit } from '../harness/cpu.js'
import { type LoadResult, runLoad } from '../harness/load.js'
import { benchKeys, startBaseline } from '../harness/processes.js'
import { median, round } from '../harness/stats.js'

export const describeLoad = (r: LoadResult) =>
  `${r.requests} answers, p50 ${round(r.p50Ms)} ms, p90 ${round(r.p90Ms)} ms, p99 ${round(r.p99Ms)} ms, max ${round(r.maxMs)} ms, statuses ${JSON.stringify(r.statuses)}` +
  (r.cpu ? `; CPU: ${describeSplit(r.cpu, { count: r.requests, unit: 'req' })}` : '')

/** The round with the median requests/s stands for the variant; requests, errors and statuses add up. */
export function combine(rounds: LoadResult[]): LoadResult & { rounds: number[] } {
  const byRps = [...rounds].sort((a, b) => a.rps - b.rps)
  const mid = byRps[Math.floor((byRps.length - 1) / 2)] as LoadResult
  const statuses: Record<string, number> = {}
  for (const r of rounds) for (const [k, v] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + v
  return {
    ...mid,
    rps: median(rounds.map((r) => r.rps)),
    p50Ms: median(rounds.map((r) => r.p50Ms)),
    p90Ms: median(rounds.map((r) => r.p90Ms)),
    p99Ms: median(rounds.map((r) => r.p99Ms)),
    maxMs: Math.max(...rounds.map((r) => r.maxMs)),
    requests: rounds.reduce((n, r) => n + r.requests, 0),
    errors: rounds.reduce((n, r) => n + r.errors, 0),
    statuses,
    rounds: rounds.map((r) => round(r.rps)),
  }
}

/** The one request of scenario 3 and of `npm run bench:ab`: 10 KiB, `provider=kimi` before the file. */
export function smallUploadRequest() {
  const content = randomBytes(10 * 1024)
  const form = bufferedForm([['provider', 'kimi']], content, 'small.txt')
  return {
    body: form.body,
    sha256: createHash('sha256').update(content).digest('hex'),
    headers: { authorization: `Bearer ${benchKeys.tenant}`, 'content-type': form.contentType } as Record<
      string,
      string
    >,
  }
}

/** One closed-loop turn of that request against `origin`, every answer expected 200 (dedup hits). */
export function smallUploadLoad(
  origin: string,
  body: Buffer,
  headers: Record<string, string>,
  cpu: CpuGroups,
  timing: { connections: number; warmupMs: number; durationMs: number },
): Promise<LoadResult> {
  return runLoad({ origin, path: '/v1/files', headers, body, ...timing, expectStatus: 200, cpu, cores: cpus().length })
}

export async function smallUploads(ctx: BenchContext): Promise<ScenarioResult> {
  const connections = envNumber('BENCH_SMALL_CONNECTIONS', 32)
  const warmupMs = envNumber('BENCH_SMALL_WARMUP_S', 1) * 1000
  const durationMs = envNumber('BENCH_SMALL_SECONDS', 3) * 1000
  const rounds = envNumber('BENCH_SMALL_ROUNDS', 5)
  const { body, sha256, headers } = smallUploadRequest()

  // The baseline and filegate run side by side, measured in turns (A B C, B C A, C A B): the
  // machine's speed drifts by tens of percent from one minute to the next, and in turns the drift
  // lands on every target alike. Each figure is the median of its rounds.
  const baseline = await startBaseline()
  const started: Array<{ stop(): Promise<void> }> = [baseline]
  const results: Record<'base' | 'basePg' | 'plain' | 'declared', LoadResult[]> = {
    base: [],
    basePg: [],
    plain: [],
    declared: [],
  }
  try {
    const baselinePg = await startBaseline(ctx.db.url)
    started.push(baselinePg)
    const service = await ctx.startService('3-small-uploads')
    started.push(service)
    const first = await request(`${service.baseUrl}/v1/files`, { method: 'POST', headers, body })
    const text = await first.body.text()
    if (first.statusCode !== 201) throw new Error(`first upload: HTTP ${first.statusCode}: ${text.slice(0, 300)}`)
    // A turn; the first, unmeasured one of each target runs longer (JIT, connection pools).
    const turn =
      (origin: string, hdrs: Record<string, string>, cpu: CpuGroups) =>
      (warmUp = false) =>
        smallUploadLoad(origin, body, hdrs, cpu, {
          connections,
          warmupMs: warmUp ? 2000 : warmupMs,
          durationMs: warmUp ? 1000 : durationMs,
        })
    const serviceCpu: CpuGroups = { service: [service.pid], postgres: 'postgres', 'load generator': [process.pid] }
    const turns: Array<[keyof typeof results, (warmUp?: boolean) => Promise<LoadResult>]> = [
      ['base', turn(baseline.baseUrl, headers, { baseline: [baseline.pid], 'load generator': [process.pid] })],
      [
        'basePg',
        turn(baselinePg.baseUrl, headers, {
          baseline: [baselinePg.pid],
          postgres: 'postgres',
          'load generator': [process.pid],
        }),
      ],
      ['plain', turn(service.baseUrl, headers, serviceCpu)],
      ['declared', turn(service.baseUrl, { ...headers, 'x-content-sha256': sha256 }, serviceCpu)],
    ]
    // One unmeasured turn each first (JIT, connection pools), then the measured rounds.
    for (const [, run] of turns) await run(true)
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < turns.length; i++) {
        const [kind, run] = turns[(i + r) % turns.length] as (typeof turns)[number]
        const res = await run()
        results[kind].push(res)
        ctx.log(`  round ${r + 1} ${kind}: ${round(res.rps)} req/s, p99 ${round(res.p99Ms)} ms`)
      }
    }
  } finally {
    for (const p of started.reverse()) await p.stop()
  }
  const base = combine(results.base)
  const basePg = combine(results.basePg)
  const plain = combine(results.plain)
  const declared = combine(results.declared)
  ctx.log(`  baseline: ${round(base.rps)} req/s (rounds ${base.rounds.join(', ')}), ${describeLoad(base)}`)
  ctx.log(
    `  baseline + Postgres lookup: ${round(basePg.rps)} req/s (rounds ${basePg.rounds.join(', ')}), ${describeLoad(basePg)}`,
  )
  ctx.log(`  filegate: ${round(plain.rps)} req/s (rounds ${plain.rounds.join(', ')}), ${describeLoad(plain)}`)
  ctx.log(
    `  filegate + X-Content-SHA256: ${round(declared.rps)} req/s (rounds ${declared.rounds.join(', ')}), ${describeLoad(declared)}`,
  )

  const figure = (name: string, r: LoadResult): Figure[] => [
    {
      scenario: 3,
      name: `Small uploads 10 KB, dedup hits, ${connections} connections, ${name}`,
      value: r.rps,
      unit: 'req/s',
      baseline: { name: 'bare Fastify + multipart', value: base.rps, unit: 'req/s' },
      ratio: r.rps / base.rps,
      target: 'ratio ≥ 0.40',
      met: r.rps / base.rps >= 0.4 && r.errors === 0,
      detail: `median of ${rounds} rounds (${(r as ReturnType<typeof combine>).rounds.join(', ')} req/s; baseline ${base.rounds.join(', ')}); the median round: ${describeLoad(r)}`,
    },
    {
      scenario: 3,
      name: `Small uploads p99 latency, ${name}`,
      value: r.p99Ms,
      unit: 'ms',
      baseline: { name: 'bare Fastify + multipart', value: base.p99Ms, unit: 'ms' },
      target: 'p99 ≤ 50 ms',
      met: r.p99Ms <= 50,
      detail: `p50 ${round(r.p50Ms)} ms (baseline p50 ${round(base.p50Ms)} ms)`,
    },
  ]
  // The goal of a dedup hit against what it cannot do without: the hash and one indexed lookup.
  const vsLookup = (name: string, r: LoadResult, goal: boolean): Figure => ({
    scenario: 3,
    name: `Small uploads 10 KB, dedup hits, ${connections} connections, ${name} vs bare Fastify + Postgres lookup`,
    value: r.rps,
    unit: 'req/s',
    baseline: { name: 'bare Fastify + multipart + one indexed Postgres lookup', value: basePg.rps, unit: 'req/s' },
    ratio: r.rps / basePg.rps,
    target: goal ? 'ratio ≥ 0.8' : 'informative',
    ...(goal ? { key: 'dedup-vs-lookup' } : {}),
    met: goal ? r.rps / basePg.rps >= 0.8 && r.errors === 0 && basePg.errors === 0 : null,
    detail: `baseline rounds ${basePg.rounds.join(', ')} req/s; its median round: ${describeLoad(basePg)}`,
  })
  return {
    figures: [
      ...figure('plain client (spooled)', plain),
      ...figure('with X-Content-SHA256', declared),
      vsLookup('plain client', plain, true),
      vsLookup('with X-Content-SHA256', declared, false),
    ],
    notes: [
      `- Scenario 3: closed loop, ${connections} undici Pool connections; one unmeasured 3 s turn per target, then ${rounds} rounds, each target in turn (order rotated every round), ${warmupMs / 1000} s warm-up then ${durationMs / 1000} s measured per turn; each figure is the median of its rounds. The same 10 KiB multipart body (\`provider=kimi\` then the file) for all four targets; the second baseline (bench/children/baseline-server.ts with \`BASELINE_DATABASE_URL\`) looks the hash up in filegate's table in the same database (\`select id … where tenant_id = $1 and sha256 = $2 limit 1\`, the (tenant_id, sha256) index, postgres.js with 4 connections). Baseline rounds ${base.rounds.join(', ')} req/s; its median round: ${describeLoad(base)}.`,
    ],
  }
}
