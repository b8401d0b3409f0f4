/**
 * Scenario 6: originals kept (ORIGINALS_URL). The same 100 MB upload of new content through three
 * services in the same rounds: originals off, kept in a local directory (file:///), kept in an S3
 * server (s3rver in its own process on loopback, through the AWS SDK's multipart upload). Both
 * upload paths (store-and-forward, where the original is staged beside the spool file;
 * stream-through, where it is staged beside the provider stream). Goal: with originals ≥ 0.8 of
 * without. In the same rounds, the store alone (store-alone.ts): the bench runner sends the same
 * content straight to that s3rver in the steps filegate's S3 store takes, the bound on what any S3
 * figure can reach on this machine; each S3 figure says its ratio to it, and the notes say what the
 * s3rver process spent in CPU. Then the peak RSS of 8 concurrent 100 MB uploads with originals kept
 * (≤ 200 MB), against the same s3rver process.
 */
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { type BenchContext, envNumber, type Figure, type ScenarioResult } from '../harness/context.js'
import { type CpuSplit, cpuMeter } from '../harness/cpu.js'
import { startS3rver } from '../harness/processes.js'
import { MB, median, round } from '../harness/stats.js'
import { type LargeTarget, largeFileBytes, largeRounds, measuredAround, serviceTargets } from './large-upload.js'
import { variant } from './memory.js'
import { storeAloneTarget } from './store-alone.js'

const bucket = 'filegate-bench'
const prefix = 'originals'
// s3rver accepts any signature made with its fixed keys.
const s3rverKeys = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }

/** `target` with the CPU milliseconds `pid` spends during each of its sends appended to `into`. */
function meteringProcess(target: LargeTarget, pid: number, into: Map<string, number[]>): LargeTarget {
  return measuredAround(
    target,
    async () => {
      const meter = await cpuMeter({ process: [pid] }, 1)
      return async () => ((await meter.stop()).groups.process ?? 0) * 1000
    },
    into,
  )
}

export async function originals(ctx: BenchContext, template: string): Promise<ScenarioResult> {
  const fileRoot = join(ctx.workDir, 'originals')
  const s3Dir = join(ctx.workDir, 's3rver')
  const s3 = await startS3rver(s3Dir, bucket)
  ctx.log(`  s3rver: pid ${s3.pid}, ${s3.endpoint}`)
  const kinds = [
    { key: 'off', label: 'originals off', env: {} as Record<string, string> },
    { key: 'file', label: 'originals in a directory', env: { ORIGINALS_URL: `file://${fileRoot}` } },
    {
      key: 's3',
      label: 'originals in s3rver',
      env: {
        ORIGINALS_URL: `s3://${bucket}/${prefix}`,
        S3_ENDPOINT: s3.endpoint,
        S3_REGION: 'us-east-1',
        S3_ACCESS_KEY_ID: s3rverKeys.accessKeyId,
        S3_SECRET_ACCESS_KEY: s3rverKeys.secretAccessKey,
        S3_FORCE_PATH_STYLE: 'true',
      },
    },
  ]
  const figures: Figure[] = []
  const notes: string[] = []
  try {
    // BENCH_ORIGINALS_THROUGHPUT=0 skips the rounds (the memory variants alone), as BENCH_ORIGINALS_MEMORY=0 skips those.
    if (process.env.BENCH_ORIGINALS_THROUGHPUT !== '0') {
      const result = await throughputRounds(ctx, template, s3, kinds)
      figures.push(...result.figures)
      notes.push(...result.notes)
    }
    if (process.env.BENCH_ORIGINALS_MEMORY !== '0') {
      // BENCH_ORIGINALS_STORES=s3 (or file): the memory variants of that store only.
      const stores = (process.env.BENCH_ORIGINALS_STORES ?? 'file,s3').split(',')
      for (const kind of kinds.slice(1).filter((k) => stores.includes(k.key))) {
        for (const streamThrough of [false, true]) {
          const meter = await cpuMeter({ s3rver: [s3.pid] }, 1)
          figures.push(
            await variant(ctx, template, streamThrough, false, {
              key: kind.key,
              label: kind.label,
              env: kind.env,
              scenario: 6,
            }),
          )
          const split = await meter.stop()
          if (kind.key === 's3')
            notes.push(
              `- Scenario 6, memory, ${streamThrough ? 'stream-through' : 'store-and-forward'} in s3rver: the s3rver process used ${round(split.groups.s3rver ?? 0, 1)} CPU s in ${round(split.seconds, 1)} s (service start and the concurrent uploads).`,
            )
        }
      }
    }
  } finally {
    await s3.stop()
    await rm(fileRoot, { recursive: true, force: true })
    await rm(s3Dir, { recursive: true, force: true })
  }
  return { figures, notes }
}

