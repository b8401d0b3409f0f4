/**
 * `npm run bench`: the scenarios against filegate running as its own process on a
 * fresh Postgres database, with the fake Kimi provider in another process, each figure measured
 * against its baseline in the same run. Prints a table and writes bench/RESULTS.md (a partial run,
 * with BENCH_SCENARIOS, writes bench/RESULTS.partial.md instead).
 *
 *   BENCH_SCENARIOS=1,3   run only these scenarios (1 large upload, 2 memory, 3 small uploads,
 *                         4 sweep, 5 dedup lookup, 6 originals kept, 7 a node:http client's view,
 *                         8 credentials, 9 resumable uploads); default all
 *   BENCH_SERVICE_NODE_ARGS  extra Node flags for every service process, e.g.
 *                         "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile it (docs/performance.md)
 *   BENCH_LARGE_BYTES, BENCH_LARGE_RUNS, BENCH_SMALL_SECONDS, BENCH_SWEEP_ROWS,
 *   BENCH_DEDUP_ROWS=100000,1000000, BENCH_DEDUP_CALLS, BENCH_CLIENT_RUNS, BENCH_ACCESS_ROUNDS,
 *   BENCH_RESUMABLE_BYTES, BENCH_TUS_CHUNKED_BYTES, BENCH_RESUMABLE_RUNS, …   sizes, for quick runs
 *   (every one in docs/performance.md); BENCH_QUICK=1 sets small ones for all that are unset
 */
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { BenchContext, Figure } from './harness/context.js'
import { type BenchDatabase, createBenchDatabase } from './harness/db.js'
import { describeMachine } from './harness/machine.js'
import {
  benchDir,
  buildCompiled,
  type FakeHandle,
  repoRoot,
  serviceRoot,
  startFake,
  startService,
} from './harness/processes.js'
import { quickSettings } from './quick.js'
import { consoleSummary, consoleTable, resultsMarkdown } from './report.js'
import { access } from './scenarios/access.js'
import { clientView } from './scenarios/client-view.js'
import { dedupLookup } from './scenarios/dedup-lookup.js'
import { ensureTemplate, largeUpload } from './scenarios/large-upload.js'
import { memory } from './scenarios/memory.js'
import { originals } from './scenarios/originals.js'
import { resumable } from './scenarios/resumable.js'
import { smallUploads } from './scenarios/small-uploads.js'
import { sweep } from './scenarios/sweep.js'

const log = (message: string) => process.stdout.write(`${message}\n`)
const quick = quickSettings()
const allScenarios = [1, 2, 3, 4, 5, 6, 7, 8, 9]
const selected = (process.env.BENCH_SCENARIOS ?? '')
  .split(',')
  .map((s) => Number(s.trim()))
  .filter((n) => allScenarios.includes(n))
const scenarios = selected.length ? [...new Set(selected)].sort() : allScenarios
const benchVars = Object.entries(process.env)
  .filter(([k]) => k.startsWith('BENCH_'))
  .map(([k, v]) => `${k}=${v}`)
const command = [...benchVars, 'npm run bench'].join(' ')

const loadAverage = async () =>
  (await readFile('/proc/loadavg', 'utf8').catch(() => '? ? ?')).split(' ').slice(0, 3).join(' ')

