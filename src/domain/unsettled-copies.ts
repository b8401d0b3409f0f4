/**
 * A provider copy whose settle the database did not record: once a provider answered with a file
 * id, that id never lives only in memory. Every path that puts a file at a provider (uploads
 * spooled or streamed through, copies, resumable completions: uploads.ts; heals: heal.ts) settles
 * through `settle`:
 *
 *   1. the settle is tried again while the database is unreachable, for REQUEST_TIMEOUT_MS minus
 *      UPLOAD_TIMEOUT_MS (the settle SQL answers a repeated call the same: migration 0014);
 *   2. when it still fails and no attempt can have committed (each was refused before it reached
 *      the database, or the database answered with an error), the copy is deleted at the provider
 *      before the answer: no row can hold it;
 *   3. otherwise (an attempt was cut under way and may have committed, or the delete failed) the
 *      copy goes to the journal: one file per copy in a directory on local disk, written and synced
 *      before the answer. A copy deleted in step 2 is journaled too, so that its claim is let go.
 *
 * The journal's sweep (every process, every third of CLAIM_LEASE_SECONDS) records each entry once
 * the database answers (SQL record_unsettled_copy): a copy a row holds after all is left alone, any
 * other becomes a tombstone deleted the way every provider delete goes (deletion.ts, exactly once);
 * a deleted copy's claim is let go. Then the entry is removed.
 */
import { randomUUID } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { errors, isAppError } from '../errors.js'
import type { Metrics, OrphanOutcome } from '../metrics.js'
import type { ProviderRegistry } from '../providers/registry.js'
import { mayHaveCommitted } from '../store/port.js'
import { failUpload, recordUnsettledCopy, releaseHeal, type UnsettledCopy } from '../store/queries.js'
import { type DeletionDeps, deleteAtProvider } from './deletion.js'

/** A copy a provider made for a row, as the journal keeps it. */
export interface MadeCopy extends UnsettledCopy {
  provider: string
}

interface JournalEntry extends MadeCopy {
  why: string
  /** When the copy was deleted at the provider before the answer; only its claim is left to let go. */
  deletedAt?: number
}

export interface UnsettledCopiesDeps {
  providers: ProviderRegistry
  metrics: Metrics
  deletion: DeletionDeps
  /** The journal's directory, on local disk. */
  journalDir: string
  /** How long a settle is tried again while the database is unreachable. */
  retryMs: number
  log: {
    warn(obj: object, msg: string): void
    error(obj: object, msg: string): void
  }
}

const firstRetryMs = 50
const maxRetryMs = 1000

