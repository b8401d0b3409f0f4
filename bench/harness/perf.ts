/**
 * `BENCH_PERF=1`: Linux `perf record` attached to each service process (all of its threads),
 * sampling on the CPU clock, summarised by thread, by shared object and by symbol. It sees what
 * `node --cpu-prof` cannot: native code (OpenSSL's SHA-256, memcpy, the HTTP parser), the
 * kernel's share (socket copies, wake-ups) and V8's helper threads (parallel GC). JavaScript
 * frames show as one `[JIT]` object: pair it with BENCH_PROFILE=1 for those.
 */
import { spawn, spawnSync } from 'node:child_process'

export interface PerfRow {
  share: number
  name: string
}

export interface PerfSummary {
  samples: number
  byThread: PerfRow[]
  byObject: PerfRow[]
  topSymbols: Array<PerfRow & { object: string }>
}

/**
 * Whether `perf record` can do here what startPerf does: attach to a running process by pid
 * (installed, and allowed to attach: perf_event_paranoid, ptrace scope, container capabilities).
 * Recording a command it starts itself, `perf record -- true`, needs less and proves nothing.
 */
export function perfAvailable(): boolean {
  const target = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 10000)'], { stdio: 'ignore', detached: true })
  try {
    const probe = spawnSync(
      'perf',
      ['record', '-e', 'cpu-clock', '-p', String(target.pid), '-o', '/dev/null', '--', 'sleep', '0.2'],
      { stdio: 'ignore', timeout: 10_000 },
    )
    return probe.status === 0
  } finally {
    // Its own process group: nothing of the probe outlives it.
    if (target.pid !== undefined) process.kill(-target.pid, 'SIGKILL')
  }
}

/** Starts sampling `pid`; `stop()` ends the recording and resolves once the file is written. */
export async function startPerf(pid: number, output: string): Promise<{ stop(): Promise<void> }> {
  const child = spawn('perf', ['record', '-e', 'cpu-clock', '-F', '999', '-g', '-p', String(pid), '-o', output], {
    stdio: ['ignore', 'ignore', 'ignore'],
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  // perf attaches within a few milliseconds; a short wait keeps the first measured run in view.
  await new Promise((resolve) => setTimeout(resolve, 300))
  return {
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT')
      await exited
    },
  }
}

const rowPattern = /^\s*([\d.]+)%\s+(.*?)\s*$/

/** Rows of `perf report --stdio -g none` (comments and blank lines skipped). */
export function parsePerfReport(text: string): PerfRow[] {
  const rows: PerfRow[] = []
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const m = rowPattern.exec(line)
    if (m) rows.push({ share: Number(m[1]) / 100, name: m[2] as string })
  }
  return rows
}

/** `Samples: 3K of event 'cpu-clock'` → 3000. */
export function parseSampleCount(text: string): number {
  const m = /Samples:\s*([\d.]+)([KM]?) of event/.exec(text)
  if (!m) return 0
  return Math.round(Number(m[1]) * (m[2] === 'K' ? 1e3 : m[2] === 'M' ? 1e6 : 1))
}

function report(file: string, sort: string): string {
  const r = spawnSync(
    'perf',
    ['report', '-i', file, '--stdio', '--no-children', '-g', 'none', '--sort', sort, '--percent-limit', '0.3'],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  )
  return r.status === 0 ? r.stdout : ''
}

export function summarisePerf(file: string, top = 15): PerfSummary | undefined {
  const byObject = report(file, 'dso')
  if (!byObject) return undefined
  const symbols = parsePerfReport(report(file, 'dso,sym')).map((row) => {
    // "node  [.] sha256_block_data_order_shaext": the object, the privilege mark, the symbol.
    const m = /^(.*?)\s+\[[.kgujH]\]\s+(.*)$/.exec(row.name)
    return { share: row.share, object: m ? (m[1] as string) : '', name: m ? (m[2] as string) : row.name }
  })
  return {
    samples: parseSampleCount(byObject),
    byThread: parsePerfReport(report(file, 'comm')),
    byObject: parsePerfReport(byObject),
    topSymbols: symbols.slice(0, top),
  }
}
