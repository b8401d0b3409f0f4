/**
 * Resumable uploads: the bytes of one file arriving in pieces over many requests (a tus PATCH, an
 * OpenAI part), on any replica that reaches the staging area, then uploaded once, the way every
 * upload goes (FileService.uploadStaged: limits, dedup, quotas, originals, claim, put, settle).
 *
 *   create    the declared size checked against the provider's cap and the tenant's quota (which
 *             counts what the tenant has staged) before a byte is stored; a row in the database
 *   append    tus: under the upload's lease (one writer at its offset), one segment; the segment that
 *             makes the upload whole also completes it, under the same lease
 *   addPart   OpenAI: one segment, no lease (parts are independent)
 *   complete  under the lease: the segments read in order, uploaded, the upload completed; N
 *             concurrent completes wait for the one holding the lease and answer its File
 *   cancel    no more bytes; the staged ones are removed
 *   sweep     the cleanup job: takes up completions that are due (deferred after a failure waiting
 *             cures, or whose holder died), expires what ran out, removes staged bytes of settled
 *             uploads and the rows nothing needs any more
 * Each holder renews its lease while it works; a holder that dies lets it run out and the next
 * request (a PATCH at the same offset, a retried complete) or the job takes over.
 */
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Config } from '../config.js'
import { AppError, errors, isAppError } from '../errors.js'
import type { Metrics, ResumableOutcome } from '../metrics.js'
import type { OriginalsStore } from '../originals/index.js'
import { createStagingArea, type StagingArea } from '../staging/index.js'
import type { StorePort } from '../store/port.js'
import {
  addResumablePart,
  appendResumableSegment,
  beginResumableCompletion,
  cancelResumableUpload,
  claimResumableCompletions,
  claimResumableRemovals,
  createResumableUpload,
  deferResumableCompletion,
  deleteSettledResumableUploads,
  failResumableUpload,
  findResumableRemovals,
  finishResumableUpload,
  forgetResumableSegments,
  getResumableUpload,
  lockResumableUpload,
  type ResumableLease,
  type ResumableProtocol,
  type ResumableRow,
  releaseResumableLock,
  renewResumableLock,
  type SegmentRow,
} from '../store/queries.js'
import { type FileObject, isUuid } from './file-record.js'
import type { FileMeta, FileService } from './files.js'
import { tenantCapsAt } from './limits.js'
import { candidatesFor } from './upload-plan.js'
import { tenantQuotaExceeded } from './uploads.js'

export type { ResumableProtocol, ResumableRow, SegmentRow } from '../store/queries.js'

/** OpenAI: "an Upload can accept at most 8 GB in total and expires after an hour after you create it". */
export const openAiUploadMaxBytes = 8 * 1024 ** 3
export const openAiUploadTtlSeconds = 3600
/** OpenAI: "Each Part can be at most 64 MB". */
export const partMaxBytes = 64 * 1024 * 1024

export interface ResumableRequest {
  tenant: string
  protocol: ResumableProtocol
  /** A provider name or `auto`. */
  provider: string
  purpose: string | undefined
  bytes: number
  meta: FileMeta
  /** Declared before the bytes: a duplicate answers unread, and the bytes are checked. */
  sha256: string | undefined
  /** The providers the caller may upload to (its key's allowlist); null or absent = every provider. */
  allowed?: readonly string[] | null | undefined
}

/** An upload, and once completed the File it made (a live duplicate's when one answered). */
export interface ResumableState {
  upload: ResumableRow
  file: FileObject | null
}

export interface ResumableDeps {
  store: StorePort
  staging: StagingArea
  files: FileService
  metrics: Metrics
  config: Pick<Config, 'tenantQuotas' | 'claimLeaseSeconds' | 'timeouts'> & {
    ttlSeconds: number
    /** The first delay before a deferred completion is tried again (doubled per attempt, at most an hour). */
    retrySeconds: number
    /** At most this many completions taken up by the job run at once in this process. */
    resumeConcurrency: number
  }
  log: { warn(obj: object, msg: string): void; info(obj: object, msg: string): void }
}

