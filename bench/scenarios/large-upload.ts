/**
 * Scenario 1: one large file of new content through filegate to the fake provider, against the
 * same client sending the same file straight to the fake. Store-and-forward (no declared hash) and
 * stream-through (X-Content-SHA256, provider field first). Also through a bare Node relay that
 * hashes and pipes the body to the fake (children/relay.ts): what one more loopback hop in Node
 * costs on this machine, the floor under any forwarding service. And store-and-forward to the fake
 * Gemini (the resumable protocol, 8 MiB chunks; children/fake-gemini.ts) beside the same to the fake
 * Kimi (one multipart request), in the same rounds. Median of runs.
 */
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import {
  defaultClient,
  freshRandomFile,
  renewContent,
  settleDisk,
  sha256OfFile,
  type UploadClient,
  uploadFile,
} from '../harness/client.js'
import { type BenchContext, envNumber, type Figure, type ScenarioResult } from '../harness/context.js'
import { cpuMeter } from '../harness/cpu.js'
import { benchKeys, type FakeHandle, startGeminiFake, startRelay } from '../harness/processes.js'
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

/** One way to send a large file: a name, the process that forwards it (for its CPU), and the upload. */
export interface LargeTarget {
  name: string
  pids: number[]
  /** Uploads `file` (new content, its SHA-256 given) and returns the seconds to the whole answer. */
  send(file: string, sha256: string): Promise<number>
  /** This target's own file (another size); default the rounds' template. */
  template?: string
  /** The target never reads the SHA-256: the rounds skip hashing its file (an empty string is passed). */
  unhashed?: boolean
}

/** The same file and client straight to the fake (the baseline). */
export function directTarget(fake: FakeHandle, client = defaultClient(), name = 'direct'): LargeTarget {
  return {
    name,
    pids: [],
    async send(file) {
      const auth = { authorization: `Bearer ${fake.apiKey}` }
      const fields: Array<[string, string]> = [['purpose', 'file-extract']]
      const r = await uploadFile(`${fake.baseUrl}/files`, auth, fields, file, 'bench.txt', client)
      expectStatus('direct upload', r.status, 200, r.body)
      return r.seconds
    },
  }
}

/** Through the bare Node relay (children/relay.ts) to the fake: the hop limit. */
export function relayTarget(relay: { baseUrl: string; pid: number }, fake: FakeHandle): LargeTarget {
  return {
    name: 'bare relay',
    pids: [relay.pid],
    async send(file) {
      const auth = { authorization: `Bearer ${fake.apiKey}` }
      const r = await uploadFile(relay.baseUrl, auth, [['purpose', 'file-extract']], file, 'bench.txt')
      expectStatus('relay upload', r.status, 200, r.body)
      return r.seconds
    },
  }
}

/** Through filegate: store-and-forward (no declared hash) and stream-through (X-Content-SHA256). */
export function serviceTargets(
  service: { baseUrl: string; pid: number },
  prefix = '',
  client: UploadClient = defaultClient(),
): [LargeTarget, LargeTarget] {
  const url = `${service.baseUrl}/v1/files`
  const auth = { authorization: `Bearer ${benchKeys.tenant}` }
  const via = async (what: string, headers: Record<string, string>, file: string) => {
    const r = await uploadFile(url, headers, [['provider', 'kimi']], file, 'bench.txt', client)
    expectStatus(`filegate ${what} upload`, r.status, 201, r.body)
    return r.seconds
  }
  return [
    { name: `${prefix}store-and-forward`, pids: [service.pid], send: (file) => via('store-and-forward', auth, file) },
    {
      name: `${prefix}stream-through`,
      pids: [service.pid],
      send: (file, sha256) => via('stream-through', { ...auth, 'x-content-sha256': sha256 }, file),
    },
  ]
}

/** Through filegate to Gemini, store-and-forward: the spooled file goes up in resumable chunks. */
export function geminiTarget(service: { baseUrl: string; pid: number }): LargeTarget {
  const auth = { authorization: `Bearer ${benchKeys.tenant}` }
  return {
    name: 'gemini store-and-forward',
    pids: [service.pid],
    async send(file) {
      const r = await uploadFile(`${service.baseUrl}/v1/files`, auth, [['provider', 'gemini']], file, 'bench.pdf')
      expectStatus('filegate gemini upload', r.status, 201, r.body)
      return r.seconds
    },
  }
}

/**
 * `target` with a reading taken around each of its sends (`begin` starts one and hands back what
 * ends it: CPU ms of a process, RSS growth) appended to `into` under the target's name.
 */
export function measuredAround(
  target: LargeTarget,
  begin: () => Promise<() => Promise<number>>,
  into: Map<string, number[]>,
): LargeTarget {
  return {
    ...target,
    async send(file, sha256) {
      const end = await begin()
      const seconds = await target.send(file, sha256)
      into.set(target.name, [...(into.get(target.name) ?? []), await end()])
      return seconds
    },
  }
}

export interface LargeRuns {
  /** MB/s of each run, per target name. */
  mbps: Map<string, number[]>
  /** CPU milliseconds of the target's own processes per run (utime + stime), per target name. */
  cpuMs: Map<string, number[]>
}

/**
 * One unmeasured warm-up round (unless `warmUp` is false), then `runs` rounds; each round sends a
 * fresh file (new content, so dedup never answers) to every target, the order rotated every round
 * so that neither side always runs first (page cache, JIT, TCP warm-up) and drift in the machine
 * lands on every target alike. Each send is of the template (a target may name its own), its
 * content renewed.
 */
