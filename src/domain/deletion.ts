/**
 * The one path by which a file is deleted at its provider: claim the tombstone's provider delete
 * (a lease in Postgres, so one worker per file whatever the number of replicas), call the
 * provider, then record the outcome. A provider 404 counts as deleted. Failures are recorded with
 * backoff for the provider_deletes sweep; they are never thrown to the caller.
 */
import type { Metrics } from '../metrics.js'
import type { ProviderRegistry } from '../providers/registry.js'
import type { StorePort } from '../store/port.js'
import {
  claimProviderDelete,
  markProviderDeleted,
  recordProviderDeleteFailure,
  softDeleteFile,
} from '../store/queries.js'
import type { FileRow } from './file-record.js'

export interface DeletionDeps {
  store: StorePort
  providers: ProviderRegistry
  metrics: Metrics
  /** How long a claimed delete is reserved for its worker. */
  leaseSeconds: number
}

export type DeleteOutcome = 'deleted' | 'already_gone' | 'failed' | 'not_claimed'

export async function deleteAtProvider(
  deps: DeletionDeps,
  tombstone: FileRow,
  options: {
    alreadyClaimed?: boolean
    /** The caller records the success itself (sweeps mark a batch in one round trip). */
    deferMark?: boolean
  } = {},
): Promise<{ outcome: DeleteOutcome; row: FileRow }> {
  let row = tombstone
  if (!options.alreadyClaimed) {
    const claimed = await claimProviderDelete(deps.store, tombstone.id, deps.leaseSeconds)
    if (!claimed) return { outcome: 'not_claimed', row }
    row = claimed
  }
  const adapter = deps.providers.get(row.provider)
  const providerFileId = row.provider_file_id
  if (!adapter || !providerFileId) {
    const failed = await recordProviderDeleteFailure(deps.store, row.id, {
      error: `provider ${row.provider} is not configured`,
      minDelaySeconds: 300,
    })
    return { outcome: 'failed', row: failed ?? row }
  }
  try {
    const { alreadyGone } = await adapter.delete(providerFileId)
    if (options.deferMark) return { outcome: alreadyGone ? 'already_gone' : 'deleted', row }
    const marked = await markProviderDeleted(deps.store, row.id)
    if (marked) deps.metrics.deletions.inc({ provider: row.provider, reason: row.deletion_reason ?? 'manual' })
    return { outcome: alreadyGone ? 'already_gone' : 'deleted', row: marked ?? row }
  } catch (err) {
    const e = err as { code?: string; detail?: string; message?: string; retryAfterSeconds?: number }
    const failed = await recordProviderDeleteFailure(deps.store, row.id, {
      error: `${e.code ?? 'ERROR'}: ${e.detail ?? e.message ?? 'unknown'}`,
      minDelaySeconds: Math.ceil(e.retryAfterSeconds ?? 0),
    })
    return { outcome: 'failed', row: failed ?? row }
  }
}

/**
 * A delete asked for by its owner: the tombstone first (idempotent: a deleted row is answered as it
 * is), then the provider delete; `tombstoned` hears of the row's change (an upload waiting on it).
 */
export async function deleteFile(deps: DeletionDeps, row: FileRow, tombstoned: (id: string) => void): Promise<FileRow> {
  if (row.deleted_at) return row
  const tomb = await softDeleteFile(deps.store, row.id, 'manual')
  tombstoned(row.id)
  if (tomb.provider_deleted || tomb.deletion_reason !== 'manual') return tomb
  return (await deleteAtProvider(deps, tomb)).row
}