/** The service over the staging area the configuration picks: the originals store, else UPLOAD_TMP_DIR. */
export function createResumableUploads(
  deps: Omit<ResumableDeps, 'staging' | 'config'> & { originals: OriginalsStore | undefined; config: Config },
): ResumableUploads {
  const { config, originals, ...rest } = deps
  return new ResumableUploads({
    ...rest,
    staging: createStagingArea(originals, config.uploadTmpDir),
    config: {
      ...config,
      ttlSeconds: config.resumable.ttlSeconds,
      retrySeconds: config.resumable.retrySeconds,
      resumeConcurrency: config.cleanup.concurrency,
    },
  })
}

/** How often a request waiting for another's completion looks again. */
const completionPollMs = 200

export class ResumableUploads {
  /** Completions the job took up, running in this process (stop() waits for them). */
  private readonly resuming = new Set<Promise<void>>()
  private stopping = false

  constructor(private readonly deps: ResumableDeps) {}

  /** Checks the declared size and the quota, then records the upload; nothing is staged yet. */
  async create(request: ResumableRequest): Promise<ResumableRow> {
    const { bytes, protocol, tenant, meta } = request
    if (bytes <= 0) throw errors.emptyFile()
    if (protocol === 'openai' && bytes > openAiUploadMaxBytes) {
      throw errors.fileTooLarge('OpenAI Uploads', openAiUploadMaxBytes)
    }
    const plan = this.deps.files.plan({
      provider: request.provider,
      purpose: request.purpose,
      filename: meta.filename,
      allowed: request.allowed,
    })
    const [named] = candidatesFor(plan, bytes) // 413 before a byte is staged
    // A named provider's caps count staged bytes now (the tenant's own, else its share of a shared
    // account, as the claim decides them); `auto` learns its provider only at completion.
    const { tenantQuotas } = this.deps.config
    const caps = !plan.auto && named ? tenantCapsAt(tenantQuotas, tenant, named.config) : undefined
    const ttlSeconds =
      protocol === 'openai'
        ? Math.min(openAiUploadTtlSeconds, this.deps.config.ttlSeconds)
        : this.deps.config.ttlSeconds
    const created = await createResumableUpload(this.deps.store, {
      tenantId: tenant,
      protocol,
      provider: request.provider,
      purpose: plan.auto ? request.purpose : plan.candidates[0]?.purpose,
      filename: meta.filename,
      mimeType: meta.mimeType,
      bytes,
      metadata: meta.metadata,
      fileExpiresIn: meta.expiresInSeconds,
      sha256: request.sha256,
      ttlSeconds,
      tenantMaxFiles: caps?.maxFiles ?? null,
      tenantMaxBytes: caps?.maxBytes ?? null,
      shareMaxFiles: caps?.shareMaxFiles ?? null,
      shareMaxBytes: caps?.shareMaxBytes ?? null,
      sharedByConfig: tenantQuotas.sharedByConfig,
      allowedProviders: request.allowed ?? null,
    })
    if (created.outcome === 'tenant_quota_exceeded') throw tenantQuotaExceeded(request.provider, created, bytes)
    this.count(protocol, 'created')
    return created.upload
  }

  /**
   * The tenant's upload and its File once completed. A completion deferred or whose holder died is
   * taken up by the `resumable` job, not by a read.
   */
  async get(tenant: string, id: string): Promise<ResumableState> {
    return this.withFile(await this.row(tenant, id))
  }

  /**
   * tus PATCH: appends what `body` yields at `offset`, under the upload's lease. A body cut short
   * keeps what arrived (the client resumes from the offset HEAD reports). The segment that makes the
   * upload whole completes it before this answers.
   */
  async append(tenant: string, id: string, offset: number, body: AsyncIterable<Buffer>): Promise<ResumableState> {
    const { upload, lease } = await this.lock(tenant, id, offset)
    const heartbeat = this.renewWhileHeld(lease)
    try {
      if (upload.status === 'receiving' && upload.received < upload.bytes) {
        const after = await this.writeSegment(upload, lease, body)
        if (after.received < after.bytes) return { upload: after, file: null }
      }
      return await this.completeLocked(upload, lease, undefined)
    } finally {
      clearInterval(heartbeat)
    }
  }

