/**
 * POST /v1/files/{id}/copies: the same content at another provider (or purpose), made from the
 * kept original instead of bytes the client sends again. The original is spooled through the
 * store's verifying read (a corrupt object fails there: nothing is sent), then goes the normal
 * upload path for the target, limits, dedup, quotas, breaker and retries included. The new row
 * references the same original (`kept`: nothing is written again).
 */
import { asCopyOf } from '../audit-context.js'
import type { Config } from '../config.js'
import { errors } from '../errors.js'
import type { Metrics } from '../metrics.js'
import type { OriginalsStore } from '../originals/index.js'
import type { StorePort } from '../store/port.js'
import type { FileRow } from './file-record.js'
import { storeKeeping } from './original-reads.js'
import { OriginalLostError, spoolOriginal } from './original-spool.js'
import { readRow } from './reads.js'
import { removeSpool } from './spool.js'
import { candidatesFor, type PlanRequest, type UploadPlan } from './upload-plan.js'
import type { UploadResult, Uploads } from './uploads.js'

export interface CopyRequest {
  provider: string
  purpose?: string | undefined
  expiresInSeconds?: number | undefined
  /** The providers the caller may copy to; null or absent = every provider. */
  allowed?: readonly string[] | null | undefined
}

export interface CopyDeps {
  store: StorePort
  originals: OriginalsStore | undefined
  uploads: Uploads
  metrics: Metrics
  config: Pick<Config, 'uploadTmpDir'>
  plan(request: PlanRequest): UploadPlan
}

export async function copyFile(
  deps: CopyDeps,
  tenant: string,
  id: string,
  request: CopyRequest,
): Promise<UploadResult> {
  const source = await readRow(deps.store, tenant, id)
  // Only a live completed file whose content is kept can be copied.
  const originals = storeKeeping(deps.originals, source)
  const plan = deps.plan({
    provider: request.provider,
    purpose: request.purpose,
    filename: source.filename,
    allowed: request.allowed,
  })
  const target = plan.candidates[0]?.config.name ?? request.provider
  try {
    // The target's size limit, before a byte is read.
    candidatesFor(plan, Number(source.bytes))
    // Recorded as `file.copy` of the source (not as a new upload) when it completes.
    const result = await asCopyOf(source.id, () => copyFromOriginal(deps, originals, source, plan, request))
    deps.metrics.copies.inc({
      provider: result.file.provider,
      outcome: result.deduplicated ? 'deduplicated' : 'created',
    })
    return result
  } catch (err) {
    deps.metrics.copies.inc({ provider: target, outcome: 'failed' })
    throw err
  }
}

async function copyFromOriginal(
  deps: CopyDeps,
  originals: OriginalsStore,
  source: FileRow,
  plan: UploadPlan,
  request: CopyRequest,
) {
  let spool: Awaited<ReturnType<typeof spoolOriginal>> | undefined
  try {
    spool = await spoolOriginal(
      originals,
      { tenant: source.tenant_id, sha256: source.sha256 },
      {
        dir: deps.config.uploadTmpDir,
        maxBytes: plan.maxBytes,
        onLimit: () => errors.fileTooLarge(plan.candidates[0]?.config.name ?? request.provider, plan.maxBytes),
      },
    )
  } catch (err) {
    throw err instanceof OriginalLostError ? errors.originalUnavailable(source.id, err.why) : err
  }
  try {
    return await deps.uploads.uploadSpooled(
      source.tenant_id,
      plan,
      {
        filename: source.filename,
        mimeType: source.mime_type,
        metadata: source.metadata ?? {},
        expiresInSeconds: request.expiresInSeconds,
      },
      spool,
      { kind: 'kept' },
    )
  } finally {
    await removeSpool(spool)
  }
}
