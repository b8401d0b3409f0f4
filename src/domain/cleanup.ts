/**
 * The cleanup sweeps: expired, orphaned and stuck files, reconciliation with the provider's list,
 * and provider deletes still owed (docs/lifecycle.md). Each job claims its rows in batches with
 * SKIP LOCKED and tombstones them in the same statement, then deletes at the provider with
 * bounded concurrency through the one leased delete path (sweep-batches.ts), so each provider
 * file is deleted exactly once whatever the number of replicas. Jobs run under a per-job lease in Postgres (one replica at a time;
 * a dead holder's lease expires). Dry runs only read.
 */
import { randomUUID } from 'node:crypto'
import { currentAudit } from '../audit-context.js'
import type { Config } from '../config.js'
import type { Metrics } from '../metrics.js'
import type { OriginalsStore } from '../originals/index.js'
import type { ProviderRegistry } from '../providers/registry.js'
import { inSpan } from '../spans.js'
import type { StorePort } from '../store/port.js'
import {
  acquireJobLease,
  countAuditPurgeCandidates,
  findSweepCandidates,
  findUnknownProviderFiles,
  purgeAuditEvents,
  reconcileGoneFiles,
  reconcileResults,
  recordReconcileResult,
  releaseJobLease,
} from '../store/queries.js'
import { recordCleanupRun } from './audit.js'
import { type CleanupJob, cleanupJobs } from './cleanup-jobs.js'
import type { DeletionDeps } from './deletion.js'
import type { FileRow } from './file-record.js'
import type { Healer } from './heal.js'
import { OriginalsSweep } from './originals-sweep.js'
import type { ResumableUploads } from './resumable.js'
import { BatchSweep, dryRunIdCap, mapBounded, noteCandidates, type ProviderTally, tally } from './sweep-batches.js'

export { type CleanupJob, cleanupJobs, defaultJobs, jobsByDefault, scheduledJobs } from './cleanup-jobs.js'
export type { ProviderTally } from './sweep-batches.js'
export { mapBounded } from './sweep-batches.js'

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
  /** Told as each job starts (the schedule names the job an overrun caught). */
  onJob?: ((job: CleanupJob) => void) | undefined
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
  /** ORIGINALS_URL's store: the `originals` job's subject, and what reconcile heals from. */
  originals?: OriginalsStore | undefined
  /** Heals rows whose provider copy vanished, when their original is kept (reconcile). */
  healer?: Healer | undefined
  /** Resumable uploads: the `resumable` job expires them and removes their staged bytes. */
  resumable?: ResumableUploads | undefined
}

const leaseTtlSeconds = 120
/**
 * A claimed original delete holds its original this long unless its run renews it (every third of
 * it): long beside one removal, short enough that claims a failed run could not let go of (the
 * database unreachable) are free again within a few sweeps.
 */
