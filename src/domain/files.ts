/**
 * The file service the HTTP faces call: uploads (domain/uploads.ts, taken in by
 * domain/reception.ts), reads (domain/reads.ts), deletes (domain/deletion.ts) and limits
 * (domain/limits.ts), over one store, one provider registry and one set of settle waiters.
 */
import { createHash, type Hash } from 'node:crypto'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import type { Config } from '../config.js'
import { AppError, errors, isAppError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import type { OriginalsStore } from '../originals/index.js'
import { isProviderError } from '../providers/errors.js'
import type { ProviderRegistry } from '../providers/registry.js'
import type { ProviderLimits } from '../schemas.js'
import type { StorePort } from '../store/port.js'
import { type DeletionDeps, deleteFile } from './deletion.js'
import { type FileObject, type FileRow, toFileObject } from './file-record.js'
import { Healer } from './heal.js'
import { type LimitsDeps, providerLimits, refreshUsageGauges } from './limits.js'
import { type OriginalBody, readOriginal, refreshOriginalsGauges } from './original-reads.js'
import { settleOnce } from './original-writes.js'
import { type CopyRequest, copyFile } from './originals-copies.js'
import {
  type FileContent,
  type FilePage,
  type ListQuery,
  listPage,
  readContent,
  readRow,
  readRowByProviderId,
  refreshProviderState,
} from './reads.js'
import { type StagedBody, type UploadForm, UploadReception, type UploadRequest } from './reception.js'
import { SettleWaiters } from './settle-waiters.js'
import { UnsettledCopies, type UnsettledCopiesDeps } from './unsettled-copies.js'
import { type PlanRequest, planUpload, type UploadPlan } from './upload-plan.js'
import { type FileMeta, type UploadResult, Uploads } from './uploads.js'

export type { FileContent, ListQuery } from './reads.js'
export type { StagedBody } from './reception.js'
export type { FileMeta, UploadResult } from './uploads.js'

export interface FileServiceDeps {
  store: StorePort
  providers: ProviderRegistry
  config: Config
  metrics: Metrics
  /** The originals store (ORIGINALS_URL); undefined = originals are not kept. */
  originals?: OriginalsStore | undefined
  log: UnsettledCopiesDeps['log']
}

export class FileService {
  private readonly waiters = new SettleWaiters()
  private readonly deletion: DeletionDeps
  private readonly uploads: Uploads
  private readonly limitsDeps: LimitsDeps
  /** Checks provider copies and remakes vanished ones from their originals (ensure, reconcile). */
  readonly healer: Healer
  /** Provider copies whose settle the database did not record: deleted or journaled, then swept. */
  readonly unsettled: UnsettledCopies

  constructor(private readonly deps: FileServiceDeps) {
    const { store, providers, config, metrics, originals, log } = deps
    this.deletion = { store, providers, metrics, leaseSeconds: Math.ceil(config.timeouts.uploadMs / 1000) + 60 }
    this.unsettled = new UnsettledCopies({
      providers,
      metrics,
      deletion: this.deletion,
      journalDir: unsettledJournalDir(config.uploadTmpDir),
      // The margin the timeouts leave between the upload and the request: a database cut lasts seconds.
      retryMs: config.timeouts.requestMs - config.timeouts.uploadMs,
      log,
    })
    const { waiters, unsettled } = this
    this.uploads = new Uploads({ store, config, metrics, deletion: this.deletion, waiters, unsettled, originals })
    this.healer = new Healer({
      store,
      providers,
      originals,
      metrics,
      deletion: this.deletion,
      config,
      waiters,
      unsettled,
    })
    this.limitsDeps = { store, providers, providerConfigs: config.providers, tenantQuotas: config.tenantQuotas }
  }

  get deletionDeps(): DeletionDeps {
    return this.deletion
  }

  plan(request: PlanRequest): UploadPlan {
    return planUpload(this.deps.config.providers, this.deps.providers, request, this.deps.config.autoProviders)
  }

  /** Takes in one upload body: the intake hands it the file part and the fields as it reads them. */
  receive(request: UploadRequest): UploadReception {
    const { originals, metrics } = this.deps
    const keeping = originals ? { originals, metrics } : undefined
    return new UploadReception(this.uploads, (r) => this.plan(r), this.deps.config, request, keeping)
  }

  /**
   * Uploads a resumable upload's staged bytes the way a multipart body goes: with its SHA-256
   * declared, a live duplicate answers before a byte is read; otherwise the bytes are taken in by
   * the same reception (spooled under the provider's limit, hashed, the declared hash checked, the
   * original staged beside them), OpenAI's md5 checked before any provider hears of them, then
   * claimed, put and settled.
   */
  uploadStaged(tenant: string, upload: StagedUpload, body: StagedBody): Promise<UploadResult> {
    return this.trackActive(async () => {
      const { meta } = upload
      const plan = this.plan({
        provider: upload.provider,
        purpose: upload.purpose,
        filename: meta.filename,
        allowed: upload.allowed,
      })
      const hit = body.sha256 ? await this.uploads.liveDuplicate(tenant, plan, body.sha256, body.bytes) : undefined
      if (hit) {
        body.stream.destroy()
        await body.original?.discard()
        return hit
      }
      const form: UploadForm = {
        provider: upload.provider,
        purpose: upload.purpose,
        filename: meta.filename,
        meta: () => meta,
      }
      // Kept once: committed by the upload, or discarded by whichever of it and the reception ends last.
      const original = body.original && settleOnce(body.original)
      const reception = this.receive({
        tenant,
        providers: upload.allowed,
        declaredSha256: body.sha256,
        contentLength: undefined,
        original,
      })
      const md5 = body.md5 ? createHash('md5') : undefined
      try {
        await reception.takeFile(form, md5 ? Readable.from(hashedBy(md5, body.stream)) : body.stream)
        const actual = md5?.digest('hex')
        if (body.md5 && actual !== body.md5.toLowerCase()) {
          throw new AppError('CHECKSUM_MISMATCH', {
            detail: 'The parts, in the order given, do not match the md5',
            extensions: { declared: body.md5, actual },
          })
        }
        return await reception.finish(form)
      } finally {
        // Read to its end, or left unread (a duplicate answered first), or cut by a failure: either
        // way the segments' files and sockets behind it are let go now, not when it is collected.
        body.stream.destroy()
        await reception.dispose()
      }
    })
  }

  /** Counts a refusal made before any provider was involved (a validation failure, by its code). */
  recordRefusal(err: unknown): void {
    if (isAppError(err) && !isProviderError(err) && err.status >= 400 && err.status < 500) {
      this.deps.metrics.validationFailures.inc({ reason: err.code })
    }
  }

  async trackActive<T>(work: () => Promise<T>): Promise<T> {
    this.deps.metrics.activeUploads.inc()
    try {
      return await work()
    } finally {
      this.deps.metrics.activeUploads.dec()
    }
  }

  /** One file; while its provider is still processing it, with the state the provider reports now. */
  async get(tenant: string, id: string): Promise<FileObject> {
    return toFileObject(await this.fresh(await this.getRow(tenant, id)))
  }

  /** The row with its provider state brought up to date while it is not final. */
  fresh(row: FileRow): Promise<FileRow> {
    return refreshProviderState(this.deps.store, this.deps.providers, row)
  }

  getRow(tenant: string, id: string): Promise<FileRow> {
    return readRow(this.deps.store, tenant, id)
  }

  getRowByProviderId(tenant: string, provider: string, providerFileId: string): Promise<FileRow> {
    return readRowByProviderId(this.deps.store, tenant, provider, providerFileId)
  }

  list(tenant: string, query: ListQuery): Promise<FilePage> {
    return listPage(this.deps.store, tenant, query)
  }

  /** Tombstone first, then the provider delete; idempotent. */
  async delete(tenant: string, id: string): Promise<FileRow> {
    return this.deleteRow(await this.getRow(tenant, id))
  }

  deleteRow(row: FileRow): Promise<FileRow> {
    return deleteFile(this.deletion, row, (id) => this.waiters.notify(id))
  }

  async content(tenant: string, id: string): Promise<{ row: FileRow; content: FileContent }> {
    return this.contentOf(await this.getRow(tenant, id))
  }

  contentOf(row: FileRow): Promise<{ row: FileRow; content: FileContent }> {
    return readContent(this.deps.config.providers, this.deps.providers, row)
  }

  /** The same content at another provider or purpose, from the kept original (no bytes sent). */
  copy(tenant: string, id: string, request: CopyRequest): Promise<UploadResult> {
    const { store, originals, metrics, config } = this.deps
    return copyFile(
      { store, originals, metrics, config, uploads: this.uploads, plan: (r) => this.plan(r) },
      tenant,
      id,
      request,
    )
  }

  /**
   * The file, checked at its provider and uploaded again from its original when the copy is gone.
   * ORIGINAL_UNAVAILABLE when it cannot be (it is then tombstoned `reconciled`), or is not live.
   * A heal uploads to the file's provider: it must be one of `allowed` (null = every provider).
   */
  async ensure(tenant: string, id: string, allowed: readonly string[] | null = null): Promise<FileObject> {
    if (allowed !== null) {
      const { provider } = await this.getRow(tenant, id)
      if (!allowed.includes(provider)) throw errors.providerNotAllowed(provider, allowed)
    }
    const result = await this.healer.heal(tenant, id)
    if (result.outcome === 'unavailable')
      throw errors.originalUnavailable(id, `the provider copy is gone and ${result.why}; the file is tombstoned`)
    const { row } = result
    if (row.deleted_at !== null) {
      throw errors.originalUnavailable(id, `the file is deleted (${row.deletion_reason ?? 'manual'})`)
    }
    if (row.status !== 'completed') throw errors.originalUnavailable(id, `the file is ${row.status}`)
    return toFileObject(row)
  }

  /** The original of a live file of the caller, verified as it streams (GET /v1/files/{id}/original). */
  async original(tenant: string, id: string): Promise<{ row: FileRow; original: OriginalBody }> {
    const row = await this.getRow(tenant, id)
    return { row, original: await readOriginal(this.deps.originals, row) }
  }

  /** Refreshes the originals gauges (called on scrape, when originals are kept). */
  refreshOriginalsGauges(): Promise<void> {
    return refreshOriginalsGauges(this.deps.store, this.deps.metrics)
  }

  /** Per provider: limits, circuit state, the caller's usage; the account's usage for admin keys only. */
  limits(view: { tenant: string; accountUsage: boolean }): Promise<ProviderLimits[]> {
    return providerLimits(this.limitsDeps, view)
  }

  /** Refreshes the live-usage gauges (called on scrape). */
  refreshUsageGauges(): Promise<void> {
    return refreshUsageGauges(this.limitsDeps, this.deps.metrics)
  }
}

/** What a resumable upload was created with: where it goes and the file's metadata. */
export interface StagedUpload {
  provider: string
  purpose: string | undefined
  meta: FileMeta
  /** The providers its creator's key may upload to; null = every provider. */
  allowed: readonly string[] | null
}

/** `source`, unchanged, each chunk also fed to `hash`. */
async function* hashedBy(hash: Hash, source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    hash.update(chunk)
    yield chunk
  }
}

/** The journal of provider copies not settled in time, under UPLOAD_TMP_DIR (the spool's sweep leaves it alone). */
export const unsettledJournalDir = (uploadTmpDir: string) => join(uploadTmpDir, 'unsettled-copies')
