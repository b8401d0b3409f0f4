/**
 * Scenario 1: one large file of new content through filegate to the fake provider, against the
 * same client sending the same file straight to the fake. Store-and-forward (no declared hash) and
 * stream-through (X-Content-SHA256, provider field first). Also through a bare Node relay that
 * hashes and pipes the body to the fake (children/relay.ts): what one more loopback hop in Node
 * costs on this machine, the floor under any forwarding service. Median of runs.
 */
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { freshRandomFile, sha256OfFile, uploadFile } from '../harness/client.js'
import { type BenchContext, envNumber, type ScenarioResult } from '../harness/context.js'
import { benchKeys, startRelay } from '../harness/processes.js'
import { MB, median, round } from '../harness/stats.js'

export const largeFileBytes = () => envNumber('BENCH_LARGE_BYTES', 100 * MB)

export async function ensureTemplate(ctx: BenchContext): Promise<string> {
  const path = join(ctx.workDir, 'large-template.bin')
  await freshRandomFile(undefined, path, largeFileBytes())
  return path
}

function expectStatus(what: string, status: number, expected: number, body: string) {
  if (status !== expected) throw new Error(`${what}: HTTP ${status}, expected ${expected}: ${body.slice(0, 300)}`)
}

export async function largeUpload(ctx: BenchContext, template: string): Promise<ScenarioResult> {
  const bytes = largeFileBytes()
  const runs = envNumber('BENCH_LARGE_RUNS', 5)
  const service = await ctx.startService('1-large-upload')
  const relay = await startRelay(`${ctx.fake.baseUrl}/files`)
  const direct: number[] = []
  const spooled: number[] = []
  const streamed: number[] = []
  const relayed: number[] = []
  const mbps = (seconds: number) => bytes / MB / seconds
  try {
    const fakeUrl = `${ctx.fake.baseUrl}/files`
    const fakeAuth = { authorization: `Bearer ${ctx.fake.apiKey}` }
    const gateUrl = `${service.baseUrl}/v1/files`
    const gateAuth = { authorization: `Bearer ${benchKeys.tenant}` }
    // One unmeasured round first: JIT, TCP windows and the page cache warm up on every path.
    for (let i = -1; i < runs; i++) {
      const a = await freshRandomFile(template, join(ctx.workDir, `large-a-${i}.bin`), bytes)
      const b = await freshRandomFile(template, join(ctx.workDir, `large-b-${i}.bin`), bytes)
      const bSha = await sha256OfFile(b)
      // Rotate the order so neither side always runs first (page cache, JIT, TCP warm-up).
      const steps = [
        async () => {
          const r = await uploadFile(fakeUrl, fakeAuth, [['purpose', 'file-extract']], a, 'bench.txt')
          expectStatus('direct upload', r.status, 200, r.body)
          direct.push(mbps(r.seconds))
        },
        async () => {
          const r = await uploadFile(gateUrl, gateAuth, [['provider', 'kimi']], a, 'bench.txt')
          expectStatus('filegate store-and-forward upload', r.status, 201, r.body)
          spooled.push(mbps(r.seconds))
        },
        async () => {
          const r = await uploadFile(
            gateUrl,
            { ...gateAuth, 'x-content-sha256': bSha },
            [['provider', 'kimi']],
            b,
            'bench.txt',
          )
          expectStatus('filegate stream-through upload', r.status, 201, r.body)
          streamed.push(mbps(r.seconds))
        },
        async () => {
          const r = await uploadFile(relay.baseUrl, fakeAuth, [['purpose', 'file-extract']], b, 'bench.txt')
          expectStatus('relay upload', r.status, 200, r.body)
          relayed.push(mbps(r.seconds))
        },
      ]
      for (let s = 0; s < steps.length; s++) await (steps[(s + i + 1) % steps.length] as () => Promise<void>)()
      if (i < 0) {
        direct.length = 0
        spooled.length = 0
        streamed.length = 0
        relayed.length = 0
        await Promise.all([rm(a, { force: true }), rm(b, { force: true })])
        continue
      }
      ctx.log(
        `  run ${i + 1}/${runs}: direct ${round(direct.at(-1) ?? 0, 1)} MB/s, store-and-forward ${round(spooled.at(-1) ?? 0, 1)} MB/s, stream-through ${round(streamed.at(-1) ?? 0, 1)} MB/s, bare relay ${round(relayed.at(-1) ?? 0, 1)} MB/s`,
      )
      await Promise.all([rm(a, { force: true }), rm(b, { force: true })])
    }
  } finally {
    await service.stop()
    await relay.stop()
  }
  const d = median(direct)
  const s = median(spooled)
  const t = median(streamed)
  const r = median(relayed)
  const size = `${round(bytes / MB, 1)} MB`
  const list = (xs: number[]) => xs.map((x) => round(x, 1)).join(', ')
  return {
    figures: [
      {
        scenario: 1,
        name: `Large upload ${size}, store-and-forward`,
        value: s,
        unit: 'MB/s',
        baseline: { name: 'direct to fake', value: d, unit: 'MB/s' },
        ratio: s / d,
        target: 'ratio ≥ 0.40',
        met: s / d >= 0.4,
        detail: `median of ${runs}; runs ${list(spooled)} MB/s; direct ${list(direct)} MB/s`,
      },
      {
        scenario: 1,
        name: `Large upload ${size}, stream-through (X-Content-SHA256)`,
        value: t,
        unit: 'MB/s',
        baseline: { name: 'direct to fake', value: d, unit: 'MB/s' },
        ratio: t / d,
        target: 'ratio ≥ 0.75',
        met: t / d >= 0.75,
        detail: `median of ${runs}; runs ${list(streamed)} MB/s`,
      },
      {
        scenario: 1,
        name: `Large upload ${size} through a bare Node relay (hash + pipe, one more hop)`,
        value: r,
        unit: 'MB/s',
        baseline: { name: 'direct to fake', value: d, unit: 'MB/s' },
        ratio: r / d,
        target: 'informative: the hop limit',
        met: null,
        detail: `median of ${runs}; runs ${list(relayed)} MB/s`,
      },
      {
        scenario: 1,
        name: `Large upload ${size}, stream-through vs the bare relay`,
        value: t,
        unit: 'MB/s',
        baseline: { name: 'bare Node relay', value: r, unit: 'MB/s' },
        ratio: t / r,
        target: 'informative',
        met: null,
      },
    ],
    notes: [
      `- Scenario 1: one unmeasured warm-up round, then ${runs} runs of ${size} of new random content each; direct = the same file and client straight to the fake ` +
        `(\`POST /v1/files\`, \`purpose=file-extract\`). Direct MB/s: ${list(direct)}; store-and-forward: ${list(spooled)}; stream-through: ${list(streamed)}; bare relay: ${list(relayed)}. ` +
        'The relay (bench/children/relay.ts) is node:http piping the request body to the fake while hashing it: no multipart parsing, no database.',
    ],
  }
}