type Kind = { key: string; label: string; env: Record<string, string> }

/** The rounds: the same new content through the services and straight to s3rver, in turns. */
async function throughputRounds(
  ctx: BenchContext,
  template: string,
  s3: { pid: number; endpoint: string },
  kinds: Kind[],
): Promise<ScenarioResult> {
  const bytes = largeFileBytes()
  const runs = envNumber('BENCH_ORIGINALS_RUNS', 3)
  const figures: Figure[] = []
  const notes: string[] = []
  const services = []
  // CPU ms of the s3rver process during each send of the targets that write to it (warm-up first).
  const s3rverCpuMs = new Map<string, number[]>()
  const storeAlone = storeAloneTarget({ endpoint: s3.endpoint, bucket, prefix, ...s3rverKeys })
  // The same content twice in a round would collide at its content address: in place writes under another prefix.
  const storeInPlace = storeAloneTarget(
    { endpoint: s3.endpoint, bucket, prefix: `${prefix}-in-place`, ...s3rverKeys },
    true,
  )
  let measured: Awaited<ReturnType<typeof largeRounds>>
  let roundsCpu: CpuSplit
  try {
    for (const kind of kinds) services.push(await ctx.startService(`6-originals-${kind.key}`, kind.env))
    const targets: LargeTarget[] = services.flatMap((service, i) => serviceTargets(service, `${kinds[i]?.key} `))
    targets.push(storeAlone, storeInPlace)
    const metered = targets.map((t) =>
      t.name.startsWith('s3 ') || t === storeAlone || t === storeInPlace ? meteringProcess(t, s3.pid, s3rverCpuMs) : t,
    )
    const meter = await cpuMeter({ s3rver: [s3.pid] }, 1)
    measured = await largeRounds(metered, { template, workDir: ctx.workDir, runs, log: ctx.log })
    roundsCpu = await meter.stop()
  } finally {
    storeAlone.close()
    storeInPlace.close()
    await Promise.all(services.map((s) => s.stop()))
  }
  const size = `${round(bytes / MB, 1)} MB`
  const list = (xs: number[]) => xs.map((x) => round(x, 1)).join(', ')
  const alone = measured.mbps.get(storeAlone.name) ?? []
  const inPlace = measured.mbps.get(storeInPlace.name) ?? []
  for (const path of ['store-and-forward', 'stream-through']) {
    const off = measured.mbps.get(`off ${path}`) ?? []
    // Streamed through with X-Content-SHA256, the S3 store writes in place (no copy): its own bound.
    const bound =
      path === 'stream-through'
        ? { mbps: inPlace, label: 'the store alone in place' }
        : { mbps: alone, label: 'the store alone' }
    for (const kind of kinds.slice(1)) {
      const on = measured.mbps.get(`${kind.key} ${path}`) ?? []
      const vsAlone =
        kind.key === 's3'
          ? `; ${round(median(on) / median(bound.mbps), 2)} of ${bound.label} (${round(median(bound.mbps), 1)} MB/s)`
          : ''
      figures.push({
        scenario: 6,
        name: `Large upload ${size}, ${path}, ${kind.label}`,
        value: median(on),
        unit: 'MB/s',
        baseline: { name: 'originals off', value: median(off), unit: 'MB/s' },
        ratio: median(on) / median(off),
        target: 'ratio ≥ 0.8',
        met: median(on) / median(off) >= 0.8,
        detail: `median of ${runs}; runs ${list(on)} MB/s; off ${list(off)} MB/s${vsAlone}`,
      })
    }
  }
  figures.push({
    scenario: 6,
    name: `Large upload ${size} straight to s3rver, the store alone (SDK multipart 5 MiB parts, copy, delete)`,
    value: median(alone),
    unit: 'MB/s',
    target: 'informative: the bound on the s3rver figures',
    met: null,
    detail: `median of ${runs}; runs ${list(alone)} MB/s; sent by the bench runner, no filegate in between`,
  })
  figures.push({
    scenario: 6,
    name: `Large upload ${size} straight to s3rver, the store alone in place (SDK multipart 5 MiB parts to the content address)`,
    value: median(inPlace),
    unit: 'MB/s',
    target: 'informative: the bound on the s3rver stream-through figure',
    met: null,
    detail: `median of ${runs}; runs ${list(inPlace)} MB/s; sent by the bench runner, no filegate in between`,
  })
  notes.push(scenarioNote(runs, size))
  notes.push(
    cpuNote(roundsCpu, s3rverCpuMs, runs, bytes, {
      runnerMs: measured.cpuMs.get(storeAlone.name) ?? [],
      offMs: measured.cpuMs.get('off store-and-forward') ?? [],
      s3Ms: measured.cpuMs.get('s3 store-and-forward') ?? [],
    }),
  )
  return { figures, notes }
}

