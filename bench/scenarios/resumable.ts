/**
 * Scenario 9: resumable uploads with directory staging (no ORIGINALS_URL: staged under
 * UPLOAD_TMP_DIR), to the fake Gemini in its own process (Gemini takes files to 2 GB; filegate sends
 * them in resumable 8 MiB chunks). In the same rounds, each with new content:
 *
 * - one 1 GB `POST /v1/files` (the same node:http client as scenario 7): the baseline;
 * - 1 GB through tus 1.0 with the real tus-js-client (the file read from disk by path; one PATCH
 *   unless BENCH_TUS_CHUNK_BYTES says otherwise);
 * - 1 GB as an OpenAI Upload on the facade with the official `openai` SDK: create, 64 MB parts one
 *   after the other, complete;
 * - 100 MB through tus-js-client in 5 MB chunks (a PATCH each).
 *
 * Goals: each 1 GB resumable upload ≥ 0.8 of the single request's MB/s and grows the service's RSS
 * by ≤ 64 MB (peak during the upload, VmHWM reset before it, minus the RSS before it); the chunked
 * 100 MB tus upload ≥ 0.5 of the single request's MB/s.
 */
import { createReadStream } from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import OpenAI from 'openai'
import * as tus from 'tus-js-client'
import { freshRandomFile, uploadFile } from '../harness/client.js'
import { type BenchContext, envNumber, type Figure, type ScenarioResult } from '../harness/context.js'
import { benchKeys, startGeminiFake } from '../harness/processes.js'
import { readMemory, resetPeak, sampleRss } from '../harness/rss.js'
import { MB, median, round } from '../harness/stats.js'
import { type LargeTarget, largeRounds, measuredAround } from './large-upload.js'

const MiB = 1024 * 1024
const rssGrowthLimit = 64 * MiB

/** tus-js-client sending `path` (read by range from disk) in PATCHes of `chunkSize` bytes. */
function tusSend(baseUrl: string, path: string, chunkSize: number): Promise<number> {
  const started = process.hrtime.bigint()
  return new Promise((resolve, reject) => {
    const upload = new tus.Upload(createReadStream(path), {
      endpoint: `${baseUrl}/v1/uploads`,
      headers: { authorization: `Bearer ${benchKeys.tenant}` },
      metadata: { filename: 'bench.pdf', provider: 'gemini' },
      chunkSize,
      retryDelays: [],
      storeFingerprintForResuming: false,
      onSuccess: ({ lastResponse }) => {
        if (!lastResponse.getHeader('filegate-file-id')) reject(new Error('tus: no Filegate-File-Id on the last PATCH'))
        else resolve(Number(process.hrtime.bigint() - started) / 1e9)
      },
      onError: reject,
    })
    upload.start()
  })
}

/** The official SDK: an Upload on the facade, parts of `partBytes` read from disk one at a time, complete. */
async function openAiSend(baseUrl: string, path: string, bytes: number, partBytes: number): Promise<number> {
  const client = new OpenAI({
    apiKey: benchKeys.tenant,
    baseURL: `${baseUrl}/providers/gemini/v1`,
    maxRetries: 0,
    timeout: 30 * 60_000,
  })
  const started = process.hrtime.bigint()
  const upload = await client.uploads.create({
    bytes,
    filename: 'bench.pdf',
    mime_type: 'application/pdf',
    purpose: 'file' as never,
  })
  const partIds: string[] = []
  const fh = await open(path, 'r')
  try {
    for (let at = 0; at < bytes; at += partBytes) {
      const buffer = Buffer.allocUnsafe(Math.min(partBytes, bytes - at))
      await fh.read(buffer, 0, buffer.length, at)
      const part = await client.uploads.parts.create(upload.id, { data: new File([buffer], `part-${partIds.length}`) })
      partIds.push(part.id)
    }
  } finally {
    await fh.close()
  }
  const done = await client.uploads.complete(upload.id, { part_ids: partIds })
  if (done.status !== 'completed' || !done.file) throw new Error(`OpenAI Upload: ${done.status}, no file`)
  return Number(process.hrtime.bigint() - started) / 1e9
}

/** The service's RSS growth over one send: the peak (sampled, and VmHWM reset before) minus the RSS before. */
const rssGrowth = (pid: number) => async () => {
  const exact = await resetPeak(pid)
  const before = await readMemory(pid)
  const sampler = sampleRss(pid, 50)
  return async () => {
    const { peakRssBytes } = sampler.stop()
    const end = await readMemory(pid)
    return Math.max(peakRssBytes, exact ? end.hwmBytes : 0) - before.rssBytes
  }
}