  /** OpenAI part: one segment of at most 64 MB, recorded once stored; no lease (parts are independent). */
  async addPart(tenant: string, id: string, body: AsyncIterable<Buffer>): Promise<SegmentRow & { created_at: string }> {
    const upload = await this.row(tenant, id)
    if (upload.status !== 'receiving') throw uploadClosed(upload)
    const segmentId = randomUUID()
    const limit = Math.min(partMaxBytes, upload.bytes - upload.received)
    const bytes = await this.deps.staging.write(
      id,
      segmentId,
      capped(body, limit, () => partTooLarge(upload, limit)),
    )
    const added = await addResumablePart(this.deps.store, { tenantId: tenant, id, segmentId, bytes })
    // A part not recorded stays in the upload's staging prefix, removed with it when the upload settles.
    if (!added) throw uploadNotFound(id)
    if (added.outcome === 'too_large') throw partTooLarge(added.upload, added.upload.bytes - added.upload.received)
    if (added.outcome !== 'added') throw uploadClosed(added.upload)
    return added.part
  }

  /**
   * OpenAI complete: the parts `partIds` names, in that order, uploaded once. A complete that finds
   * another holding the lease waits for it and answers its result; a retried complete of a
   * completed upload answers the same File.
   */
  async complete(tenant: string, id: string, order: { partIds: string[]; md5?: string | undefined }) {
    const deadline = Date.now() + this.deps.config.timeouts.requestMs
    for (;;) {
      const lock = await lockResumableUpload(this.deps.store, this.leaseArgs(tenant, id))
      if (!lock) throw uploadNotFound(id)
      if (lock.outcome === 'locked') {
        const lease = { id, token: lock.token }
        const heartbeat = this.renewWhileHeld(lease)
        try {
          return await this.completeLocked(lock.upload, lease, order)
        } finally {
          clearInterval(heartbeat)
        }
      }
      if (lock.outcome === 'settled') {
        if (lock.upload.status === 'completed') return this.withFile(lock.upload)
        throw uploadClosed(lock.upload)
      }
      if (Date.now() > deadline) {
        throw new AppError('PROVIDER_TIMEOUT', { detail: 'The upload is still being completed; retry the complete' })
      }
      await sleep(completionPollMs + Math.random() * 50)
    }
  }

  /** OpenAI cancel, tus termination (`forget`: the row goes too). Idempotent for a cancelled upload. */
  async cancel(tenant: string, id: string, forget: boolean): Promise<ResumableRow> {
    const cancelled = isUuid(id) ? await cancelResumableUpload(this.deps.store, tenant, id) : null
    if (!cancelled) throw uploadNotFound(id)
    const { upload } = cancelled
    if (cancelled.outcome === 'processing') throw uploadClosed(upload)
    if (cancelled.outcome === 'cancelled') this.count(upload.protocol, 'cancelled')
    else if (!forget && upload.status !== 'cancelled') throw uploadClosed(upload)
    await this.removeStaged(id)
    if (forget) await deleteSettledResumableUploads(this.deps.store, 1, id)
    return upload
  }

  /**
   * The cleanup job's work: completions that are due are taken up (resumeCompletions); then, one
   * batch at a time, uploads past their expiry are expired (a processing one whose completion never
   * succeeded fails), the staged bytes of settled uploads are removed (each claimed under a lease, so
   * exactly once across replicas), and rows past their expiry whose bytes are gone are dropped.
   */
  async sweep(
    options: { dryRun: boolean; limit?: number | undefined; batchSize: number; renewLease: () => Promise<unknown> },
    tally: (protocol: ResumableProtocol) => { candidates: number; deleted: number; failed: number },
  ): Promise<void> {
    const limit = options.limit ?? Number.POSITIVE_INFINITY
    if (!options.dryRun) await this.resumeCompletions()
    if (options.dryRun) {
      for (const found of await findResumableRemovals(this.deps.store, Math.min(limit, 1000))) {
        tally(found.protocol).candidates++
      }
      return
    }
    for (let done = 0; done < limit; ) {
      const batch = await claimResumableRemovals(this.deps.store, {
        limit: Math.min(options.batchSize, limit - done),
        leaseSeconds: 120,
      })
      for (const protocol of batch.expired) this.count(protocol, 'expired')
      for (const protocol of batch.failed) this.count(protocol, 'failed')
      for (const claimed of batch.claimed) {
        const t = tally(claimed.protocol)
        t.candidates++
        try {
          await this.deps.staging.remove(claimed.id)
          await forgetResumableSegments(this.deps.store, claimed)
          t.deleted++
        } catch {
          t.failed++
        }
      }
      await options.renewLease()
      done += batch.claimed.length
      if (batch.claimed.length < options.batchSize) break
    }
    while ((await deleteSettledResumableUploads(this.deps.store, options.batchSize)) >= options.batchSize) {
      await options.renewLease()
    }
  }

