/**
 * Serving a file's original (GET /v1/files/{id}/original) and the originals gauges. The bytes come
 * from the originals store through its verifying stream: a corrupted object ends in an error before
 * its last chunk, so it is never delivered whole.
 */
import type { Readable } from 'node:stream'
import { errors } from '../errors.js'
import type { Metrics } from '../metrics.js'
import { OriginalMissingError, type OriginalsStore } from '../originals/index.js'
import type { StorePort } from '../store/port.js'
import { originalsUsage } from '../store/queries.js'
import type { FileRow } from './file-record.js'

export interface OriginalBody {
  bytes: number
  stream: Readable
}

/**
 * Where `row`'s original is kept, or why it has none to serve or upload again from, before the store
 * is asked: originals are not kept, the file is not live and completed, or its content was not kept
 * when it was uploaded.
 */
export function keptOriginal(
  originals: OriginalsStore | undefined,
  row: FileRow,
): { store: OriginalsStore } | { why: string } {
  if (!originals) return { why: 'originals are not kept (ORIGINALS_URL is not set)' }
  if (row.status !== 'completed' || row.deleted_at !== null) return { why: `the file is ${row.status}` }
  if (!row.original_stored) return { why: 'it was not kept when the file was uploaded' }
  return { store: originals }
}

/** The originals store, when `row` has an original in it; else 409 ORIGINAL_UNAVAILABLE saying why. */
export function storeKeeping(originals: OriginalsStore | undefined, row: FileRow): OriginalsStore {
  const kept = keptOriginal(originals, row)
  if ('why' in kept) throw errors.originalUnavailable(row.id, kept.why)
  return kept.store
}

/**
 * The original of a live completed file of the caller. 409 ORIGINAL_UNAVAILABLE when it has none
 * (keptOriginal) or the object is gone; 503 ORIGINALS_UNAVAILABLE when the store does not answer.
 */
export async function readOriginal(originals: OriginalsStore | undefined, row: FileRow): Promise<OriginalBody> {
  const store = storeKeeping(originals, row)
  try {
    return await store.read({ tenant: row.tenant_id, sha256: row.sha256 })
  } catch (err) {
    if (err instanceof OriginalMissingError) throw errors.originalUnavailable(row.id, 'it is missing from the store')
    throw errors.originalsUnavailable(err)
  }
}

/** filegate_originals_objects / filegate_originals_bytes from the database (file_originals). */
export async function refreshOriginalsGauges(store: StorePort, metrics: Metrics): Promise<void> {
  const usage = await originalsUsage(store)
  metrics.originalsObjects.set(Number(usage.objects))
  metrics.originalsBytes.set(Number(usage.bytes))
}