export async function resumable(ctx: BenchContext): Promise<ScenarioResult> {
  const bytes = envNumber('BENCH_RESUMABLE_BYTES', 1000 * MB)
  const chunkedBytes = envNumber('BENCH_TUS_CHUNKED_BYTES', 100 * MB)
  const tusChunk = envNumber('BENCH_TUS_CHUNK_BYTES', Number.POSITIVE_INFINITY)
  const smallChunk = envNumber('BENCH_TUS_SMALL_CHUNK_BYTES', 5 * MB)
  const partBytes = envNumber('BENCH_OPENAI_PART_BYTES', 64 * MiB)
  const runs = envNumber('BENCH_RESUMABLE_RUNS', 3)
  const template = await freshRandomFile(undefined, join(ctx.workDir, 'resumable-template.bin'), bytes)
  const chunkedTemplate = await freshRandomFile(undefined, join(ctx.workDir, 'resumable-chunked.bin'), chunkedBytes)
  const gemini = await startGeminiFake('gemini-bench-0123456789')
  const growth = new Map<string, number[]>()
  let measured: Awaited<ReturnType<typeof largeRounds>>
  try {
    const service = await ctx.startService('9-resumable', {
      GEMINI_API_KEY: gemini.apiKey,
      GEMINI_BASE_URL: gemini.baseUrl,
    })
    try {
      const pids = [service.pid]
      const single: LargeTarget = {
        name: 'single request',
        pids,
        unhashed: true,
        async send(file) {
          const auth = { authorization: `Bearer ${benchKeys.tenant}` }
          const r = await uploadFile(
            `${service.baseUrl}/v1/files`,
            auth,
            [['provider', 'gemini']],
            file,
            'bench.pdf',
            'http',
          )
          if (r.status !== 201) throw new Error(`POST /v1/files: HTTP ${r.status}: ${r.body.slice(0, 300)}`)
          return r.seconds
        },
      }
      const tusWhole: LargeTarget = {
        name: 'tus',
        pids,
        unhashed: true,
        send: (file) => tusSend(service.baseUrl, file, tusChunk),
      }
      const openAi: LargeTarget = {
        name: 'OpenAI Upload',
        pids,
        unhashed: true,
        send: (file) => openAiSend(service.baseUrl, file, bytes, partBytes),
      }
      const tusChunked: LargeTarget = {
        name: 'tus chunked',
        pids,
        unhashed: true,
        template: chunkedTemplate,
        send: (file) => tusSend(service.baseUrl, file, smallChunk),
      }
      const targets = [single, tusWhole, openAi, tusChunked].map((t) =>
        measuredAround(t, rssGrowth(service.pid), growth),
      )
      measured = await largeRounds(targets, { template, workDir: ctx.workDir, runs, log: ctx.log, warmUp: false })
    } finally {
      await service.stop()
    }
  } finally {
    await gemini.stop()
  }
  const list = (xs: number[]) => xs.map((x) => round(x, 1)).join(', ')
  const mbps = (name: string) => measured.mbps.get(name) ?? []
  const base = median(mbps('single request'))
  const size = (n: number) => `${round(n / MB)} MB`
  const chunkLabel = Number.isFinite(tusChunk) ? `${size(tusChunk)} PATCHes` : 'one PATCH'
  const vsSingle = (name: string, label: string, n: number, floor: number, rss: boolean): Figure[] => {
    const value = median(mbps(name))
    const grown = growth.get(name) ?? []
    const figures: Figure[] = [
      {
        scenario: 9,
        name: `Resumable upload ${size(n)}, ${label}`,
        value,
        unit: 'MB/s',
        baseline: { name: `one ${size(bytes)} POST /v1/files`, value: base, unit: 'MB/s' },
        ratio: value / base,
        target: `ratio ≥ ${floor}`,
        met: value / base >= floor,
        detail: `median of ${runs}; runs ${list(mbps(name))} MB/s; single request ${list(mbps('single request'))} MB/s`,
      },
    ]
    if (rss)
      figures.push({
        scenario: 9,
        name: `Resumable upload ${size(n)}, ${label}: service RSS growth`,
        value: Math.max(...grown) / MiB,
        unit: 'MiB',
        baseline: {
          name: 'one POST /v1/files',
          value: Math.max(...(growth.get('single request') ?? [])) / MiB,
          unit: 'MiB',
        },
        target: 'growth ≤ 64 MiB',
        met: Math.max(...grown) <= rssGrowthLimit,
        detail: `the largest of ${grown.length} uploads; each ${list(grown.map((g) => g / MiB))} MiB`,
      })
    return figures
  }
  return {
    figures: [
      ...vsSingle('tus', `tus-js-client, ${chunkLabel}`, bytes, 0.8, true),
      ...vsSingle(
        'OpenAI Upload',
        `OpenAI Upload (openai SDK, ${round(partBytes / MiB, 1)} MiB parts)`,
        bytes,
        0.8,
        true,
      ),
      ...vsSingle('tus chunked', `tus-js-client, ${size(smallChunk)} PATCHes`, chunkedBytes, 0.5, false),
    ],
    notes: [
      `- Scenario 9: one service with directory staging (UPLOAD_TMP_DIR, no ORIGINALS_URL) and the fake Gemini (bench/children/fake-gemini.ts) as the provider; ${runs} rounds, order rotated, each upload new content (no warm-up round: each upload is ${size(bytes)}). RSS growth: /proc/<pid>/clear_refs reset VmHWM before each upload; the peak (VmHWM, and VmRSS sampled every 50 ms) minus VmRSS before it. The single request's RSS growth, informative: ${list((growth.get('single request') ?? []).map((g) => g / MiB))} MiB. CPU ms of the service per upload (median): single ${Math.round(median(measured.cpuMs.get('single request') ?? []))}, tus ${Math.round(median(measured.cpuMs.get('tus') ?? []))}, OpenAI Upload ${Math.round(median(measured.cpuMs.get('OpenAI Upload') ?? []))}, tus chunked (${size(chunkedBytes)}) ${Math.round(median(measured.cpuMs.get('tus chunked') ?? []))}.`,
    ],
  }
}