  /**
   * Takes up the completions that are due, as many as this process has room for: a tus upload whose
   * completion was deferred (its bytes are all in, no client request can start it again), and any
   * completion whose holder died (its lease ran out). Each runs under a fresh lease, renewed while it
   * works, so exactly one replica completes an upload at a time; it runs on after the job returns
   * (stop() waits for it).
   */
  async resumeCompletions(): Promise<number> {
    const room = this.deps.config.resumeConcurrency - this.resuming.size
    if (this.stopping || room <= 0) return 0
    const claimed = await claimResumableCompletions(this.deps.store, {
      limit: room,
      leaseSeconds: this.deps.config.claimLeaseSeconds,
    })
    for (const { token, upload } of claimed) {
      const running = this.resume(upload, { id: upload.id, token })
      this.resuming.add(running)
      void running.finally(() => this.resuming.delete(running))
    }
    return claimed.length
  }

  /** Takes up no more completions, and waits for those running. */
  async stop(): Promise<void> {
    this.stopping = true
    await Promise.all(this.resuming)
  }

  /** One completion taken up by the job; its outcome is the upload's (GET shows it), logged here. */
  private async resume(upload: ResumableRow, lease: ResumableLease): Promise<void> {
    const heartbeat = this.renewWhileHeld(lease)
    try {
      const { file } = await this.completeLocked(upload, lease, undefined)
      this.deps.log.info(
        { upload: upload.id, file: file?.id, attempts: upload.attempts + 1 },
        'resumable upload completed',
      )
    } catch (err) {
      const e = err as AppError
      this.deps.log.warn(
        { upload: upload.id, err: { code: e.code, message: e.message } },
        'resumable completion failed',
      )
    } finally {
      clearInterval(heartbeat)
    }
  }

  private async row(tenant: string, id: string): Promise<ResumableRow> {
    const upload = isUuid(id) ? await getResumableUpload(this.deps.store, tenant, id) : null
    if (!upload) throw uploadNotFound(id)
    return upload
  }

  private async withFile(upload: ResumableRow): Promise<ResumableState> {
    const file = upload.file_id ? await this.deps.files.get(upload.tenant_id, upload.file_id) : null
    return { upload, file }
  }

  private leaseArgs(tenant: string, id: string, offset?: number) {
    return {
      tenantId: tenant,
      id,
      leaseSeconds: this.deps.config.claimLeaseSeconds,
      ...(offset === undefined ? {} : { offset }),
    }
  }

  /** The lease for a tus PATCH at `offset`: 409 at another offset, 423 while another holds it. */
  private async lock(tenant: string, id: string, offset: number) {
    const lock = isUuid(id) ? await lockResumableUpload(this.deps.store, this.leaseArgs(tenant, id, offset)) : null
    if (!lock) throw uploadNotFound(id)
    if (lock.outcome === 'locked') return { upload: lock.upload, lease: { id, token: lock.token } }
    if (lock.outcome === 'busy') {
      throw new AppError('UPLOAD_LOCKED', { detail: 'Another request is writing to this upload; retry shortly' })
    }
    if (lock.outcome === 'offset_mismatch') {
      throw new AppError('UPLOAD_OFFSET_MISMATCH', {
        detail: `Upload-Offset ${offset} is not the upload's offset ${lock.upload.received}`,
        extensions: { offset: Number(lock.upload.received) },
      })
    }
    throw uploadClosed(lock.upload)
  }

