/**
 * A closed-loop load generator on undici's Pool: `connections` workers each keep one request in
 * flight for a warm-up and then a measured window. Requests/s counts answers that arrive inside
 * the window; latencies are those answers' request-to-last-byte times.
 */
import { Pool } from 'undici'
import { type CpuGroups, type CpuSplit, cpuMeter } from './cpu.js'
import { percentile, sortedCopy } from './stats.js'

export interface LoadOptions {
  origin: string
  path: string
  headers: Record<string, string>
  body: Buffer
  connections: number
  warmupMs: number
  durationMs: number
  /** Status counted as a success. */
  expectStatus: number
  /** Processes whose CPU use is measured over the measured window. */
  cpu?: CpuGroups
  cores?: number
}

export interface LoadResult {
  requests: number
  rps: number
  p50Ms: number
  p90Ms: number
  p99Ms: number
  maxMs: number
  errors: number
  statuses: Record<string, number>
  cpu?: CpuSplit
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const pool = new Pool(o.origin, { connections: o.connections, pipelining: 1, keepAliveTimeout: 30_000 })
  const latencies: number[] = []
  const statuses: Record<string, number> = {}
  let errors = 0
  const start = performance.now()
  const measureFrom = start + o.warmupMs
  const measureTo = measureFrom + o.durationMs
  let cpu: Promise<CpuSplit> | undefined
  const meterStarted =
    o.cpu &&
    new Promise<Awaited<ReturnType<typeof cpuMeter>>>((resolve) => {
      setTimeout(() => resolve(cpuMeter(o.cpu as CpuGroups, o.cores ?? 1)), o.warmupMs)
    })
  const meterStop = meterStarted?.then(
    (meter) =>
      new Promise<void>((resolve) => {
        setTimeout(
          () => {
            cpu = meter.stop()
            resolve()
          },
          Math.max(0, measureTo - performance.now()),
        )
      }),
  )
  const worker = async () => {
    while (performance.now() < measureTo) {
      const t0 = performance.now()
      let status = 0
      try {
        const res = await pool.request({ method: 'POST', path: o.path, headers: o.headers, body: o.body })
        await res.body.dump({ limit: 1 << 20 })
        status = res.statusCode
      } catch {
        status = -1
      }
      const t1 = performance.now()
      if (t1 < measureFrom || t1 > measureTo) continue
      statuses[status] = (statuses[status] ?? 0) + 1
      if (status !== o.expectStatus) errors++
      latencies.push(t1 - t0)
    }
  }
  await Promise.all(Array.from({ length: o.connections }, worker))
  await meterStop
  await pool.close()
  const sorted = sortedCopy(latencies)
  return {
    requests: latencies.length,
    rps: latencies.length / (o.durationMs / 1000),
    p50Ms: percentile(sorted, 50),
    p90Ms: percentile(sorted, 90),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.length ? (sorted[sorted.length - 1] as number) : Number.NaN,
    errors,
    statuses,
    ...(cpu ? { cpu: await cpu } : {}),
  }
}
