/**
 * Scenario 3: 10 KB uploads that are all dedup hits, at 32 connections for a fixed window after a
 * warm-up, against bare Fastify + @fastify/multipart hashing the file part (the framework limit).
 */
import { createHash, randomBytes } from 'node:crypto'
import { cpus } from 'node:os'
import { request } from 'undici'
import { bufferedForm } from '../harness/client.js'
import { type BenchContext, envNumber, type Figure, type ScenarioResult } from '../harness/context.js'
import { describeSplit } from '../harness/cpu.js'
import { type LoadResult, runLoad } from '../harness/load.js'
import { benchKeys, startBaseline } from '../harness/processes.js'
import { round } from '../harness/stats.js'

const describe = (r: LoadResult) =>
  `${r.requests} answers, p50 ${round(r.p50Ms)} ms, p90 ${round(r.p90Ms)} ms, p99 ${round(r.p99Ms)} ms, max ${round(r.maxMs)} ms, statuses ${JSON.stringify(r.statuses)}` +
  (r.cpu ? `; CPU: ${describeSplit(r.cpu, { count: r.requests, unit: 'req' })}` : '')

export async function smallUploads(ctx: BenchContext): Promise<ScenarioResult> {
  const connections = envNumber('BENCH_SMALL_CONNECTIONS', 32)
  const warmupMs = envNumber('BENCH_SMALL_WARMUP_S', 2) * 1000
  const durationMs = envNumber('BENCH_SMALL_SECONDS', 10) * 1000
  const cores = cpus().length
  const content = randomBytes(10 * 1024)
  const sha256 = createHash('sha256').update(content).digest('hex')
  const form = bufferedForm([['provider', 'kimi']], content, 'small.txt')
  const auth = { authorization: `Bearer ${benchKeys.tenant}` }
  const headers = { ...auth, 'content-type': form.contentType }

  const baseline = await startBaseline()
  let base: LoadResult
  try {
    base = await runLoad({
      origin: baseline.baseUrl,
      path: '/v1/files',
      headers,
      body: form.body,
      connections,
      warmupMs,
      durationMs,
      expectStatus: 200,
      cpu: { baseline: [baseline.pid], 'load generator': [process.pid] },
      cores,
    })
  } finally {
    await baseline.stop()
  }
  ctx.log(`  baseline: ${round(base.rps)} req/s, ${describe(base)}`)

  const service = await ctx.startService('3-small-uploads')
  let plain: LoadResult
  let declared: LoadResult
  try {
    const first = await request(`${service.baseUrl}/v1/files`, { method: 'POST', headers, body: form.body })
    const text = await first.body.text()
    if (first.statusCode !== 201) throw new Error(`first upload: HTTP ${first.statusCode}: ${text.slice(0, 300)}`)
    const load = (extra: Record<string, string>) =>
      runLoad({
        origin: service.baseUrl,
        path: '/v1/files',
        headers: { ...headers, ...extra },
        body: form.body,
        connections,
        warmupMs,
        durationMs,
        expectStatus: 200,
        cpu: { service: [service.pid], postgres: 'postgres', 'load generator': [process.pid] },
        cores,
      })
    plain = await load({})
    ctx.log(`  filegate: ${round(plain.rps)} req/s, ${describe(plain)}`)
    declared = await load({ 'x-content-sha256': sha256 })
    ctx.log(`  filegate + X-Content-SHA256: ${round(declared.rps)} req/s, ${describe(declared)}`)
  } finally {
    await service.stop()
  }

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
      detail: describe(r),
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
  return {
    figures: [...figure('plain client (spooled)', plain), ...figure('with X-Content-SHA256', declared)],
    notes: [
      `- Scenario 3: closed loop, ${connections} undici Pool connections, ${warmupMs / 1000} s warm-up then ${durationMs / 1000} s measured; the same 10 KiB multipart body (\`provider=kimi\` then the file) for all three targets. Baseline: ${describe(base)}.`,
    ],
  }
}
