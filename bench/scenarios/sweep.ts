/**
 * Scenario 4: the `expired` sweep over many expired rows, each with a real file at the fake
 * provider, which answers deletes after 5 ms. Deletions/s against the bound concurrency/latency.
 */
import { cpus } from 'node:os'
import { Pool, request } from 'undici'
import { clientAgent } from '../harness/client.js'
import { type BenchContext, envNumber, type ScenarioResult } from '../harness/context.js'
import { cpuMeter, describeSplit } from '../harness/cpu.js'
import { benchKeys } from '../harness/processes.js'
import { round } from '../harness/stats.js'

export async function sweep(ctx: BenchContext): Promise<ScenarioResult> {
  const rows = envNumber('BENCH_SWEEP_ROWS', 100_000)
  const concurrency = 16
  const latencyMs = 5
  const batchSize = 500
  const bound = concurrency / (latencyMs / 1000)
  const prefix = `file-sweep-${Date.now()}-`
  const service = await ctx.startService('4-sweep', {
    CLEANUP_CONCURRENCY: String(concurrency),
    CLEANUP_BATCH_SIZE: String(batchSize),
    // The sweep answers in one request: let it run for minutes if it must.
    REQUEST_TIMEOUT_MS: '900000',
    SHUTDOWN_TIMEOUT_MS: '960000',
  })
  const { sql } = ctx.db
  const progress: Array<{ t: number; deletes: number }> = []
  try {
    await ctx.fake.seed(prefix, rows)
    const t0 = Date.now()
    await sql`
      insert into provider_file_uploads
        (tenant_id, provider, provider_file_id, purpose, filename, mime_type, bytes, sha256, status,
         created_at, updated_at, last_used_at, expires_at)
      select 'bench-sweep', 'kimi', ${prefix} || g, 'file-extract', 'sweep-' || g || '.txt', 'text/plain', 1024,
             encode(sha256(convert_to(${prefix} || g, 'UTF8')), 'hex'), 'completed',
             now() - interval '2 days', now() - interval '2 days', now() - interval '2 days', now() - interval '1 hour'
        from generate_series(1, ${rows}::int) g`
    await sql`analyze provider_file_uploads`
    ctx.log(`  seeded ${rows} expired rows and fake files in ${round((Date.now() - t0) / 1000, 1)} s`)
    await ctx.fake.set(latencyMs, ['delete'])
    const direct = await directDeletes(ctx, concurrency)
    ctx.log(
      `  direct to the fake: ${round(direct.rate)} deletes/s at ${concurrency} in flight (mean ${round(direct.meanMs, 2)} ms each)`,
    )

    const before = await ctx.fake.stats()
    const meter = await cpuMeter({ service: [service.pid], postgres: 'postgres', fake: [ctx.fake.pid] }, cpus().length)
    const started = Date.now()
    const timer = setInterval(() => {
      ctx.fake.stats().then(
        (s) => progress.push({ t: (Date.now() - started) / 1000, deletes: s.deletes - before.deletes }),
        () => {},
      )
    }, 1000)
    let report: {
      jobs?: {
        expired?: { status: string; providers: Record<string, { candidates: number; deleted: number; failed: number }> }
      }
    }
    let seconds: number
    try {
      const res = await request(`${service.baseUrl}/v1/cleanup`, {
        dispatcher: clientAgent,
        method: 'POST',
        headers: { authorization: `Bearer ${benchKeys.admin}`, 'content-type': 'application/json' },
        body: JSON.stringify({ dry_run: false, jobs: ['expired'] }),
      })
      const text = await res.body.text()
      seconds = (Date.now() - started) / 1000
      if (res.statusCode !== 200) throw new Error(`POST /v1/cleanup: HTTP ${res.statusCode}: ${text.slice(0, 300)}`)
      report = JSON.parse(text)
    } finally {
      clearInterval(timer)
      await ctx.fake.set(0, null)
    }
    const cpu = await meter.stop()
    const after = await ctx.fake.stats()
    const tally = report.jobs?.expired?.providers.kimi ?? { candidates: 0, deleted: 0, failed: 0 }
    const [left] = await sql<Array<{ live: number; pending: number }>>`
      select count(*) filter (where deleted_at is null)::int as live,
             count(*) filter (where deleted_at is not null and not provider_deleted)::int as pending
        from provider_file_uploads where tenant_id = 'bench-sweep'`
    const fakeDeletes = after.deletes - before.deletes
    const rate = tally.deleted / seconds
    ctx.log(
      `  CPU: ${describeSplit(cpu, { count: tally.deleted, unit: 'delete' })}\n  swept ${tally.deleted}/${rows} in ${round(seconds, 1)} s = ${round(rate)} deletions/s (fake saw ${fakeDeletes}, max ${after.deleteMaxInFlight} in flight)`,
    )
    // Steady rate: between 10% and 90% of the deletes, free of start-up and tail effects.
    const at = (share: number) => progress.find((p) => p.deletes >= share * rows)
    const p10 = at(0.1)
    const p90 = at(0.9)
    const steady = p10 && p90 && p90.t > p10.t ? (p90.deletes - p10.deletes) / (p90.t - p10.t) : Number.NaN
    return {
      figures: [
        {
          scenario: 4,
          name: `Sweep ${rows} expired rows, delete latency ${latencyMs} ms, concurrency ${concurrency}`,
          value: rate,
          unit: 'deletions/s',
          baseline: { name: 'bound concurrency / latency', value: bound, unit: 'deletions/s' },
          ratio: rate / bound,
          target: 'ratio ≥ 0.5',
          met: rate / bound >= 0.5 && tally.deleted === rows,
          detail: `whole sweep ${round(seconds, 1)} s; report: ${tally.candidates} candidates, ${tally.deleted} deleted, ${tally.failed} failed; fake saw ${fakeDeletes} deletes, at most ${after.deleteMaxInFlight} in flight; rows left live ${left?.live}, tombstones pending ${left?.pending}; steady rate (10%→90%) ${round(steady)} /s; CPU: ${describeSplit(cpu, { count: tally.deleted, unit: 'delete' })}`,
        },
        {
          scenario: 4,
          name: `Sweep ${rows} expired rows vs direct deletes to the fake`,
          value: rate,
          unit: 'deletions/s',
          baseline: {
            name: `bench client, ${concurrency} in flight, straight to the fake`,
            value: direct.rate,
            unit: 'deletions/s',
          },
          ratio: rate / direct.rate,
          target: 'informative',
          met: null,
          detail: `the fake's 5 ms is a setTimeout: each delete takes ${round(direct.meanMs, 2)} ms at the fake's side of the client, so the reachable bound in this run is ${round(direct.rate)} /s`,
        },
        {
          scenario: 4,
          name: `Sweep ${rows} expired rows: whole sweep duration`,
          value: seconds,
          unit: 's',
          baseline: { name: 'at the bound', value: rows / bound, unit: 's' },
          target: 'informative',
          met: null,
        },
      ],
      notes: [
        `- Scenario 4: ${rows} rows inserted with generate_series (status completed, \`expires_at\` an hour ago), each with a file seeded at the fake; \`CLEANUP_CONCURRENCY=${concurrency}\`, \`CLEANUP_BATCH_SIZE=${batchSize}\`; timed \`POST /v1/cleanup {"dry_run":false,"jobs":["expired"]}\` from request to answer. Progress (s → deletes at the fake): ${progress
          .filter((_, i) => i % 5 === 4)
          .map((p) => `${round(p.t, 0)}→${p.deletes}`)
          .join(', ')}.`,
      ],
    }
  } finally {
    await service.stop()
  }
}

/** The same fake, deletes sent straight from the bench with `concurrency` in flight for 3 s. */
async function directDeletes(ctx: BenchContext, concurrency: number): Promise<{ rate: number; meanMs: number }> {
  const prefix = `file-direct-${Date.now()}-`
  const seeded = 20_000
  await ctx.fake.seed(prefix, seeded)
  const pool = new Pool(new URL(ctx.fake.baseUrl).origin, { connections: concurrency })
  const basePath = new URL(ctx.fake.baseUrl).pathname
  let next = 1
  let done = 0
  let totalMs = 0
  const until = performance.now() + 3000
  const started = performance.now()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until && next <= seeded) {
        const id = `${prefix}${next++}`
        const t0 = performance.now()
        const res = await pool.request({
          method: 'DELETE',
          path: `${basePath}/files/${id}`,
          headers: { authorization: `Bearer ${ctx.fake.apiKey}` },
        })
        await res.body.dump()
        totalMs += performance.now() - t0
        done++
      }
    }),
  )
  const seconds = (performance.now() - started) / 1000
  await pool.close()
  return { rate: done / seconds, meanMs: totalMs / done }
}
