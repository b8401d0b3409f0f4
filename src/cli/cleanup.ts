/**
 * `filegate cleanup`: runs the sweeps now, in this process, against the configured store: the same
 * LifecycleService, leases and provider deletes as the service's schedule and POST /v1/cleanup, so it
 * works while the service is down and never races a replica (a job whose lease another holds is
 * reported skipped). Jobs run one after the other; a terminal gets a progress bar, anything else a
 * line per job.
 */
import type { Config } from '../config.js'
import {
  type CleanupJob,
  type CleanupReport,
  cleanupJobs,
  defaultJobs,
  type JobReport,
  jobTotals,
} from '../domain/cleanup.js'
import { CliError, type CliIo, exitCodes, writeJson } from './io.js'
import { openServices } from './services.js'

export interface CleanupCommandOptions {
  dryRun?: boolean
  jobs?: string
  limit?: string
  json?: boolean
  verbose?: boolean
}

export function parseJobs(raw: string | undefined): CleanupJob[] {
  if (raw === undefined) return defaultJobs
  const names = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  const unknown = names.filter((n) => !(cleanupJobs as readonly string[]).includes(n))
  if (names.length === 0 || unknown.length > 0) {
    throw new CliError(
      `filegate: --jobs takes a comma list of ${cleanupJobs.join(', ')}${unknown.length ? ` (not: ${unknown.join(', ')})` : ''}`,
      exitCodes.usage,
    )
  }
  return cleanupJobs.filter((j) => names.includes(j))
}

export function parseLimit(raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined
  const n = Number(raw)
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(n) || n < 1)
    throw new CliError('filegate: --limit takes a positive integer', exitCodes.usage)
  return n
}

const totals = jobTotals

/** One human line per job: `expired: completed, 3 candidates, 3 deleted, 0 failed (kimi 3/3/0)`. */
export function jobLine(job: string, report: JobReport, dryRun: boolean): string {
  if (report.status === 'skipped') return `${job}: skipped (${report.reason ?? 'lease held elsewhere'})`
  const t = totals(report)
  const perProvider = Object.entries(report.providers)
    .map(([p, x]) => `${p} ${x.candidates}/${x.deleted}/${x.failed}`)
    .join(', ')
  const counts = dryRun
    ? `${t.candidates} candidates (dry run)`
    : `${t.candidates} candidates, ${t.deleted} deleted, ${t.failed} failed`
  const failed = report.status === 'failed' ? ` [${report.reason ?? 'ERROR'}]` : ''
  return `${job}: ${report.status}${failed}, ${counts}${perProvider ? ` (${perProvider})` : ''}`
}

/** A one-line bar redrawn in place with \r (padded, so a shorter label leaves nothing behind). */
function progressBar(done: number, total: number, label: string, columns: number): string {
  const width = 20
  const filled = Math.round((done / total) * width)
  const line = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total} ${label}`
  return `\r${line.slice(0, columns - 1).padEnd(columns - 1)}`
}

export async function cleanupCommand(config: Config, io: CliIo, opts: CleanupCommandOptions): Promise<number> {
  const jobs = parseJobs(opts.jobs)
  const limit = parseLimit(opts.limit)
  const dryRun = opts.dryRun === true
  const services = await openServices(config, opts.verbose ? 'info' : 'warn')
  const tty = io.stderr.isTTY === true && !opts.json
  let stopped = false
  const stop = () => {
    stopped = true
    services.cleanup.stop()
    io.stderr.write('\nfilegate: stopping after the current batch (interrupt again to exit now)\n')
    process.once('SIGINT', () => process.exit(130))
  }
  process.once('SIGINT', stop)
  const report: CleanupReport = { dry_run: dryRun, started_at: new Date().toISOString(), finished_at: '', jobs: {} }
  const columns = io.stderr.columns || 80
  const bar = (done: number, label: string) => {
    if (tty) io.stderr.write(progressBar(done, jobs.length, label, columns))
  }
  try {
    for (const [i, job] of jobs.entries()) {
      if (stopped) break
      bar(i, `${job}…`)
      const one = await services.cleanup.run({ dryRun, jobs: [job], limit })
      const result = one.jobs[job] as JobReport
      report.jobs[job] = result
      if (!opts.json) {
        // The job's line takes the bar's place; the bar is drawn again below it.
        if (tty) io.stderr.write(`\r${' '.repeat(columns - 1)}\r`)
        io.stdout.write(`${jobLine(job, result, dryRun)}\n`)
      }
    }
    bar(jobs.length, 'done')
    if (tty) io.stderr.write('\n')
  } finally {
    process.removeListener('SIGINT', stop)
    await services.close()
  }
  report.finished_at = new Date().toISOString()
  if (opts.json) writeJson(io, report)
  // A job that failed, or a provider delete that did (retried later by provider_deletes), is a failure to a script.
  const failed = Object.values(report.jobs).some((r) => r.status === 'failed' || totals(r).failed > 0)
  return failed ? exitCodes.failed : exitCodes.ok
}
