/**
 * The upload protocol, in three named steps: claim the row for (tenant, provider, purpose,
 * sha256), put the content at the provider, settle the row (complete, or fail and delete the
 * provider's copy). It knows the store and the providers, never HTTP. One of the provider's upload
 * slots is taken before the claim, so that a request waiting for one holds no claim and reserves
 * nothing on the account; a body streamed through keeps it only while it keeps pace (body-pace.ts).
 *
 * Dedup holds under concurrency and across replicas (SQL claim_upload): the first caller claims
 * the row and uploads; concurrent callers see `in_progress` and wait for it to settle, then claim
 * again and get `duplicate` (or take over after a failure). A claim carries its owner and a lease
 * the owner renews every third of CLAIM_LEASE_SECONDS while it uploads: when the owner dies, the
 * lease runs out and the next claim takes the row over. A claim lost to a takeover leaves the
 * provider copy recorded as an orphan tombstone, deleted right away.
 *
 * With originals kept (ORIGINALS_URL), the original is kept under the claim before the row
 * completes (domain/original-writes.ts): a spooled body's before the provider put, so a store that
 * cannot be written fails the upload before anything reaches the provider; a streamed-through
 * body's after it (the provider had the stream first), its copy deleted when the store fails.
 */
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { Readable } from 'node:stream'
import type { Config } from '../config.js'
import { AppError, errors, isAppError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import type { OriginalsStore } from '../originals/index.js'
import { purposeRule } from '../providers/catalog.js'
import { isProviderError } from '../providers/errors.js'
import type { ProviderFile, SlotLease, UploadInput } from '../providers/types.js'
import { maxExpiresInSeconds } from '../schemas.js'
import { inSpan } from '../spans.js'
import type { StorePort } from '../store/port.js'
import {
  type Claim,
  type ClaimRef,
  claimUpload,
  completeUpload,
  failUpload,
  getFile,
  type QuotaUsage,
  renewUploadClaim,
} from '../store/queries.js'
import { keepPace, streamPace } from './body-pace.js'
import { createDedupProber, type DedupProber } from './dedup-probe.js'
import { type DeletionDeps, deleteAtProvider } from './deletion.js'
import { type FileObject, type FileRow, toFileObject } from './file-record.js'
import { tenantCapsAt } from './limits.js'
import { type OriginalSource, PendingOriginal, StagingTee } from './original-writes.js'
import type { SettleWaiters } from './settle-waiters.js'
import { HashCounter, type SpooledFile } from './spool.js'
import type { UnsettledCopies } from './unsettled-copies.js'
import { type Candidate, candidatesFor, type UploadPlan } from './upload-plan.js'

export type { OriginalSource } from './original-writes.js'

export interface FileMeta {
  filename: string
  mimeType: string
  metadata: Record<string, unknown>
  expiresInSeconds: number | undefined
}

export interface UploadResult {
  file: FileObject
  deduplicated: boolean
}

/** One upload to one candidate provider: what is claimed, and for how many bytes. */
interface UploadJob {
  tenant: string
  candidate: Candidate
  meta: FileMeta
  sha256: string
  /** The bytes claimed: the file's size, or what a streamed body reserves until it is counted. */
  bytes: number
  /** When waiting for a concurrent uploader gives up. */
  deadline: number
}

/**
 * What is sent: a spooled file (it can be read again, so a failure may retry or fall back) or the
 * request body itself, counted and hashed on its way through (one attempt; checked once sent).
 */
type UploadBody =
  | { kind: 'spooled'; spool: SpooledFile }
  | { kind: 'streamed'; stream: Readable; declaredSha256: string }

/** What the provider answered to a put; a streamed body's count and hash (and its staged original) come with it. */
interface Sent {
  id: string
  /** What the provider said of its copy: its own expiry, its processing state. */
  copy: Pick<ProviderFile, 'expiresAt' | 'state' | 'stateMessage'>
  counter?: HashCounter
  tee?: StagingTee | undefined
}

type Claimed = Extract<Claim, { outcome: 'claimed' }>

const settlePollMs = 200

/** Who holds a claim: this process, named for the operator who finds its row (host, pid, a random id). */
const claimOwner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`

/**
 * A streamed-through body's Content-Length counts its multipart framing too: the parts before the
 * file (at most 10 fields of 8 KiB), the file part's own header (a long filename included) and the
 * closing boundary. A declared length beyond the limit by more than this cannot be a file within it.
 */
export const multipartFramingAllowance = 256 * 1024

export interface UploadDeps {
  store: StorePort
  config: Pick<Config, 'timeouts' | 'tenantQuotas' | 'cleanup' | 'claimLeaseSeconds'>
  metrics: Metrics
  deletion: DeletionDeps
  /** Hears of each row that settled, so that uploads waiting on it look again at once. */
  waiters: SettleWaiters
  /** Settles that record a provider copy go through it: tried again, and the copy never lost. */
  unsettled: UnsettledCopies
  /** The originals store (ORIGINALS_URL); undefined = originals are not kept. */
  originals?: OriginalsStore | undefined
}

export class Uploads {
  private readonly probe: DedupProber

  constructor(private readonly deps: UploadDeps) {
    this.probe = createDedupProber(deps.store)
  }

  /**
   * Upload from a spooled temp file: retries are possible, and `auto` may fall back. With originals
   * kept, `original` is where the original comes from (undefined: staged from the spool when a claim
   * needs it); it is kept under the first claim, and a staged one not kept is discarded whatever
   * happens.
   */
  async uploadSpooled(
    tenant: string,
    plan: UploadPlan,
    meta: FileMeta,
    spool: SpooledFile,
    original?: OriginalSource,
  ): Promise<UploadResult> {
    const kept = this.pendingOriginal(tenant, spool.sha256, spool.bytes, original, spool)
    try {
      if (spool.bytes === 0) throw errors.emptyFile()
      const candidates = candidatesFor(plan, spool.bytes)
      // The batched probe first: a hit (the common case for a re-sent file) then costs a share of
      // one round trip; a miss goes on to claim_upload, which still settles every race.
      const hit = await this.findLiveDuplicate(tenant, candidates, spool.sha256)
      if (hit) return this.dedupHit(hit, spool.bytes)
      let lastError: unknown
      for (const candidate of candidates) {
        try {
          const job = this.job(tenant, candidate, meta, spool.sha256, spool.bytes)
          return await this.upload(job, { kind: 'spooled', spool }, kept)
        } catch (err) {
          lastError = err
          if (!plan.auto || !canFallBack(err)) throw err
        }
      }
      throw lastError
    } finally {
      await (kept ? kept.discard() : original?.kind === 'staged' ? original.staged.discard() : undefined)
    }
  }

  /**
   * A live copy of `sha256` for the plan's candidates, answered as a dedup hit (counted), or
   * undefined: a body whose hash is declared up front need not be read when one exists.
   */
  async liveDuplicate(
    tenant: string,
    plan: UploadPlan,
    sha256: string,
    bytes: number,
  ): Promise<UploadResult | undefined> {
    const hit = await this.findLiveDuplicate(tenant, candidatesFor(plan, bytes), sha256)
    return hit ? this.dedupHit(hit, bytes) : undefined
  }

  private pendingOriginal(
    tenant: string,
    sha256: string,
    bytes: number,
    original: OriginalSource | undefined,
    spool?: SpooledFile,
  ): PendingOriginal | undefined {
    const { originals, store, metrics } = this.deps
    if (!originals) return undefined
    return new PendingOriginal({ store, originals, metrics }, tenant, sha256, bytes, original, spool)
  }

  /**
   * X-Content-SHA256 path: a live duplicate answers without reading the body; otherwise the body
   * streams straight to one provider (one attempt: a stream cannot be replayed) and the hash is
   * verified at the end. A mismatch deletes the provider copy and answers CHECKSUM_MISMATCH.
   *
   * `declaredBytes` is the request's Content-Length (a body streamed through always has one: a
   * chunked body is received first). It includes the multipart framing, so it must not refuse a
   * file of exactly the limit; one beyond the limit and any framing the form's limits allow is
   * refused before anything is reserved. The reservation is that length (at most the limit),
   * held only while the request lasts; the byte counter enforces the limit exactly.
   */
  async uploadStreamThrough(
    tenant: string,
    plan: UploadPlan,
    meta: FileMeta,
    body: { stream: Readable; declaredSha256: string; declaredBytes: number },
  ): Promise<UploadResult> {
    const hit = await this.findLiveDuplicate(tenant, plan.candidates, body.declaredSha256)
    if (hit) return this.dedupHit(hit, Number(hit.bytes))
    const candidate = plan.candidates[0] as Candidate
    if (body.declaredBytes > candidate.maxBytes + multipartFramingAllowance) {
      throw errors.fileTooLarge(candidate.config.name, candidate.maxBytes)
    }
    const job = this.job(tenant, candidate, meta, body.declaredSha256, Math.min(body.declaredBytes, candidate.maxBytes))
    const kept = this.pendingOriginal(tenant, body.declaredSha256, job.bytes, undefined)
    try {
      return await this.upload(
        job,
        { kind: 'streamed', stream: body.stream, declaredSha256: body.declaredSha256 },
        kept,
      )
    } finally {
      await kept?.discard()
    }
  }

  private job(tenant: string, candidate: Candidate, meta: FileMeta, sha256: string, bytes: number): UploadJob {
    return { tenant, candidate, meta, sha256, bytes, deadline: Date.now() + this.deps.config.timeouts.uploadMs }
  }

  /**
   * Claim → put → settle, the claim's lease renewed throughout; a claim lost while putting (taken
   * over) is claimed again. A spooled body's original is kept before the put.
   */
  private async upload(job: UploadJob, body: UploadBody, original: PendingOriginal | undefined): Promise<UploadResult> {
    for (;;) {
      // The provider slot first: a request waiting for one holds nothing, no claim, no reservation.
      // It waits while one provider attempt still fits in what is left of UPLOAD_TIMEOUT_MS.
      const attemptMs = this.deps.config.timeouts.providerAttemptMs
      const slot = new HeldSlot(() =>
        job.candidate.adapter.uploadSlot({
          tenant: job.tenant,
          clientPaced: body.kind === 'streamed',
          waitMs: Math.max(0, job.deadline - Date.now() - attemptMs),
        }),
      )
      await slot.take()
      try {
        const claim = await this.claim(job, slot)
        if (claim.outcome === 'duplicate') return this.dedupHit(claim.file, job.bytes || Number(claim.file.bytes))
        const heartbeat = this.renewWhileUploading(claimRef(claim))
        try {
          if (original && body.kind === 'spooled') await this.keepBeforePut(job, claim, original)
          const sent = await this.put(job, claim, body, original !== undefined, slot.lease)
          const settled = await this.settle(job, claim, body, sent, original)
          if (settled) return settled
        } finally {
          clearInterval(heartbeat)
        }
      } finally {
        slot.release()
      }
      if (Date.now() > job.deadline) throw timeoutWaiting()
    }
  }

  /** Keeps the original under the claim; when the store fails, the row fails before any provider call. */
  private async keepBeforePut(job: UploadJob, claim: Claimed, original: PendingOriginal): Promise<void> {
    try {
      await original.keep(job.deadline)
    } catch (err) {
      const error = isAppError(err) ? (err.detail ?? err.code) : describe(err)
      await failUpload(this.deps.store, claimRef(claim), { error })
      this.deps.waiters.notify(claim.file.id)
      throw err
    }
  }

  /** Fails the claimed row that has the provider copy `sent`: the row becomes its tombstone, deleted. */
  private async failWithCopy(job: UploadJob, ref: ClaimRef, err: unknown, sent: Sent): Promise<void> {
    const error = isAppError(err) ? (err.detail ?? err.code) : describe(err)
    const tomb = await this.recording(job, ref, sent.id, () =>
      failUpload(this.deps.store, ref, { error, providerFileId: sent.id }),
    )
    this.deps.waiters.notify(ref.id)
    if (tomb) await deleteAtProvider(this.deps.deletion, tomb)
  }

  /**
   * A settle of the claim that records the provider's copy `providerFileId`: tried again while the
   * database is unreachable; when it never answers, the copy is deleted or journaled before the
   * error goes on (unsettled-copies.ts), never only held here.
   */
  private recording<T>(job: UploadJob, ref: ClaimRef, providerFileId: string, settle: () => Promise<T>): Promise<T> {
    const copy = {
      provider: job.candidate.config.name,
      rowId: ref.id,
      claimToken: ref.claimToken,
      providerFileId,
      bytes: job.bytes,
    }
    return this.deps.unsettled.settle(copy, settle)
  }

  /** A live copy for any candidate, the first candidate's purpose first; all asked in one batch. */
  private async findLiveDuplicate(tenant: string, candidates: Candidate[], sha256: string): Promise<FileRow | null> {
    const byPurpose = new Map<string, string[]>()
    for (const c of candidates) byPurpose.set(c.purpose, [...(byPurpose.get(c.purpose) ?? []), c.config.name])
    const rows = await inSpan('filegate.upload.dedup_probe', {}, () =>
      Promise.all(
        [...byPurpose].map(([purpose, providers]) => this.probe({ tenant_id: tenant, providers, purpose, sha256 })),
      ),
    )
    return rows.find((row) => row !== null) ?? null
  }

  private dedupHit(row: FileRow, bytes: number): UploadResult {
    this.deps.metrics.dedupHits.inc({ provider: row.provider })
    this.deps.metrics.uploadBytes.inc({ provider: row.provider, status: 'deduplicated' }, bytes)
    return { file: toFileObject(row, true), deduplicated: true }
  }

  /**
   * Step 1: claims the row, waiting out a concurrent uploader of the same content. Ends in the
   * claim or a duplicate; a cap that would be broken is refused here, before any provider call.
   */
  private async claim(job: UploadJob, slot: HeldSlot): Promise<Claimed | Extract<Claim, { outcome: 'duplicate' }>> {
    const { config } = this.deps
    const { candidate, meta } = job
    const provider = candidate.config.name
    // A purpose with a documented file count (GLM) is counted in the same locked claim.
    const maxPurposeFiles = purposeRule(candidate.config, candidate.purpose)?.maxFiles
    const caps = tenantCapsAt(config.tenantQuotas, job.tenant, candidate.config, maxPurposeFiles)
    for (;;) {
      const claim = await claimUpload(this.deps.store, {
        tenantId: job.tenant,
        provider,
        purpose: candidate.purpose,
        sha256: job.sha256,
        bytes: job.bytes,
        filename: meta.filename,
        mimeType: meta.mimeType,
        metadata: meta.metadata,
        expiresAt: expiryAfter(meta.expiresInSeconds),
        stuckMinutes: config.cleanup.stuckUploadMinutes,
        maxFiles: candidate.config.maxFiles,
        maxBytes: candidate.config.maxTotalBytes,
        maxPurposeFiles,
        owner: claimOwner,
        leaseSeconds: config.claimLeaseSeconds,
        tenantMaxFiles: caps.maxFiles,
        tenantMaxBytes: caps.maxBytes,
        shareMaxFiles: caps.shareMaxFiles,
        shareMaxBytes: caps.shareMaxBytes,
        shareMaxPurposeFiles: caps.shareMaxPurposeFiles,
        sharedByConfig: config.tenantQuotas.sharedByConfig,
      })
      if (claim.outcome === 'tenant_quota_exceeded') throw tenantQuotaExceeded(provider, claim, job.bytes)
      if (claim.outcome === 'quota_exceeded') throw quotaRefusal(provider, claim)
      if (claim.outcome !== 'in_progress') return claim
      // Waiting on a concurrent uploader of the same content: its slot serves another meanwhile.
      slot.release()
      await this.waitForSettle(job.tenant, claim.file.id, job.deadline)
      await slot.take()
    }
  }

  /**
   * Step 2: sends the content to the provider while the claim's lease is renewed. A failure
   * marks the row failed (the next claim may take it over) and is the upload's answer.
   */
  private async put(
    job: UploadJob,
    claim: Claimed,
    body: UploadBody,
    keepsOriginal: boolean,
    slot: SlotLease | undefined,
  ): Promise<Sent> {
    const { metrics } = this.deps
    const provider = job.candidate.config.name
    metrics.uploadAttempts.inc({ provider })
    const started = process.hrtime.bigint()
    const observe = () => metrics.uploadDuration.observe({ provider }, Number(process.hrtime.bigint() - started) / 1e9)
    const ref = claimRef(claim)
    try {
      // UPLOAD_TIMEOUT_MS bounds the whole upload, its wait for a slot included.
      const signal = AbortSignal.timeout(Math.max(1, job.deadline - Date.now()))
      const sent = await this.send(job, body, signal, keepsOriginal, slot)
      observe()
      return sent
    } catch (err) {
      observe()
      metrics.uploadBytes.inc({ provider, status: 'failed' }, job.bytes)
      // A copy the provider made before its reply failed (and that could not be deleted at once)
      // is recorded on the failed row's tombstone and deleted like any other.
      const copyId = isProviderError(err) ? err.copyId : undefined
      const fail = () =>
        failUpload(this.deps.store, ref, { error: describe(err), ...(copyId ? { providerFileId: copyId } : {}) })
      const tomb = copyId ? await this.recording(job, ref, copyId, fail) : await fail()
      this.deps.waiters.notify(ref.id)
      if (tomb && copyId) await deleteAtProvider(this.deps.deletion, tomb)
      throw err
    }
  }

  /**
   * One provider call: the spooled file as it is, or the body counted and hashed on its way (and,
   * with `keepsOriginal`, staged in the originals store as it passes).
   */
  private async send(
    job: UploadJob,
    body: UploadBody,
    signal: AbortSignal,
    keepsOriginal: boolean,
    slot: SlotLease | undefined,
  ): Promise<Sent> {
    const { candidate, meta } = job
    const input = (source: UploadInput['source']): UploadInput => ({
      source,
      filename: meta.filename,
      mimeType: meta.mimeType,
      purpose: candidate.purpose,
      ...(meta.expiresInSeconds !== undefined ? { expiresInSeconds: meta.expiresInSeconds } : {}),
    })
    if (body.kind === 'spooled') {
      const { spool } = body
      const source: UploadInput['source'] = spool.buffer
        ? { kind: 'buffer', buffer: spool.buffer, bytes: spool.bytes }
        : { kind: 'file', path: spool.path, bytes: spool.bytes }
      return sentOf(await candidate.adapter.upload(input(source), signal, slot))
    }
    const limitError = () => errors.fileTooLarge(candidate.config.name, candidate.maxBytes)
    const counter = new HashCounter(candidate.maxBytes, limitError)
    const senderFailure = (attemptTimedOut: boolean) => counter.senderFailure(attemptTimedOut)
    const tee =
      keepsOriginal && this.deps.originals
        ? new StagingTee(
            { originals: this.deps.originals, metrics: this.deps.metrics },
            job.tenant,
            body.declaredSha256,
          )
        : undefined
    // The client sets this body's pace while it holds a slot and a reservation: it must keep a useful one.
    const paced = keepPace(body.stream, streamPace(job.bytes, this.deps.config.timeouts.providerAttemptMs))
    const stream = tee ? tee.pass(counter.pass(paced)) : counter.pass(paced)
    try {
      const file = await candidate.adapter.upload(input({ kind: 'stream', stream, senderFailure }), signal, slot)
      return { ...sentOf(file), counter, tee }
    } catch (err) {
      // Our own limit, the client's abort or the originals store failing surfaces as the provider
      // call failing: report the cause (the budget running out may have replaced the attempt's own error).
      const cause = counter.senderFailure(isProviderError(err) && err.code === 'PROVIDER_TIMEOUT')
      tee?.abort()
      const storeFailure = await tee?.storeFailure()
      await tee?.discard() // settled and removed before the answer
      throw cause ?? storeFailure ?? err
    }
  }

  /**
   * Step 3: records the provider's copy on the row. A streamed body that turns out cut, empty or
   * not the declared content fails the row and its copy is deleted. Undefined when the claim was
   * lost meanwhile (taken over): the copy is an orphan, deleted, and the caller claims again.
   */
  private async settle(
    job: UploadJob,
    claim: Claimed,
    body: UploadBody,
    sent: Sent,
    original: PendingOriginal | undefined,
  ): Promise<UploadResult | undefined> {
    const { store, metrics, waiters } = this.deps
    const provider = job.candidate.config.name
    const ref = claimRef(claim)
    if (sent.tee) original?.stagedBy(sent.tee)
    const verdict = body.kind === 'streamed' ? verifyStreamed(job.candidate, body, sent, provider) : job.bytes
    if (verdict instanceof AppError) {
      metrics.uploadBytes.inc({ provider, status: 'failed' }, job.bytes)
      await this.failWithCopy(job, ref, verdict, sent)
      throw verdict
    }
    if (original && sent.tee) {
      // Streamed through: the provider has the copy; without its original it must go, like a mismatch.
      try {
        await original.keep(job.deadline, verdict)
      } catch (err) {
        metrics.uploadBytes.inc({ provider, status: 'failed' }, job.bytes)
        await this.failWithCopy(job, ref, err, sent)
        throw err
      }
    }
    const done = await this.recording(job, ref, sent.id, () =>
      completeUpload(store, ref, {
        providerFileId: sent.id,
        bytes: verdict,
        originalStored: original !== undefined,
        providerExpiresAt: typeof sent.copy.expiresAt === 'number' ? new Date(sent.copy.expiresAt * 1000) : undefined,
        providerState: sent.copy.state,
        providerError: sent.copy.stateMessage,
      }),
    )
    waiters.notify(ref.id)
    if (done.outcome === 'completed') {
      metrics.uploadBytes.inc({ provider, status: 'success' }, verdict)
      return { file: toFileObject(done.file, false), deduplicated: false }
    }
    if (done.orphan) await deleteAtProvider(this.deps.deletion, done.orphan)
    return undefined
  }

  /**
   * The owner's heartbeat: renews the claim's lease every third of it, so a lease runs out only
   * when its owner is gone (crashed, or cut from the database for a whole lease). A renewal that
   * fails is not fatal: the next one comes a third of a lease later, and a claim lost meanwhile
   * is settled by complete_upload (the copy becomes an orphan, deleted).
   */
  private renewWhileUploading(claim: ClaimRef): NodeJS.Timeout {
    const leaseSeconds = this.deps.config.claimLeaseSeconds
    const renew = () => void renewUploadClaim(this.deps.store, claim, leaseSeconds).catch(() => undefined)
    const timer = setInterval(renew, (leaseSeconds * 1000) / 3)
    timer.unref()
    return timer
  }

  /**
   * Waits until the row settles, or its owner's lease has run out (then the caller claims again
   * and takes it over; the database's clock decides, this one only says when to ask).
   */
  private async waitForSettle(tenant: string, id: string, deadline: number): Promise<void> {
    while (Date.now() < deadline) {
      await this.deps.waiters.wait(id, Math.min(settlePollMs + Math.random() * 50, Math.max(0, deadline - Date.now())))
      const row = await getFile(this.deps.store, tenant, id)
      if (!row || (row.status !== 'uploading' && row.status !== 'pending')) return
      if (row.claimed_until && Date.parse(row.claimed_until) < Date.now()) return
    }
    throw timeoutWaiting()
  }
}

/**
 * The provider upload slot one upload holds from its claim to its settle; let go while it waits
 * for a concurrent uploader of the same content, taken again after.
 */
class HeldSlot {
  lease: SlotLease | undefined
  constructor(private readonly acquire: () => Promise<SlotLease>) {}
  async take(): Promise<void> {
    this.lease = await this.acquire()
  }
  release(): void {
    this.lease?.release()
    this.lease = undefined
  }
}

const sentOf = (file: ProviderFile): Sent => ({
  id: file.id,
  copy: { expiresAt: file.expiresAt, state: file.state, stateMessage: file.stateMessage },
})

const claimRef = (claim: Claimed): ClaimRef => ({ id: claim.file.id, claimToken: claim.claim_token })

/** A streamed body, once the provider has it: its counted bytes, or why the copy must go. */
function verifyStreamed(
  candidate: Candidate,
  body: Extract<UploadBody, { kind: 'streamed' }>,
  sent: Sent,
  provider: string,
): AppError | number {
  // The multipart parser stopped at its own size limit: the provider got a cut file.
  if ((body.stream as { truncated?: boolean }).truncated)
    return errors.fileTooLarge(candidate.config.name, candidate.maxBytes)
  const counter = sent.counter as HashCounter
  const actual = counter.digest()
  if (counter.bytes === 0) return errors.emptyFile()
  if (actual !== body.declaredSha256) {
    return new AppError('CHECKSUM_MISMATCH', {
      detail: 'The content does not match X-Content-SHA256; the provider copy was deleted',
      extensions: { declared: body.declaredSha256, actual, provider },
    })
  }
  return counter.bytes
}

/**
 * The tenant's own refusal: its caps (its own, or its share of the account) and its own usage,
 * never the account's figures, from which other tenants' usage could be worked out.
 */
export function tenantQuotaExceeded(provider: string, usage: QuotaUsage, bytes: number): AppError {
  if (usage.scope === 'purpose') {
    return new AppError('TENANT_QUOTA_EXCEEDED', {
      detail: `You hold ${usage.files} files of purpose "${usage.purpose}" at ${provider}, your share of ${usage.max_files}; delete some first`,
      extensions: {
        provider,
        purpose: usage.purpose,
        limit_files: usage.max_files,
        limit_bytes: null,
        used_files: Number(usage.files),
      },
    })
  }
  return new AppError('TENANT_QUOTA_EXCEEDED', {
    detail: `This upload (${bytes} bytes) would exceed your quota at ${provider} (${usage.max_files ?? '∞'} files, ${usage.max_bytes ?? '∞'} bytes); delete files to make room`,
    extensions: {
      provider,
      limit_files: usage.max_files === null ? null : Number(usage.max_files),
      limit_bytes: usage.max_bytes === null ? null : Number(usage.max_bytes),
      used_files: Number(usage.files),
      used_bytes: Number(usage.bytes),
    },
  })
}

/** `auto` moves on to the next provider when this one is unavailable, failing, or full. */
function canFallBack(err: unknown): boolean {
  if (isProviderError(err)) {
    return (
      err.retryable ||
      err.providerFault ||
      err.code === 'PROVIDER_QUOTA_EXCEEDED' ||
      // Its circuit opened meanwhile, or none of its upload slots came free.
      err.code === 'PROVIDER_UNAVAILABLE'
    )
  }
  return (
    isAppError(err) &&
    [
      'PROVIDER_UNAVAILABLE',
      'PROVIDER_TIMEOUT',
      'PROVIDER_ERROR',
      'PROVIDER_QUOTA_EXCEEDED',
      'TENANT_QUOTA_EXCEEDED',
      'PROVIDER_NOT_CONFIGURED',
    ].includes(err.code)
  )
}

/** PROVIDER_QUOTA_EXCEEDED for a claim refused by an account cap or a purpose's file count. */
function quotaRefusal(provider: string, claim: QuotaUsage): AppError {
  // The account's usage is every tenant's: a refusal names the caps, never the usage (admins: /v1/limits).
  if (claim.scope === 'purpose') {
    return new AppError('PROVIDER_QUOTA_EXCEEDED', {
      detail: `${provider} accepts at most ${claim.max_files} files of purpose "${claim.purpose}" per account; delete some first`,
      extensions: { provider, purpose: claim.purpose, max_files: claim.max_files },
    })
  }
  return new AppError('PROVIDER_QUOTA_EXCEEDED', {
    detail: `Uploading would exceed the ${provider} account cap (${claim.max_files ?? '∞'} files, ${claim.max_bytes ?? '∞'} bytes)`,
    extensions: { provider, max_files: claim.max_files, max_bytes: claim.max_bytes },
  })
}

function describe(err: unknown): string {
  if (isAppError(err)) return `${err.code}: ${err.detail}`
  return err instanceof Error ? err.message : String(err)
}

/**
 * A row's expiry from a TTL. The routes bound every TTL (maxExpiresInSeconds); one past it reaching
 * the domain anyway is still the client's 400, never a date the store cannot hold.
 */
function expiryAfter(seconds: number | undefined): Date | undefined {
  if (seconds === undefined) return undefined
  if (!Number.isSafeInteger(seconds) || seconds < 1 || seconds > maxExpiresInSeconds) {
    throw errors.validationFailed(`expires_in must be whole seconds from 1 to ${maxExpiresInSeconds}`)
  }
  return new Date(Date.now() + seconds * 1000)
}

const timeoutWaiting = () =>
  new AppError('PROVIDER_TIMEOUT', { detail: 'A concurrent upload of the same content did not finish in time' })