export async function largeRounds(
  targets: LargeTarget[],
  options: {
    template: string
    workDir: string
    runs: number
    log(line: string): void
    warmUp?: boolean
  },
): Promise<LargeRuns> {
  const out: LargeRuns = { mbps: new Map(), cpuMs: new Map() }
  for (let i = options.warmUp === false ? 0 : -1; i < options.runs; i++) {
    const line: string[] = []
    for (let s = 0; s < targets.length; s++) {
      const target = targets[(s + i + 1) % targets.length] as LargeTarget
      // New content in place: the rounds send one file at a time, and a copy would leave the whole
      // file's pages for the settle below to write out before every send.
      const file = await renewContent(target.template ?? options.template)
      const { size: bytes } = await stat(file)
      const sha256 = target.unhashed ? '' : await sha256OfFile(file)
      await settleDisk()
      const meter = await cpuMeter({ target: target.pids }, 1)
      const seconds = await target.send(file, sha256)
      const split = await meter.stop()
      if (i < 0) continue
      const mbps = bytes / MB / seconds
      out.mbps.set(target.name, [...(out.mbps.get(target.name) ?? []), mbps])
      out.cpuMs.set(target.name, [...(out.cpuMs.get(target.name) ?? []), (split.groups.target ?? 0) * 1000])
      line.push(`${target.name} ${round(mbps, 1)} MB/s`)
    }
    if (i >= 0) options.log(`  run ${i + 1}/${options.runs}: ${line.join(', ')}`)
  }
  return out
}

export async function largeUpload(ctx: BenchContext, template: string): Promise<ScenarioResult> {
  const bytes = largeFileBytes()
  const runs = envNumber('BENCH_LARGE_RUNS', 5)
  const gemini = await startGeminiFake('gemini-bench-0123456789')
  const service = await ctx.startService('1-large-upload', {
    GEMINI_API_KEY: gemini.apiKey,
    GEMINI_BASE_URL: gemini.baseUrl,
  })
  const relay = await startRelay(`${ctx.fake.baseUrl}/files`)
  let measured: LargeRuns
  try {
    const [spool, stream] = serviceTargets(service)
    const targets = [directTarget(ctx.fake), spool, stream, relayTarget(relay, ctx.fake), geminiTarget(service)]
    measured = await largeRounds(targets, { template, workDir: ctx.workDir, runs, log: ctx.log })
  } finally {
    await service.stop()
    await relay.stop()
    await gemini.stop()
  }
  const runsOf = (name: string) => measured.mbps.get(name) ?? []
  const direct = runsOf('direct')
  const spooled = runsOf('store-and-forward')
  const streamed = runsOf('stream-through')
  const relayed = runsOf('bare relay')
  const toGemini = runsOf('gemini store-and-forward')
  const g = median(toGemini)
  const cpu = (name: string) => Math.round(median(measured.cpuMs.get(name) ?? []) / (bytes / (100 * MB)))
  const d = median(direct)
  const s = median(spooled)
  const t = median(streamed)
  const r = median(relayed)
  const size = `${round(bytes / MB, 1)} MB`
  const list = (xs: number[]) => xs.map((x) => round(x, 1)).join(', ')
  // One upload path against the same file sent straight to the fake, in the same rounds.
  const vsDirect = (
    name: string,
    value: number,
    target: string,
    met: boolean | null,
    runsMbps: number[],
    extra = '',
  ): Figure => ({
    scenario: 1,
    name: `Large upload ${size}${name}`,
    value,
    unit: 'MB/s',
    baseline: { name: 'direct to fake', value: d, unit: 'MB/s' },
    ratio: value / d,
    target,
    met,
    detail: `median of ${runs}; runs ${list(runsMbps)} MB/s${extra}`,
  })
  return {
    figures: [
      vsDirect(', store-and-forward', s, 'ratio ≥ 0.40', s / d >= 0.4, spooled, `; direct ${list(direct)} MB/s`),
      vsDirect(', stream-through (X-Content-SHA256)', t, 'ratio ≥ 0.75', t / d >= 0.75, streamed),
      vsDirect(
        ' through a bare Node relay (hash + pipe, one more hop)',
        r,
        'informative: the hop limit',
        null,
        relayed,
      ),
      {
        scenario: 1,
        name: `Large upload ${size} to Gemini (resumable, 8 MiB chunks), store-and-forward`,
        value: g,
        unit: 'MB/s',
        baseline: { name: 'Kimi store-and-forward', value: s, unit: 'MB/s' },
        ratio: g / s,
        target: 'informative: beside Kimi',
        met: null,
        detail: `median of ${runs}; runs ${list(toGemini)} MB/s`,
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
      `- Scenario 1: one unmeasured warm-up round, then ${runs} runs of ${size} of new random content each, \`sync\` before each upload, every large upload of scenarios 1, 2 and 6 sent by ${defaultClient() === 'http' ? '`node:http` (a file read stream piped into the request)' : 'undici `request` (BENCH_CLIENT=undici)'}; direct = the same file and client straight to the fake ` +
        `(\`POST /v1/files\`, \`purpose=file-extract\`). Direct MB/s: ${list(direct)}; store-and-forward: ${list(spooled)}; stream-through: ${list(streamed)}; bare relay: ${list(relayed)}. ` +
        'The relay (bench/children/relay.ts) is node:http piping the request body to the fake while hashing it: no multipart parsing, no database. ' +
        `CPU per 100 MB (utime + stime, median): filegate ${cpu('store-and-forward')} ms store-and-forward, ${cpu('stream-through')} ms stream-through, ${cpu('gemini store-and-forward')} ms store-and-forward to Gemini; the relay ${cpu('bare relay')} ms. ` +
        `Gemini: the same file through filegate to the fake Gemini (start, then 8 MiB chunks, the last finalizing; the fake hashes each as it streams), MB/s ${list(toGemini)}.`,
    ],
  }
}
