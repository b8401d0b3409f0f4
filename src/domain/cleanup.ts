/**
 * The cleanup sweeps: expired, orphaned and stuck files, reconciliation with the provider's list,
 * and provider deletes still owed (docs/lifecycle.md). Each job claims its rows in batches with SKIP LOCKED and
 * tombstones them in the same statement, then deletes at the provider with bounded concurrency
 * through the one leased delete path, so each provider file is deleted exactly once whatever
 * the number of replicas. Jobs run under a per-job lease in Postgres (one replica at a time;
 * a dead holder's lease expires). Dry runs only read.
 */
import { randomUUID } from 'node:crypto'
import type { Config } from '../config.js'
import type { Metrics } from '../metrics.js'
import type { ProviderRegistry } from '../providers/registry.js'
import { inSpan } from '../spans.js'
import type { StorePort } from '../store/port.js'
import {
  acquireJobLease,
  claimSweepBatch,
  findSweepCandidates,
  findUnknownProviderFiles,
  markProviderDeletedMany,
  reconcileGoneFiles,
  releaseJobLease,
} from '../store/queries.js'
import { type DeletionDeps, deleteAtProvider } from './deletion.js'
import type { FileRow } from './file-record.js'

/** In the order they run: stuck feeds orphaned (failed rows), every job feeds provider_deletes. */
export const cleanupJobs = ['stuck', 'expired', 'orphaned', 'reconcile', 'provider_deletes'] as const
export type CleanupJob = (typeof cleanupJobs)[number]
export const defaultJobs: CleanupJob[] = ['stuck', 'expired', 'orphaned', 'provider_deletes']

export interface ProviderTally {
  candidates: number
  deleted: number
  failed: number
  candidate_ids?: string[]
}

export interface JobReport {
  status: 'completed' | 'skipped' | 'failed'
  /** Why a job was skipped or failed (lease held elsewhere, not enabled, error code). */
  reason?: string
  providers: Record<string, ProviderTally>
}

export interface CleanupReport {
  dry_run: boolean
  started_at: string
  finished_at: string
  jobs: Partial<Record<CleanupJob, JobReport>>
}

export interface CleanupOptions {
  dryRun: boolean
  jobs: CleanupJob[]
  /** At most this many candidates per job; unbounded (batch after batch) when absent. */
  limit?: number | undefined
}

interface Log {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
}

export interface CleanupDeps {
  store: StorePort
  providers: ProviderRegistry
  config: Config
  metrics: Metrics
  deletion: DeletionDeps
  log: Log
}

const dryRunIdCap = 1000
const leaseTtlSeconds = 120
const markBatch = 100

/** Runs `work` over `items` with at most `concurrency` at once. */
export async function mapBounded<T>(items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T
      await work(item)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker))
}

export class CleanupService {
  /** Identifies this process as a lease holder. */
  readonly holder = `filegate-${randomUUID()}`
  private stopping = false

  constructor(private readonly deps: CleanupDeps) {}

  /** Asks running sweeps to stop after their current batch. */
  stop(): void {
    this.stopping = true
  }

  async run(options: CleanupOptions): Promise<CleanupReport> {
    const started = new Date()
    const jobs: CleanupReport['jobs'] = {}
    for (const job of cleanupJobs.filter((j) => options.jobs.includes(j))) {
      jobs[job] = await inSpan('filegate.cleanup.job', { 'filegate.job': job }, () => this.runJob(job, options))
    }
    return { dry_run: options.dryRun, started_at: started.toISOString(), finished_at: new Date().toISOString(), jobs }
  }

  private async runJob(job: CleanupJob, options: CleanupOptions): Promise<JobReport> {
    const { store, metrics, log } = this.deps
    const leaseName = `cleanup:${job}`
    if (!options.dryRun) {
      const got = await acquireJobLease(store, leaseName, this.holder, leaseTtlSeconds)
      if (!got) {
        metrics.cleanupRuns.inc({ job, outcome: 'skipped' })
        return { status: 'skipped', reason: 'another worker holds the lease', providers: {} }
      }
    }
    const report: JobReport = { status: 'completed', providers: {} }
    const started = Date.now()
    try {
      await this.sweep(job, options, report, leaseName)
      if (!options.dryRun) {
        metrics.cleanupRuns.inc({ job, outcome: 'success' })
        metrics.cleanupLastSuccess.set({ job }, Date.now() / 1000)
      }
    } catch (err) {
      report.status = 'failed'
      const e = err as { code?: string; message?: string }
      report.reason = e.code ?? 'ERROR'
      if (!options.dryRun) metrics.cleanupRuns.inc({ job, outcome: 'failure' })
      log.warn({ job, err: { code: e.code, message: e.message } }, 'cleanup job failed')
    } finally {
      if (!options.dryRun) {
        await releaseJobLease(store, leaseName, this.holder).catch(() => {})
      }
    }
    const totals = Object.values(report.providers).reduce(
      (t, p) => ({
        candidates: t.candidates + p.candidates,
        deleted: t.deleted + p.deleted,
        failed: t.failed + p.failed,
      }),
      { candidates: 0, deleted: 0, failed: 0 },
    )
    log.info(
      { job, dry_run: options.dryRun, status: report.status, ...totals, duration_ms: Date.now() - started },
      'cleanup run',
    )
    return report
  }

  private tally(report: JobReport, provider: string): ProviderTally {
    report.providers[provider] ??= { candidates: 0, deleted: 0, failed: 0 }
    return report.providers[provider]
  }

  private noteCandidates(report: JobReport, rows: Array<{ provider: string; id: string }>, dryRun: boolean) {
    for (const row of rows) {
      const t = this.tally(report, row.provider)
      t.candidates++
      if (dryRun) {
        t.candidate_ids ??= []
        if (t.candidate_ids.length < dryRunIdCap) t.candidate_ids.push(row.id)
      }
    }
  }

