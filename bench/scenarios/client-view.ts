/**
 * Scenario 7: large uploads as a plain Node client sees them. A streaming `node:http` client sends a
 * multipart body from a file on disk (random bytes, `Content-Length`, the `provider` field first),
 * store-and-forward (no declared hash), and times each upload to the last byte of the answer:
 *
 * - filegate against the same file straight to the same fake provider, in interleaved rounds;
 * - filegate with originals kept in a local directory against filegate without (two services),
 *   in interleaved rounds of their own.
 *
 * Before each timed upload the disk is settled (`sync`, harness/client.ts), so no upload pays for
 * the writes of the one before it. The second pair's rounds also send through undici `request`, the
 * bench's client before this scenario (informative): the same services and rounds, another client,
 * so a run shows how far the client alone moves the originals ratio (docs/performance.md).
 */
import { join } from 'node:path'
import { type BenchContext, envNumber, type Figure, type ScenarioResult } from '../harness/context.js'
import { MB, median, round } from '../harness/stats.js'
import { directTarget, type LargeRuns, largeFileBytes, largeRounds, serviceTargets } from './large-upload.js'

export async function clientView(ctx: BenchContext, template: string): Promise<ScenarioResult> {
  const runs = envNumber('BENCH_CLIENT_RUNS', 3)
  const bytes = largeFileBytes()
  const originalsDir = join(ctx.workDir, 'client-view-originals')
  const off = await ctx.startService('7-client-view-off')
  let toFake: LargeRuns
  let kept: LargeRuns
  try {
    const on = await ctx.startService('7-client-view-originals', { ORIGINALS_URL: `file://${originalsDir}` })
    try {
      const [offSpool] = serviceTargets(off, 'off ', 'http')
      const [onSpool] = serviceTargets(on, 'originals ', 'http')
      const [offUndici] = serviceTargets(off, 'undici off ', 'undici')
      const [onUndici] = serviceTargets(on, 'undici originals ', 'undici')
      const rounds = { template, workDir: ctx.workDir, runs, log: ctx.log }
      ctx.log('  filegate vs straight to the fake')
      toFake = await largeRounds([directTarget(ctx.fake, 'http'), offSpool], rounds)
      ctx.log('  originals in a directory vs off')
      kept = await largeRounds([offSpool, onSpool, offUndici, onUndici], rounds)
    } finally {
      await on.stop()
    }
  } finally {
    await off.stop()
  }
  const size = `${round(bytes / MB, 1)} MB`
  const list = (xs: number[]) => xs.map((x) => round(x, 1)).join(', ')
  const direct = toFake.mbps.get('direct') ?? []
  const viaFilegate = toFake.mbps.get('off store-and-forward') ?? []
  const offRuns = kept.mbps.get('off store-and-forward') ?? []
  const onRuns = kept.mbps.get('originals store-and-forward') ?? []
  const offUndiciRuns = kept.mbps.get('undici off store-and-forward') ?? []
  const onUndiciRuns = kept.mbps.get('undici originals store-and-forward') ?? []
  const pair = (key: string, name: string, on: number[], base: number[], baseName: string, floor?: number): Figure => ({
    scenario: 7,
    ...(floor === undefined ? {} : { key }),
    name: `Large upload ${size}, ${floor === undefined ? 'undici' : 'node:http'} client, ${name}`,
    value: median(on),
    unit: 'MB/s',
    baseline: { name: baseName, value: median(base), unit: 'MB/s' },
    ratio: median(on) / median(base),
    target: floor === undefined ? 'informative: the bench client before scenario 7' : `ratio ≥ ${floor}`,
    met: floor === undefined ? null : median(on) / median(base) >= floor,
    detail: `median of ${runs}; runs ${list(on)} MB/s; ${baseName} ${list(base)} MB/s`,
  })
  return {
    figures: [
      pair(
        'store-and-forward-vs-direct',
        'store-and-forward',
        viaFilegate,
        direct,
        'straight to the fake, same client',
        0.4,
      ),
      pair(
        'originals-dir-vs-off',
        'store-and-forward, originals in a directory',
        onRuns,
        offRuns,
        'originals off, same client',
        0.8,
      ),
      pair(
        '',
        'store-and-forward, originals in a directory',
        onUndiciRuns,
        offUndiciRuns,
        'originals off, same client',
      ),
    ],
    notes: [
      `- Scenario 7: the client is \`node:http\` with \`fs.createReadStream(file).pipe(req)\` between the form's head and tail (harness/client.ts), \`Content-Length\` set, \`provider=kimi\` before the file, keep-alive; ${size} of new random content per upload, \`sync\` before each; two interleaved pairs, each one warm-up round then ${runs} rounds: filegate (originals off) and the fake straight, then filegate with \`ORIGINALS_URL=file://<work dir>\` and filegate without, each also sent by the undici client in the same rounds (informative). The services stay up across both pairs.`,
    ],
  }
}