export class UnsettledCopies {
  private sweeping: Promise<number> | undefined
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly deps: UnsettledCopiesDeps) {}

  /**
   * Runs `attempt` (a settle recording `copy`), again while the database is unreachable and the
   * retry window lasts. When it never succeeds, the copy is deleted or journaled before the error
   * is thrown on.
   */
  async settle<T>(copy: MadeCopy, attempt: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.deps.retryMs
    let uncertain = false
    for (let delay = firstRetryMs; ; delay = Math.min(delay * 2, maxRetryMs)) {
      try {
        return await withDeadline(attempt(), deadline)
      } catch (err) {
        // An attempt still under way when the window closed may yet commit.
        uncertain ||= err === windowClosed || mayHaveCommitted(err)
        const unreachable = isAppError(err) && err.code === 'DATABASE_UNAVAILABLE'
        if (!unreachable || Date.now() + delay >= deadline) {
          await this.dispose(copy, uncertain, err)
          throw err === windowClosed ? unreachableInTime() : err
        }
        await sleep(delay)
      }
    }
  }

  /** The copy deleted at once when no settle can have recorded it, else journaled. */
  private async dispose(copy: MadeCopy, uncertain: boolean, err: unknown): Promise<void> {
    const { metrics, log } = this.deps
    const why = `the settle could not be recorded (${describe(err)})`
    const deleted = !uncertain && (await this.deleteNow(copy))
    const entry: JournalEntry = { ...copy, why, ...(deleted ? { deletedAt: Date.now() } : {}) }
    const journaled = await this.write(entry).then(
      () => true,
      (writeErr: unknown) => {
        log.error({ ...logged(copy), err: describe(writeErr) }, 'provider copy journal could not be written')
        return false
      },
    )
    const outcome: OrphanOutcome = deleted ? 'deleted' : journaled ? 'journaled' : 'lost'
    metrics.providerOrphans.inc({ provider: copy.provider, outcome })
    const line = { ...logged(copy), outcome, uncertain }
    if (outcome === 'lost') log.error(line, 'provider copy neither recorded, deleted nor journaled')
    else log.warn(line, 'provider copy not recorded: its settle failed')
  }

  /** One provider delete (its adapter retries a transient failure); false when it failed. */
  private async deleteNow(copy: MadeCopy): Promise<boolean> {
    const adapter = this.deps.providers.get(copy.provider)
    if (!adapter) return false
    try {
      await adapter.delete(copy.providerFileId)
      this.deps.metrics.deletions.inc({ provider: copy.provider, reason: 'orphaned' })
      return true
    } catch {
      return false
    }
  }

  /** One entry, durably: written to a temporary name, synced, renamed, the directory synced. */
  private async write(entry: JournalEntry): Promise<void> {
    const dir = this.deps.journalDir
    await mkdir(dir, { recursive: true })
    const name = `${Date.now()}-${randomUUID()}`
    const temporary = join(dir, `${name}.tmp`)
    const file = await open(temporary, 'wx', 0o600)
    try {
      await file.writeFile(JSON.stringify(entry))
      await file.sync()
    } finally {
      await file.close()
    }
    await rename(temporary, join(dir, `${name}.json`))
    const handle = await open(dir, 'r')
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  }

  /**
   * Records every journaled copy the database now answers for; the number recorded. Stops at the
   * first entry the database cannot take (the next sweep goes on); one sweep at a time.
   */
  sweep(): Promise<number> {
    this.sweeping ??= this.sweepJournal().finally(() => {
      this.sweeping = undefined
    })
    return this.sweeping
  }

  private async sweepJournal(): Promise<number> {
    const names = await readdir(this.deps.journalDir).catch(() => [] as string[])
    let done = 0
    for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
      const path = join(this.deps.journalDir, name)
      const entry = await readEntry(path)
      if (!entry) {
        this.deps.log.error({ journal: path }, 'unreadable provider copy journal entry set aside')
        await rename(path, `${path}.bad`).catch(() => undefined)
        continue
      }
      try {
        await this.record(entry)
      } catch (err) {
        if (isAppError(err) && err.code === 'DATABASE_UNAVAILABLE') break
        this.deps.log.warn(
          { ...logged(entry), err: describe(err) },
          'provider copy journal entry kept for the next sweep',
        )
        continue
      }
      await rm(path, { force: true })
      done++
    }
    return done
  }

  /** One entry into the database: its copy kept, tombstoned and deleted, or (deleted before) its claim let go. */
  private async record(entry: JournalEntry): Promise<void> {
    const { deletion, metrics } = this.deps
    if (entry.deletedAt !== undefined) {
      if (entry.claimToken) {
        await failUpload(deletion.store, { id: entry.rowId, claimToken: entry.claimToken }, { error: entry.why })
      }
      if (entry.healToken) await releaseHeal(deletion.store, { id: entry.rowId, healToken: entry.healToken })
      return
    }
    const recorded = await recordUnsettledCopy(deletion.store, entry, entry.why)
    if (!recorded) {
      // The row is gone altogether: nothing can hold the copy.
      if (!(await this.deleteNow(entry))) throw new Error('the provider delete failed')
      metrics.providerOrphans.inc({ provider: entry.provider, outcome: 'recorded' })
      return
    }
    metrics.providerOrphans.inc({
      provider: entry.provider,
      outcome: recorded.outcome === 'settled' ? 'settled' : 'recorded',
    })
    // A delete that fails now is owed by the tombstone: the provider_deletes job retries it.
    if (recorded.outcome === 'orphan') await deleteAtProvider(deletion, recorded.file)
  }

  /** Sweeps now, then every `intervalMs` until stop(). */
  start(intervalMs: number): void {
    const run = () => void this.sweep().catch(() => undefined)
    run()
    this.timer = setInterval(run, intervalMs)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    await this.sweeping?.catch(() => undefined)
  }
}

const windowClosed = new Error('the settle did not answer within its window')

const unreachableInTime = () => errors.databaseUnavailable('The database did not answer in time; retry shortly')

/** `work`, or windowClosed once `deadline` passes first. */
async function withDeadline<T>(work: Promise<T>, deadline: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(windowClosed), Math.max(0, deadline - Date.now()))
  })
  try {
    return await Promise.race([work, late])
  } finally {
    clearTimeout(timer)
  }
}

async function readEntry(path: string): Promise<JournalEntry | undefined> {
  try {
    const entry = JSON.parse(await readFile(path, 'utf8')) as JournalEntry
    return typeof entry.provider === 'string' &&
      typeof entry.rowId === 'string' &&
      typeof entry.providerFileId === 'string'
      ? entry
      : undefined
  } catch {
    return undefined
  }
}

/** What a log line says of a copy: the provider, the row and the provider's id (no token). */
const logged = (copy: MadeCopy) => ({
  provider: copy.provider,
  file: copy.rowId,
  provider_file_id: copy.providerFileId,
})

function describe(err: unknown): string {
  if (isAppError(err)) return `${err.code}: ${err.detail ?? err.message}`
  return err instanceof Error ? err.message : String(err)
}