  private async sweep(job: CleanupJob, options: CleanupOptions, report: JobReport, leaseName: string): Promise<void> {
    const { store, config } = this.deps
    const lc = config.cleanup
    const leaseSeconds = this.deps.deletion.leaseSeconds
    if (job === 'reconcile') return this.reconcile(options, report)

    if (options.dryRun) {
      this.noteCandidates(report, await findSweepCandidates(store, job, lc, options.limit ?? dryRunIdCap), true)
      return
    }

    let remaining = options.limit ?? Number.POSITIVE_INFINITY
    let exhausted = false
    const queue: FileRow[] = []
    // Claims the next batch (tombstoned and leased in one statement) and queues its provider deletes.
    const claimBatch = async () => {
      const batchSize = Math.min(lc.batchSize, remaining)
      // Keep the lease while batches go on (a dead worker's lease still lapses after the TTL); it
      // travels beside the claim rather than after it.
      const [batch] = await Promise.all([
        claimSweepBatch(store, job, lc, batchSize, leaseSeconds),
        acquireJobLease(store, leaseName, this.holder, leaseTtlSeconds),
      ])
      remaining -= batch.length
      if (batch.length < batchSize || remaining <= 0) exhausted = true
      this.noteCandidates(report, batch, false)
      if (job !== 'stuck') queue.push(...batch.filter((row) => !row.provider_deleted && row.provider_file_id))
    }
    if (job === 'stuck') {
      while (!exhausted && !this.stopping) await claimBatch()
      return
    }

    // Successful deletes are recorded in bulk, one round trip per markBatch rows, in the background:
    // no worker waits for a mark. A failed mark fails the sweep at its end; the rows it would have
    // marked keep their lease and are deleted again (a provider 404 counts) by provider_deletes.
    const marks: string[] = []
    let marking: Promise<void> = Promise.resolve()
    let markError: unknown
    const flushMarks = () => {
      if (marks.length === 0) return marking
      const ids = marks.splice(0)
      marking = marking
        .then(async () => {
          const groups = await markProviderDeletedMany(store, ids)
          for (const g of groups)
            this.deps.metrics.deletions.inc({ provider: g.provider, reason: g.reason }, Number(g.n))
        })
        .catch((err: unknown) => {
          markError ??= err
        })
      return marking
    }
    // Workers keep `concurrency` deletes in flight. The next batch is claimed once half of the
    // current one is left, so its claim (a statement over batchSize rows) is done before the queue
    // runs dry and no worker idles at a batch boundary. On stop, claimed rows still finish.
    const prefetchAt = Math.max(lc.concurrency, Math.floor(lc.batchSize / 2))
    let claiming: Promise<void> | undefined
    const worker = async () => {
      for (;;) {
        if (!claiming && !exhausted && !this.stopping && queue.length <= prefetchAt) {
          claiming = claimBatch().finally(() => {
            claiming = undefined
          })
        }
        const row = queue.shift()
        if (!row) {
          if (claiming) {
            await claiming
            continue
          }
          return
        }
        const { outcome } = await deleteAtProvider(this.deps.deletion, row, { alreadyClaimed: true, deferMark: true })
        const t = this.tally(report, row.provider)
        if (outcome === 'deleted' || outcome === 'already_gone') {
          t.deleted++
          marks.push(row.id)
          if (marks.length >= markBatch) void flushMarks()
        } else {
          t.failed++
        }
      }
    }
    try {
      await Promise.all(Array.from({ length: lc.concurrency }, worker))
    } finally {
      await flushMarks()
    }
    if (markError) throw markError
  }

  /**
   * Lists each configured provider's files. Files no row knows, older than the grace period, are
   * reported (and deleted only with RECONCILE_DELETE_UNKNOWN=true); live rows whose provider file
   * is gone are tombstoned `reconciled`.
   */
  private async reconcile(options: CleanupOptions, report: JobReport): Promise<void> {
    const { store, providers, config, metrics } = this.deps
    const graceMs = config.cleanup.reconcileGraceMinutes * 60_000
    for (const adapter of providers.list()) {
      const listedBefore = new Date()
      const listed: Array<{ id: string; createdAt: number }> = []
      for await (const f of adapter.listAll()) listed.push({ id: f.id, createdAt: f.createdAt })
      const ids = listed.map((f) => f.id)
      const unknown = new Set(await findUnknownProviderFiles(store, adapter.name, ids))
      const cutoff = listedBefore.getTime() - graceMs
      const stale = listed.filter((f) => unknown.has(f.id) && f.createdAt * 1000 <= cutoff)
      const limit = options.limit ?? Number.POSITIVE_INFINITY
      const chosen = stale.slice(0, Number.isFinite(limit) ? limit : undefined)
      const t = this.tally(report, adapter.name)
      t.candidates += chosen.length
      if (options.dryRun) t.candidate_ids = chosen.slice(0, dryRunIdCap).map((f) => f.id)
      if (!options.dryRun && config.cleanup.reconcileDeleteUnknown) {
        await mapBounded(chosen, config.cleanup.concurrency, async (f) => {
          try {
            await adapter.delete(f.id)
            metrics.deletions.inc({ provider: adapter.name, reason: 'reconciled' })
            t.deleted++
          } catch {
            t.failed++
          }
        })
      }
      const gone = await reconcileGoneFiles(store, {
        provider: adapter.name,
        listedIds: ids,
        listedBefore,
        apply: !options.dryRun,
        limit: Number.isFinite(limit) ? limit : 10_000,
      })
      // Rows whose provider file vanished: counted as candidates (tombstoned `reconciled` in a real run).
      this.noteCandidates(report, gone, options.dryRun)
    }
  }
}