async function main() {
  const startedAt = Date.now()
  const loadAtStart = await loadAverage()
  const workDir = await mkdtemp(join(tmpdir(), 'filegate-bench-'))
  const figures: Figure[] = []
  const notes: string[] = []
  const failures: string[] = []
  const needsService = scenarios.some((s) => s !== 5)
  let db: BenchDatabase | undefined
  let fake: FakeHandle | undefined
  const cleanup = async () => {
    await fake?.stop().catch(() => {})
    await db?.drop().catch((err) => log(`could not drop ${db?.name}: ${(err as Error).message}`))
    await rm(workDir, { recursive: true, force: true })
  }
  process.once('SIGINT', () => {
    log('interrupted: cleaning up')
    void cleanup().finally(() => process.exit(130))
  })

  try {
    db = await createBenchDatabase('main')
    const [{ version }] = (await db.sql`select version()`) as unknown as [{ version: string }]
    const machine = describeMachine(version.split(' on ')[0] ?? version)
    log(`filegate bench: ${machine.cpuModel}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node}`)
    if (serviceRoot !== repoRoot) log(`service under test started from ${serviceRoot} (BENCH_SERVICE_DIR)`)
    log(`load average ${loadAtStart}`)
    log(`scenarios ${scenarios.join(',')}; work dir ${workDir}`)
    if (quick.length) log(`BENCH_QUICK: ${quick.join(' ')} (sizes that prove the scenarios run; not figures)`)
    // The service runs compiled, as in production (Dockerfile, npm start); BENCH_TSX=1 runs it
    // through the tsx loader instead.
    const compiledRoot =
      needsService && process.env.BENCH_TSX !== '1' ? await buildCompiled(join(workDir, 'compiled')) : undefined
    const context: BenchContext = {
      db,
      fake: undefined as unknown as FakeHandle,
      workDir,
      async startService(name, env = {}, runtime = 'service') {
        const handle = await startService({
          databaseUrl: context.db.url,
          fake: context.fake,
          spoolDir: join(workDir, 'spool'),
          env,
          compiledRoot: runtime === 'tsx' ? undefined : compiledRoot,
        })
        // The pid, for a profiler attached by hand (`perf record -p`, docs/performance.md).
        log(`  service ${name}: pid ${handle.pid}`)
        return handle
      },
      log,
    }
    let template: string | undefined
    const largeTemplate = async () => {
      template ??= await ensureTemplate(context)
      return template
    }
    const runners: Record<number, [string, () => Promise<{ figures: Figure[]; notes: string[] }>]> = {
      1: ['large upload', async () => largeUpload(context, await largeTemplate())],
      2: ['memory', async () => memory(context, await largeTemplate())],
      3: ['small uploads', () => smallUploads(context)],
      4: ['sweep', () => sweep(context)],
      5: ['dedup lookup', () => dedupLookup(context)],
      6: ['originals', async () => originals(context, await largeTemplate())],
      7: ["a node:http client's view", async () => clientView(context, await largeTemplate())],
      8: ['credentials', () => access(context)],
      9: ['resumable uploads', () => resumable(context)],
    }
    for (const n of scenarios) {
      const [label, run] = runners[n] as [string, () => Promise<{ figures: Figure[]; notes: string[] }>]
      const t0 = Date.now()
      log(`\n[${n}] ${label}`)
      try {
        // Each scenario starts on an empty account: its own database and its own fake provider, so
        // the files an earlier scenario stored count against no quota of a later one (the 100 MB
        // uploads of scenarios 1-2 once filled the bench tenant's share of the Kimi account).
        await fake?.stop()
        fake = undefined
        await db.drop()
        db = await createBenchDatabase(`s${n}`)
        context.db = db
        if (n !== 5) {
          fake = await startFake('sk-bench-kimi-0123456789')
          context.fake = fake
        }
        const result = await run()
        figures.push(...result.figures)
        notes.push(...result.notes)
      } catch (err) {
        const message = `scenario ${n} (${label}): ${(err as Error).stack ?? String(err)}`
        const first = message.split('\n')[0] as string
        failures.push(first)
        // A scenario that cannot run is a target not met: it stays in the table.
        figures.push({
          scenario: n,
          name: `${label}: did not complete`,
          value: Number.NaN,
          unit: '',
          target: 'runs to completion',
          met: false,
          detail: first.slice(0, 400),
        })
        log(`  FAILED ${message}`)
      }
      log(`  (${Math.round((Date.now() - t0) / 1000)} s)`)
    }

    log(`\n${consoleTable(figures)}`)
    const summary = consoleSummary(figures)
    if (summary) log(`\n${summary}`)
    const boundsFile = join(benchDir, 'bounds.md')
    const bounds = existsSync(boundsFile) ? await readFile(boundsFile, 'utf8') : '(bench/bounds.md is missing)'
    const markdown = resultsMarkdown({
      machine,
      command,
      serviceRoot: serviceRoot === repoRoot ? undefined : serviceRoot,
      scenarios,
      figures,
      failures,
      notes,
      bounds,
      totalSeconds: (Date.now() - startedAt) / 1000,
      loadAverage: { start: loadAtStart, end: await loadAverage() },
    })
    // Only a full run of every scenario is the record; a partial or quick run must not replace it.
    const resultsFile =
      process.env.BENCH_SCENARIOS || process.env.BENCH_QUICK === '1' ? 'RESULTS.partial.md' : 'RESULTS.md'
    await writeFile(join(benchDir, resultsFile), markdown)
    log(`\nwrote bench/${resultsFile} (${Math.round((Date.now() - startedAt) / 1000)} s in all)`)
    if (failures.length) process.exitCode = 1
  } finally {
    await cleanup()
  }
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
