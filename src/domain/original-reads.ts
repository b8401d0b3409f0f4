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
 * The original of a live completed file of the caller. 409 ORIGINAL_UNAVAILABLE when originals are
 * not kept, the file's was not (original_stored false), the file is not live, or the object is gone;
 * 503 ORIGINALS_UNAVAILABLE when the store does not answer.
 */
export async function readOriginal(originals: OriginalsStore | undefined, row: FileRow): Promise<OriginalBody> {
  if (!originals) throw errors.originalUnavailable(row.id, 'originals are not kept (ORIGINALS_URL is not set)')
  if (row.status !== 'completed' || row.deleted_at !== null) {
    throw errors.originalUnavailable(row.id, `the file is ${row.status}`)
  }
  if (!row.original_stored) throw errors.originalUnavailable(row.id, 'its original was not kept')
  try {
    return await originals.read({ tenant: row.tenant_id, sha256: row.sha256 })
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
