/**
 * Scenario 2: 8 concurrent large uploads of distinct content; the service's peak resident memory
 * (VmRSS sampled every 50 ms, and the kernel's own high-water mark VmHWM at the end). A fresh
 * service process per variant, so the high-water mark is this scenario's alone.
 */
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { freshRandomFile, sha256OfFile, uploadFile } from '../harness/client.js'
import { type BenchContext, envNumber, type Figure, type ScenarioResult } from '../harness/context.js'
import { benchKeys } from '../harness/processes.js'
import { readMemory, sampleRss } from '../harness/rss.js'
import { MB, round } from '../harness/stats.js'
import { largeFileBytes } from './large-upload.js'

const MiB = 1024 * 1024
const limitBytes = 200 * MB

/** Extra settings of the service (originals kept, scenario 6) and the words that name them. */
export interface MemoryExtra {
  /** A short name for the figure's summary key (`file`, `s3`). */
  key: string
  label: string
  env: Record<string, string>
  scenario: number
}

export async function variant(
  ctx: BenchContext,
  template: string,
  streamThrough: boolean,
  tsx = false,
  extra?: MemoryExtra,
) {
  const concurrency = envNumber('BENCH_MEMORY_CONCURRENCY', 8)
  const bytes = largeFileBytes()
  const label = `${streamThrough ? 'stream-through' : 'store-and-forward'}${tsx ? ', tsx loader' : ''}${extra ? `, ${extra.label}` : ''}`
  const files = await Promise.all(
    Array.from({ length: concurrency }, (_, i) =>
      freshRandomFile(template, join(ctx.workDir, `mem-${label}-${i}.bin`), bytes),
    ),
  )
  const hashes = streamThrough ? await Promise.all(files.map(sha256OfFile)) : []
  const service = await ctx.startService(
    `${extra?.scenario ?? 2}-memory-${label.replace(/[^a-z0-9-]+/g, '-')}`,
    extra?.env ?? {},
    tsx ? 'tsx' : 'service',
  )
  try {
    const idle = await readMemory(service.pid)
    const sampler = sampleRss(service.pid, 50)
    const started = Date.now()
    const results = await Promise.all(
      files.map((path, i) =>
        uploadFile(
          `${service.baseUrl}/v1/files`,
          {
            authorization: `Bearer ${benchKeys.tenant}`,
            ...(streamThrough ? { 'x-content-sha256': hashes[i] as string } : {}),
          },
          [['provider', 'kimi']],
          path,
          'bench.txt',
        ),
      ),
    )
    const seconds = (Date.now() - started) / 1000
    const sampled = sampler.stop()
    const end = await readMemory(service.pid)
    const failed = results.filter((r) => r.status !== 201)
    if (failed.length)
      throw new Error(`${failed.length} uploads failed: ${failed[0]?.status} ${failed[0]?.body.slice(0, 200)}`)
    const peak = Math.max(sampled.peakRssBytes, end.hwmBytes)
    ctx.log(
      `  ${label}: idle ${round(idle.rssBytes / MiB, 1)} MiB, peak sampled ${round(sampled.peakRssBytes / MiB, 1)} MiB, VmHWM ${round(end.hwmBytes / MiB, 1)} MiB, ${round(seconds, 1)} s`,
    )
    const figure: Figure = {
      scenario: extra?.scenario ?? 2,
      // The summary's RSS peaks: each upload path, originals off (scenario 2) and kept (6).
      ...(tsx ? {} : { key: `rss-${streamThrough ? 'stream-through' : 'store-and-forward'}-${extra?.key ?? 'off'}` }),
      name: `Memory, ${concurrency} × ${round(bytes / MB)} MB concurrent, ${label}`,
      value: peak / MB,
      unit: 'MB peak RSS',
      target: tsx ? 'informative' : 'peak ≤ 200 MB',
      met: tsx ? null : peak <= limitBytes,
      detail: `VmHWM ${round(end.hwmBytes / MB, 1)} MB, max sampled VmRSS ${round(sampled.peakRssBytes / MB, 1)} MB (${sampled.samples} samples), idle before ${round(idle.rssBytes / MB, 1)} MB; all ${concurrency} answered 201 in ${round(seconds, 1)} s (${round((concurrency * bytes) / MB / seconds, 1)} MB/s aggregate)`,
    }
    return figure
  } finally {
    await service.stop()
    await Promise.all(files.map((f) => rm(f, { force: true })))
  }
}

export async function memory(ctx: BenchContext, template: string): Promise<ScenarioResult> {
  const figures = [await variant(ctx, template, false), await variant(ctx, template, true)]
  // The same service under the tsx loader (npm run dev), to show the loader's share of resident memory.
  figures.push(await variant(ctx, template, false, true))
  return {
    figures,
    notes: [
      '- Scenario 2: MB = 10^6 bytes. The peak is the larger of VmRSS sampled every 50 ms from `/proc/<pid>/status` and VmHWM read after the uploads (the kernel’s high-water mark, which no sampling gap can miss). One fresh service process per variant. The mandated figures run the service compiled by `tsc -p tsconfig.build.json`, as `node src/server.js` (what the Docker image and `npm start` run); the tsx variant runs `node --import tsx src/server.ts` (`npm run dev`), to show the loader’s share of the resident memory.',
    ],
  }
}