const originalDeleteLeaseSeconds = 30

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
      options.onJob?.(job)
      jobs[job] = await inSpan('filegate.cleanup.job', { 'filegate.job': job }, () => this.runJob(job, options))
    }
    const report = {
      dry_run: options.dryRun,
      started_at: started.toISOString(),
      finished_at: new Date().toISOString(),
      jobs,
    }
    // A run someone asked for is recorded; the schedule's own runs are recorded by what they change.
    if (!options.dryRun && currentAudit().actor !== 'system') await recordCleanupRun(this.deps.store, runDetail(report))
    return report
  }

  private async runJob(job: CleanupJob, options: CleanupOptions): Promise<JobReport> {
    const { store, metrics, log } = this.deps
    const leaseName = `cleanup:${job}`
    if (job === 'originals' && !this.deps.originals) {
      return { status: 'skipped', reason: 'originals are not kept (ORIGINALS_URL is unset)', providers: {} }
    }
    if (!options.dryRun) {
      const got = await acquireJobLease(store, leaseName, this.holder, leaseTtlSeconds)
      if (!got) {
        metrics.cleanupRuns.inc({ job, outcome: 'skipped' })
        return { status: 'skipped', reason: 'another worker holds the lease', providers: {} }
      }
    }
    const report: JobReport = { status: 'completed', providers: {} }
    const started = Date.now()
    // The job lease is renewed while the job runs, also through a long provider listing (reconcile).
    const heartbeat = options.dryRun
      ? undefined
      : setInterval(
          () => void acquireJobLease(store, leaseName, this.holder, leaseTtlSeconds).catch(() => undefined),
          (leaseTtlSeconds * 1000) / 3,
        )
    heartbeat?.unref()
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
      clearInterval(heartbeat)
      if (!options.dryRun) {
        await releaseJobLease(store, leaseName, this.holder).catch(() => {})
      }
    }
    const totals = jobTotals(report)
    log.info(
      { job, dry_run: options.dryRun, status: report.status, ...totals, duration_ms: Date.now() - started },
      'cleanup run',
    )
    return report
  }

  private async sweep(job: CleanupJob, options: CleanupOptions, report: JobReport, leaseName: string): Promise<void> {
    if (job === 'reconcile') return this.reconcile(options, report)
    if (job === 'originals') return this.sweepOriginals(options, report, leaseName)
    if (job === 'resumable') return this.sweepResumable(options, report, leaseName)
    if (job === 'audit') return this.sweepAudit(options, report, leaseName)
    const { store, config, metrics, deletion } = this.deps
    if (options.dryRun) {
      const candidates = await findSweepCandidates(store, job, config.cleanup, options.limit ?? dryRunIdCap)
      noteCandidates(report.providers, candidates, true)
      return
    }
    await new BatchSweep({
      store,
      metrics,
      deletion,
      job,
      settings: config.cleanup,
      limit: options.limit,
      tallies: report.providers,
      renewLease: () => acquireJobLease(store, leaseName, this.holder, leaseTtlSeconds),
      stopping: () => this.stopping,
    }).run()
  }

  private sweepOriginals(options: CleanupOptions, report: JobReport, leaseName: string): Promise<void> {
    const { store, config, originals, log } = this.deps
    return new OriginalsSweep(
      {
        store,
        originals: originals as OriginalsStore,
        graceMinutes: config.originals?.graceMinutes ?? 60,
        inFlightMs: config.timeouts.requestMs + config.timeouts.uploadMs,
        batchSize: config.cleanup.batchSize,
        concurrency: config.cleanup.concurrency,
        leaseSeconds: originalDeleteLeaseSeconds,
        renewLease: () => acquireJobLease(store, leaseName, this.holder, leaseTtlSeconds),
        stopping: () => this.stopping,
        warn: (obj, msg) => log.warn(obj, msg),
      },
      options,
    ).run(report.providers)
  }

  /** Expired resumable uploads, and the staged bytes and rows of settled ones (tallied per protocol). */
  private async sweepResumable(options: CleanupOptions, report: JobReport, leaseName: string): Promise<void> {
    const { store, config, resumable } = this.deps
    if (!resumable) return
    await resumable.sweep(
      {
        dryRun: options.dryRun,
        limit: options.limit,
        batchSize: config.cleanup.batchSize,
        renewLease: () => acquireJobLease(store, leaseName, this.holder, leaseTtlSeconds),
      },
      (protocol) => tally(report.providers, protocol),
    )
  }

  /** Removes audit events older than AUDIT_RETENTION_DAYS, a batch at a time (reported as `audit_events`). */
  private async sweepAudit(options: CleanupOptions, report: JobReport, leaseName: string): Promise<void> {
    const { store, config } = this.deps
    const days = config.cleanup.auditRetentionDays
    const t = tally(report.providers, 'audit_events')
    if (options.dryRun) {
      t.candidates = Math.min(
        Number(await countAuditPurgeCandidates(store, days)),
        options.limit ?? Number.POSITIVE_INFINITY,
      )
      return
    }
    let left = options.limit ?? Number.POSITIVE_INFINITY
    while (left > 0 && !this.stopping) {
      const batch = Math.min(config.cleanup.batchSize, left)
      const removed = Number(await purgeAuditEvents(store, days, batch))
      t.candidates += removed
      t.deleted += removed
      left -= removed
      if (removed < batch) return
      await acquireJobLease(store, leaseName, this.holder, leaseTtlSeconds)
    }
  }

  /**
   * Lists each configured provider's files. Files no row knows, older than the grace period, are
   * reported (and deleted only with RECONCILE_DELETE_UNKNOWN=true); live rows whose provider file
   * is gone are tombstoned `reconciled`, or healed from their originals when those are kept.
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
      const t = tally(report.providers, adapter.name)
      t.candidates += chosen.length
      if (options.dryRun) t.candidate_ids = chosen.slice(0, dryRunIdCap).map((f) => f.id)
      let deleted = 0
      if (!options.dryRun && config.cleanup.reconcileDeleteUnknown) {
        await mapBounded(chosen, config.cleanup.concurrency, async (f) => {
          try {
            await adapter.delete(f.id)
            metrics.deletions.inc({ provider: adapter.name, reason: 'reconciled' })
            t.deleted++
            deleted++
          } catch {
            t.failed++
          }
        })
      }
      // filegate_provider_unknown_files: what a real run leaves there, kept in the database so that
      // every replica shows the last run's findings, whichever replica ran it.
      if (!options.dryRun) {
        const left = stale.length - deleted
        await recordReconcileResult(store, adapter.name, left)
        metrics.providerUnknownFiles.set({ provider: adapter.name }, left)
      }
      const gone = (apply: boolean) =>
        reconcileGoneFiles(store, {
          provider: adapter.name,
          listedIds: ids,
          listedBefore,
          apply,
          limit: Number.isFinite(limit) ? limit : 10_000,
          keepOriginalStored: this.heals(),
        })
      // With originals kept, the rows that have one are left live by the tombstoning and healed
      // instead: the read-only listing names them (with original_stored).
      const toHeal = !options.dryRun && this.heals() ? (await gone(false)).filter((row) => row.original_stored) : []
      // Rows whose provider file vanished: counted as candidates (tombstoned `reconciled` in a real run).
      noteCandidates(report.providers, await gone(!options.dryRun), options.dryRun)
      noteCandidates(report.providers, toHeal, false)
      await this.healVanished(toHeal, t)
    }
  }

  /** Whether reconcile heals from originals instead of tombstoning. */
  private heals(): boolean {
    return this.deps.originals !== undefined && this.deps.healer !== undefined
  }

  /**
   * The rows reconcile left live because their original is kept go through the same heal as
   * POST /v1/files/{id}/ensure (which checks the provider again first), a few at a time.
   */
  private async healVanished(gone: FileRow[], t: ProviderTally): Promise<void> {
    const healer = this.deps.healer as Healer
    if (gone.length > 0) t.healed ??= 0
    await mapBounded(gone, this.deps.config.cleanup.concurrency, async (row) => {
      try {
        // Present again (a heal elsewhere was quicker) or tombstoned without its original: nothing to count.
        if ((await healer.heal(row.tenant_id, row.id)).outcome === 'healed') t.healed = (t.healed ?? 0) + 1
      } catch (err) {
        t.failed++
        this.deps.log.warn({ id: row.id, err: { code: (err as { code?: string }).code } }, 'reconcile heal failed')
      }
    })
  }
}

/**
 * Sets filegate_provider_unknown_files from the last reconcile of each configured provider (called
 * on scrape); a provider never reconciled has no series.
 */
export async function refreshUnknownFilesGauge(
  store: StorePort,
  providers: ProviderRegistry,
  metrics: Metrics,
): Promise<void> {
  const results = await reconcileResults(store)
  for (const adapter of providers.list()) {
    const r = results.find((x) => x.provider === adapter.name)
    if (r) metrics.providerUnknownFiles.set({ provider: adapter.name }, Number(r.unknown_files))
  }
}

/** A job's candidates, deletes and failures over all its providers. */
export const jobTotals = (report: JobReport) =>
  Object.values(report.providers).reduce(
    (t, p) => ({
      candidates: t.candidates + p.candidates,
      deleted: t.deleted + p.deleted,
      failed: t.failed + p.failed,
    }),
    { candidates: 0, deleted: 0, failed: 0 },
  )

/** What a cleanup run records in the audit: each job's status and totals. */
function runDetail(report: CleanupReport): Record<string, unknown> {
  const jobs: Record<string, unknown> = {}
  for (const [job, r] of Object.entries(report.jobs)) jobs[job] = { status: r.status, ...jobTotals(r) }
  return { jobs }
}