  /** One segment at the upload's offset, recorded under the lease (a body past the declared length is 413). */
  private async writeSegment(upload: ResumableRow, lease: ResumableLease, body: AsyncIterable<Buffer>) {
    const segmentId = randomUUID()
    const room = Number(upload.bytes) - Number(upload.received)
    let bytes: number
    try {
      bytes = await this.deps.staging.write(upload.id, segmentId, keptWhenCut(body, room, upload))
    } catch (err) {
      await releaseResumableLock(this.deps.store, lease)
      throw err
    }
    const whole = Number(upload.received) + bytes === Number(upload.bytes)
    const after = await appendResumableSegment(this.deps.store, lease, { id: segmentId, bytes }, whole)
    if (!after) {
      throw new AppError('UPLOAD_LOCKED', { detail: "The upload's lease was lost while writing; HEAD for its offset" })
    }
    return after
  }

  /** Under the lease: the segments uploaded as one body; the upload completed (or failed, or released). */
  private async completeLocked(
    upload: ResumableRow,
    lease: ResumableLease,
    order: { partIds: string[]; md5?: string | undefined } | undefined,
  ): Promise<ResumableState> {
    const { store, files, staging } = this.deps
    const start = await beginResumableCompletion(store, lease, order)
    if (start.outcome === 'lost') {
      throw new AppError('UPLOAD_LOCKED', { detail: "The upload's lease was lost; retry" })
    }
    if (start.outcome === 'invalid') {
      await releaseResumableLock(store, lease)
      throw errors.validationFailed(`Cannot complete the upload: ${start.reason}`)
    }
    try {
      const where = {
        provider: upload.provider,
        purpose: upload.purpose ?? undefined,
        meta: metaOf(upload),
        allowed: upload.allowed_providers ?? null,
      }
      const staged = staging.read({ id: upload.id, tenant: upload.tenant_id }, start.segments)
      const result = await files.uploadStaged(upload.tenant_id, where, {
        stream: staged.stream,
        original: staged.original,
        bytes: Number(upload.bytes),
        sha256: upload.sha256 ?? undefined,
        // The md5 the completion was begun with (a completion taken over has no request of its own).
        md5: start.upload.part_md5 ?? undefined,
      })
      const done = await finishResumableUpload(store, lease, result.file.id)
      this.count(upload.protocol, result.deduplicated ? 'deduplicated' : 'completed')
      await this.removeStaged(upload.id)
      return { upload: done ?? { ...start.upload, status: 'completed', file_id: result.file.id }, file: result.file }
    } catch (err) {
      await this.settleFailure(upload, lease, err)
      throw err
    }
  }

  /**
   * A failed completion. An OpenAI Upload goes back to pending (the SDK retries a complete, and the
   * client may name other parts or another md5). A tus upload whose failure waiting cures stays
   * processing with its bytes, and the job tries it again after a delay (no request could: every
   * byte has arrived); any other failure fails it for good, its bytes removed. When the database
   * cannot record it, the lease runs out and the job takes the upload up then.
   */
  private async settleFailure(upload: ResumableRow, lease: ResumableLease, err: unknown): Promise<void> {
    const failure = {
      error: isAppError(err) ? err.detail : 'internal error',
      code: isAppError(err) ? err.code : 'INTERNAL',
    }
    if (upload.protocol === 'openai') {
      await releaseResumableLock(this.deps.store, lease, failure).catch(() => {})
      return
    }
    if (waitingCures(err)) {
      await deferResumableCompletion(this.deps.store, lease, failure, this.deps.config.retrySeconds).catch(() => {})
      return
    }
    const failed = await failResumableUpload(this.deps.store, lease, failure).catch(() => null)
    if (failed) {
      this.count(upload.protocol, 'failed')
      await this.removeStaged(upload.id)
    }
  }

  /** Removes a settled upload's staged bytes now; when the store fails, the sweep removes them later. */
  private async removeStaged(id: string): Promise<void> {
    try {
      await this.deps.staging.remove(id)
      await forgetResumableSegments(this.deps.store, { id })
    } catch (err) {
      this.deps.log.warn({ upload: id, err: { message: (err as Error).message } }, 'staged bytes left for the sweep')
    }
  }