function scenarioNote(runs: number, size: string): string {
  return (
    `- Scenario 6: one warm-up round, then ${runs} rounds; each round sends ${size} of new content through the three services (originals off, in a directory under the bench work dir, in s3rver on loopback), both upload paths, and twice straight to s3rver (the store alone, staged and copied, and in place), the order rotated. ` +
    's3rver runs in its own process (bench/children/s3rver.ts) over a directory under the bench work dir: it writes every part to disk, then reads and writes the whole object again for CopyObject, so it costs this machine disk and CPU twice, which a remote S3 would not, and it shares the 2 cores with filegate, the fake provider and the client. ' +
    'The store alone is the bench runner sending the same file with @aws-sdk/client-s3 as filegate’s S3 store does (multipart, 5 MiB parts, one sent while the next is read, HeadObject, CopyObject to the content address, DeleteObject of the staging key; in place, as for a body streamed through with X-Content-SHA256: the multipart upload straight to the content address, no copy): what s3rver on this machine can take with no filegate in between. The goal ratio stays against originals off; the ratio to the store alone, in each s3rver figure’s detail, says how much of the gap is the store.'
  )
}

function cpuNote(
  rounds: CpuSplit,
  perSend: Map<string, number[]>,
  runs: number,
  bytes: number,
  clients: { runnerMs: number[]; offMs: number[]; s3Ms: number[] },
): string {
  const per100 = (ms: number[]) => Math.round(median(ms) / (bytes / (100 * MB)))
  // The first send of each target is its warm-up.
  const s3rver = (name: string) => `${per100((perSend.get(name) ?? []).slice(-runs))} ms`
  const total = rounds.groups.s3rver ?? 0
  return (
    `- Scenario 6, CPU (utime + stime from /proc/<pid>/stat, median per 100 MB): the s3rver process ${s3rver('s3 store-and-forward')} for filegate store-and-forward, ${s3rver('s3 stream-through')} for stream-through, ${s3rver('store alone')} for the store alone, ${s3rver('store alone in place')} in place; ` +
    `over the warm-up and all rounds it used ${round(total, 1)} CPU s in ${round(rounds.seconds, 1)} s (${round(total / rounds.seconds, 2)} cores on average). ` +
    `The client side: filegate store-and-forward ${per100(clients.s3Ms)} ms with originals in s3rver against ${per100(clients.offMs)} ms with them off; the store alone’s SDK client in the bench runner ${per100(clients.runnerMs)} ms.`
  )
}
