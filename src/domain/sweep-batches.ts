/**
 * One sweep job's real run: claims its rows batch by batch (tombstoned and leased in the same
 * statement), deletes their provider files with bounded concurrency through the one leased
 * delete path, and records the successes in bulk.
 */
import type { Metrics } from '../metrics.js'
import type { StorePort } from '../store/port.js'
import { claimSweepBatch, markProviderDeletedMany, type SweepJob, type SweepSettings } from '../store/queries.js'
import { type DeletionDeps, deleteAtProvider } from './deletion.js'
import type { FileRow } from './file-record.js'

export interface ProviderTally {
  candidates: number
  deleted: number
  failed: number
  /** Reconcile only: rows whose provider copy vanished, uploaded again from their originals. */
  healed?: number
  candidate_ids?: string[]
}

/** What a job found and did, per provider. */
export type Tallies = Record<string, ProviderTally>

/** At most this many candidate ids per provider in a dry run's report. */
export const dryRunIdCap = 1000
/** Successful deletes recorded per round trip. */
const markBatch = 100

export function tally(tallies: Tallies, provider: string): ProviderTally {
  tallies[provider] ??= { candidates: 0, deleted: 0, failed: 0 }
  return tallies[provider]
}

/** Counts `rows` as candidates; a dry run also lists their ids (up to dryRunIdCap). */
export function noteCandidates(tallies: Tallies, rows: Array<{ provider: string; id: string }>, dryRun: boolean) {
  for (const row of rows) {
    const t = tally(tallies, row.provider)
    t.candidates++
    if (dryRun) {
      t.candidate_ids ??= []
      if (t.candidate_ids.length < dryRunIdCap) t.candidate_ids.push(row.id)
    }
  }
}

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

export interface BatchSweepOptions {
  store: StorePort
  metrics: Metrics
  deletion: DeletionDeps
  job: SweepJob
  settings: SweepSettings & { batchSize: number; concurrency: number }
  /** At most this many rows; unbounded (batch after batch) when absent. */
  limit: number | undefined
  tallies: Tallies
  /** Keeps the job's lease while batches go on (a dead worker's lease still lapses after its TTL). */
  renewLease: () => Promise<unknown>
  /** True once the service was asked to stop: no further batch is claimed. */
  stopping: () => boolean
}

export class BatchSweep {
  private remaining: number
  private exhausted = false
  private readonly queue: FileRow[] = []
  private claiming: Promise<void> | undefined
  private readonly marks: string[] = []
  private marking: Promise<void> = Promise.resolve()
  private markError: unknown

  constructor(private readonly o: BatchSweepOptions) {
    this.remaining = o.limit ?? Number.POSITIVE_INFINITY
  }

  /**
   * Stuck uploads only need their rows failed; every other job's rows go through their provider
   * delete. Workers keep `concurrency` deletes in flight; on stop, claimed rows still finish.
   */
  async run(): Promise<void> {
    if (this.o.job === 'stuck') {
      while (!this.exhausted && !this.o.stopping()) await this.claimBatch()
      return
    }
    try {
      await Promise.all(Array.from({ length: this.o.settings.concurrency }, () => this.worker()))
    } finally {
      await this.flushMarks()
    }
    if (this.markError) throw this.markError
  }

  /** Claims the next batch and queues its provider deletes; the lease renewal travels beside it. */
  private async claimBatch(): Promise<void> {
    const { store, job, settings, deletion } = this.o
    const batchSize = Math.min(settings.batchSize, this.remaining)
    const [batch] = await Promise.all([
      claimSweepBatch(store, job, settings, batchSize, deletion.leaseSeconds),
      this.o.renewLease(),
    ])
    this.remaining -= batch.length
    if (batch.length < batchSize || this.remaining <= 0) this.exhausted = true
    noteCandidates(this.o.tallies, batch, false)
    if (job !== 'stuck') this.queue.push(...batch.filter((row) => !row.provider_deleted && row.provider_file_id))
  }

  /**
   * Deletes queued rows one after another. The next batch is claimed once half of the current one
   * is left, so its claim (a statement over batchSize rows) is done before the queue runs dry and
   * no worker idles at a batch boundary.
   */
  private async worker(): Promise<void> {
    const prefetchAt = Math.max(this.o.settings.concurrency, Math.floor(this.o.settings.batchSize / 2))
    for (;;) {
      if (!this.claiming && !this.exhausted && !this.o.stopping() && this.queue.length <= prefetchAt) {
        this.claiming = this.claimBatch().finally(() => {
          this.claiming = undefined
        })
      }
      const row = this.queue.shift()
      if (!row) {
        if (!this.claiming) return
        await this.claiming
        continue
      }
      await this.deleteOne(row)
    }
  }

  private async deleteOne(row: FileRow): Promise<void> {
    const { outcome } = await deleteAtProvider(this.o.deletion, row, { alreadyClaimed: true, deferMark: true })
    const t = tally(this.o.tallies, row.provider)
    if (outcome !== 'deleted' && outcome !== 'already_gone') {
      t.failed++
      return
    }
    t.deleted++
    this.marks.push(row.id)
    if (this.marks.length >= markBatch) void this.flushMarks()
  }

  /**
   * Successful deletes are recorded in bulk, one round trip per markBatch rows, in the background:
   * no worker waits for a mark. A failed mark fails the sweep at its end; the rows it would have
   * marked keep their lease and are deleted again (a provider 404 counts) by provider_deletes.
   */
  private flushMarks(): Promise<void> {
    if (this.marks.length === 0) return this.marking
    const ids = this.marks.splice(0)
    this.marking = this.marking
      .then(async () => {
        const groups = await markProviderDeletedMany(this.o.store, ids)
        for (const g of groups) this.o.metrics.deletions.inc({ provider: g.provider, reason: g.reason }, Number(g.n))
      })
      .catch((err: unknown) => {
        this.markError ??= err
      })
    return this.marking
  }
}
