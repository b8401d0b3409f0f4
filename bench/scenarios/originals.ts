/**
 * Scenario 6: originals kept (ORIGINALS_URL). The same 100 MB upload of new content through three
 * services in the same rounds: originals off, kept in a local directory (file:///), kept in an S3
 * server (s3rver on loopback, through the AWS SDK's multipart upload). Both upload paths
 * (store-and-forward, where the original is staged beside the spool file; stream-through, where it
 * is staged beside the provider stream). Goal: with originals ≥ 0.8 of without. Then the peak RSS of
 * 8 concurrent 100 MB uploads with originals kept (≤ 200 MB).
 */
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import S3rver from 's3rver'
import { type BenchContext, envNumber, type Figure, type ScenarioResult } from '../harness/context.js'
import { MB, median, round } from '../harness/stats.js'
import { type LargeTarget, largeFileBytes, largeRounds, serviceTargets } from './large-upload.js'
import { variant } from './memory.js'

const bucket = 'filegate-bench'

async function startS3(dir: string) {
  await mkdir(dir, { recursive: true })
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir,
    configureBuckets: [{ name: bucket }],
  })
  const { port } = await server.run()
  return {
    env: {
      ORIGINALS_URL: `s3://${bucket}/originals`,
      S3_ENDPOINT: `http://127.0.0.1:${port}`,
      S3_REGION: 'us-east-1',
      S3_ACCESS_KEY_ID: 'S3RVER',
      S3_SECRET_ACCESS_KEY: 'S3RVER',
      S3_FORCE_PATH_STYLE: 'true',
    },
    stop: () => server.close(),
  }
}

export async function originals(ctx: BenchContext, template: string): Promise<ScenarioResult> {
  const bytes = largeFileBytes()
  const runs = envNumber('BENCH_ORIGINALS_RUNS', 3)
  const fileRoot = join(ctx.workDir, 'originals')
  const s3 = await startS3(join(ctx.workDir, 's3rver'))
  const kinds = [
    { key: 'off', label: 'originals off', env: {} as Record<string, string> },
    { key: 'file', label: 'originals in a directory', env: { ORIGINALS_URL: `file://${fileRoot}` } },
    { key: 's3', label: 'originals in s3rver', env: s3.env },
  ]
  const services = []
  const figures: Figure[] = []
  let measured: Awaited<ReturnType<typeof largeRounds>>
  try {
    for (const kind of kinds) services.push(await ctx.startService(`6-originals-${kind.key}`, kind.env))
    const targets: LargeTarget[] = services.flatMap((service, i) => serviceTargets(service, `${kinds[i]?.key} `))
    measured = await largeRounds(targets, { template, workDir: ctx.workDir, runs, log: ctx.log })
  } finally {
    await Promise.all(services.map((s) => s.stop()))
  }
  const size = `${round(bytes / MB, 1)} MB`
  const list = (xs: number[]) => xs.map((x) => round(x, 1)).join(', ')
  for (const path of ['store-and-forward', 'stream-through']) {
    const off = measured.mbps.get(`off ${path}`) ?? []
    for (const kind of kinds.slice(1)) {
      const on = measured.mbps.get(`${kind.key} ${path}`) ?? []
      figures.push({
        scenario: 6,
        name: `Large upload ${size}, ${path}, ${kind.label}`,
        value: median(on),
        unit: 'MB/s',
        baseline: { name: 'originals off', value: median(off), unit: 'MB/s' },
        ratio: median(on) / median(off),
        target: 'ratio ≥ 0.8',
        met: median(on) / median(off) >= 0.8,
        detail: `median of ${runs}; runs ${list(on)} MB/s; off ${list(off)} MB/s`,
      })
    }
  }
  if (process.env.BENCH_ORIGINALS_MEMORY !== '0') {
    try {
      for (const kind of kinds.slice(1)) {
        for (const streamThrough of [false, true]) {
          figures.push(
            await variant(ctx, template, streamThrough, false, { label: kind.label, env: kind.env, scenario: 6 }),
          )
        }
      }
    } finally {
      await s3.stop()
      await rm(fileRoot, { recursive: true, force: true })
    }
  } else await s3.stop()
  return {
    figures,
    notes: [
      `- Scenario 6: one warm-up round, then ${runs} rounds; each round sends ${size} of new content through the three services (originals off, in a directory under the bench work dir, in s3rver running in the bench runner process on loopback), both upload paths, the order rotated. s3rver writes every part to its own directory and copies the object on commit: it costs this machine's disk and CPU twice, which a remote S3 would not.`,
    ],
  }
}