  /** Renews the lease every third of it while its holder works (see the claim heartbeat in uploads.ts). */
  private renewWhileHeld(lease: ResumableLease): NodeJS.Timeout {
    const leaseSeconds = this.deps.config.claimLeaseSeconds
    const timer = setInterval(
      () => void renewResumableLock(this.deps.store, lease, leaseSeconds).catch(() => undefined),
      (leaseSeconds * 1000) / 3,
    )
    timer.unref()
    return timer
  }

  private count(protocol: ResumableProtocol, outcome: ResumableOutcome): void {
    this.deps.metrics.resumableUploads.inc({ protocol, outcome })
  }
}

const metaOf = (upload: ResumableRow): FileMeta => ({
  filename: upload.filename,
  mimeType: upload.mime_type,
  metadata: upload.metadata,
  expiresInSeconds: upload.file_expires_in ?? undefined,
})

/**
 * Whether a completion's failure may succeed when tried again later: the provider failing, timing
 * out, rate limiting or its circuit open, the database or the originals store unreachable, the
 * service shutting down, an unexpected error. Not the content's own faults (checksum or md5
 * mismatch, too large, empty, unsupported type or purpose), the provider's refusal (422), a used-up
 * quota (the tenant's or the account's: waiting does not free it) nor a provider without a key.
 */
export function waitingCures(err: unknown): boolean {
  if (!isAppError(err)) return true
  if (err.quotaExhausted || err.code === 'PROVIDER_NOT_CONFIGURED') return false
  return err.status >= 500 || err.code === 'PROVIDER_RATE_LIMITED' || err.code === 'RATE_LIMITED'
}

const uploadNotFound = (id: string) => errors.notFound(`No upload ${id.slice(0, 64)}`)

/** Why an upload takes no more bytes: 409 once completed; gone (410) when expired, cancelled or failed. */
export function uploadClosed(upload: Pick<ResumableRow, 'status' | 'error'>): AppError {
  if (upload.status === 'completed' || upload.status === 'processing') {
    return new AppError('UPLOAD_NOT_PENDING', {
      detail: `The upload is ${upload.status}`,
      extensions: { status: upload.status },
    })
  }
  return new AppError('UPLOAD_GONE', {
    detail: `The upload is ${upload.status}${upload.error ? ` (${upload.error})` : ''}`,
    extensions: { status: upload.status },
  })
}

const partTooLarge = (upload: ResumableRow, limit: number) =>
  new AppError('FILE_TOO_LARGE', {
    detail: `A part may hold at most ${limit} bytes here (64 MB, and no more than the upload's ${upload.bytes} bytes in all)`,
    extensions: { provider: upload.provider, limit_bytes: limit },
  })

/** `body`, failing with `tooLarge()` past `limit` bytes. */
async function* capped(body: AsyncIterable<Buffer>, limit: number, tooLarge: () => Error): AsyncGenerator<Buffer> {
  let bytes = 0
  for await (const chunk of body) {
    bytes += chunk.byteLength
    if (bytes > limit) throw tooLarge()
    yield chunk
  }
}

/**
 * A tus PATCH body: what arrives is kept when the connection breaks (tus: the server should store
 * what it received, and the client resumes from the offset HEAD reports); past the upload's declared
 * length it is 413.
 */
async function* keptWhenCut(body: AsyncIterable<Buffer>, room: number, upload: ResumableRow): AsyncGenerator<Buffer> {
  const chunks = body[Symbol.asyncIterator]()
  let bytes = 0
  for (;;) {
    let next: IteratorResult<Buffer>
    try {
      next = await chunks.next()
    } catch {
      return // the client went away: what arrived is the segment
    }
    if (next.done) return
    bytes += next.value.byteLength
    if (bytes > room) {
      throw new AppError('FILE_TOO_LARGE', {
        detail: `The body goes past Upload-Length (${upload.bytes} bytes)`,
        extensions: { provider: upload.provider, limit_bytes: Number(upload.bytes) },
      })
    }
    yield next.value
  }
}
