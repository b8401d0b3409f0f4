/**
 * The file service: uploads with SHA-256 dedup that holds under concurrency and across replicas,
 * reads, deletes and limits. It knows the store and the providers, never HTTP.
 *
 * Dedup protocol (SQL claim_upload): the first caller for (tenant, provider, purpose, sha256)
 * claims the row and uploads; concurrent callers see `in_progress` and wait for it to settle,
 * then claim again and get `duplicate` (or take over after a failure). A claim carries its
 * owner and a lease the owner renews every third of CLAIM_LEASE_SECONDS while it uploads: when
 * the owner dies, the lease runs out and the next claim takes the row over. A claim lost to a
 * takeover leaves the provider copy recorded as an orphan tombstone, deleted right away.
 */
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { Readable } from 'node:stream'
import { type Config, tenantQuotaOf } from '../config.js'
import { AppError, isAppError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import { effectiveMaxBytes, purposeRule } from '../providers/catalog.js'
import { isProviderError } from '../providers/errors.js'
import type { ProviderRegistry } from '../providers/registry.js'
import type { ProviderContent } from '../providers/types.js'
import type { ProviderLimits } from '../schemas.js'
import { inSpan } from '../spans.js'
import type { StorePort } from '../store/port.js'
import { createDedupProber, type DedupProber } from './dedup-probe.js'
import { type DeletionDeps, deleteAtProvider } from './deletion.js'
import { decodeCursor, encodeCursor, type FileObject, type FileRow, isUuid, toFileObject } from './file-record.js'
import { SettleWaiters } from './settle-waiters.js'
import { HashCounter, type SpooledFile, tooLarge } from './spool.js'
import { type Candidate, candidatesFor, planUpload, type UploadPlan } from './upload-plan.js'

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

export interface ListQuery {
  provider?: string | undefined
  status?: string | undefined
  sha256?: string | undefined
  purpose?: string | undefined
  includeDeleted?: boolean | undefined
  limit: number
  after?: string | undefined
  /** A keyset position given directly (the OpenAI facade pages by provider file id). */
  afterKey?: { createdAt: string; id: string } | undefined
  order?: 'asc' | 'desc'
}

type ClaimResult =
  | { outcome: 'claimed'; claim_token: string; file: FileRow }
  | { outcome: 'duplicate'; file: FileRow }
  | { outcome: 'in_progress'; file: FileRow & { claimed_until?: string | null } }
  | ({ outcome: 'quota_exceeded' } & QuotaUsage)
  | ({ outcome: 'tenant_quota_exceeded' } & QuotaUsage)

/** What a claim reports when a cap would be broken: the usage it counted and the caps. */
interface QuotaUsage {
  /** 'purpose': the provider's documented cap on files of one purpose (`purpose`), no byte cap. */
  scope?: 'purpose'
  purpose?: string
  files: number
  bytes: number
  max_files: number | null
  max_bytes: number | null
}

const settlePollMs = 200

/** Who holds a claim: this process, named for the operator who finds its row (host, pid, a random id). */
const claimOwner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`

export interface FileServiceDeps {
  store: StorePort
  providers: ProviderRegistry
  config: Config
  metrics: Metrics
}

export class FileService {
  private readonly waiters = new SettleWaiters()
  private readonly probe: DedupProber
  private readonly deletion: DeletionDeps

  constructor(private readonly deps: FileServiceDeps) {
    this.probe = createDedupProber(deps.store)
    this.deletion = {
      store: deps.store,
      providers: deps.providers,
      metrics: deps.metrics,
      leaseSeconds: Math.ceil(deps.config.timeouts.uploadMs / 1000) + 60,
    }
  }

  get deletionDeps(): DeletionDeps {
    return this.deletion
  }

  plan(request: { provider: string; purpose?: string | undefined; filename: string }): UploadPlan {
    return planUpload(this.deps.config.providers, this.deps.providers, request)
  }

  /** Counts a refusal before any provider was involved (SPEC §6 validation failures). */
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

  /** Upload from a spooled temp file: retries are possible, and `auto` may fall back. */
  async uploadSpooled(tenant: string, plan: UploadPlan, meta: FileMeta, spool: SpooledFile): Promise<UploadResult> {
    if (spool.bytes === 0) throw new AppError('EMPTY_FILE', { detail: 'The file part has no content' })
    const candidates = candidatesFor(plan, spool.bytes)
    // The batched probe first: a hit (the common case for a re-sent file) then costs a share of
    // one round trip; a miss goes on to claim_upload, which still settles every race.
    const hit = await this.findLiveDuplicate(tenant, candidates, spool.sha256)
    if (hit) return this.dedupHit(hit, spool.bytes)
    let lastError: unknown
    for (const candidate of candidates) {
      try {
        return await this.uploadTo(tenant, candidate, meta, spool.sha256, spool.bytes, async (signal) =>
          candidate.adapter.upload(
            {
              source: spool.buffer
                ? { kind: 'buffer', buffer: spool.buffer, bytes: spool.bytes }
                : { kind: 'file', path: spool.path, bytes: spool.bytes },
              filename: meta.filename,
              mimeType: meta.mimeType,
              purpose: candidate.purpose,
            },
            signal,
          ),
        )
      } catch (err) {
        lastError = err
        if (!plan.auto || !canFallBack(err)) throw err
      }
    }
    throw lastError
  }

  /**
   * X-Content-SHA256 path: a live duplicate answers without reading the body; otherwise the body
   * streams straight to one provider (one attempt: a stream cannot be replayed) and the hash is
   * verified at the end. A mismatch deletes the provider copy and answers CHECKSUM_MISMATCH.
   */
  async uploadStreamThrough(
    tenant: string,
    plan: UploadPlan,
    meta: FileMeta,
    declaredSha256: string,
    body: Readable,
    declaredBytes: number,
  ): Promise<UploadResult> {
    // `declaredBytes` is the request's Content-Length (a body streamed through always has one: a
    // chunked body is received first). It includes the multipart framing, so it must not refuse a
    // file of exactly the limit; one beyond the limit and any framing the form's limits allow is
    // refused before anything is reserved. The reservation is that length (at most the limit),
    // held only while the request lasts; the byte counter below enforces the limit exactly.
    const candidates = plan.candidates
    const hit = await this.findLiveDuplicate(tenant, candidates, declaredSha256)
    if (hit) return this.dedupHit(hit, Number(hit.bytes))
    const candidate = candidates[0] as Candidate
    if (declaredBytes > candidate.maxBytes + multipartFramingAllowance) {
      throw tooLarge(candidate.config.name, candidate.maxBytes)
    }
    const reserveBytes = Math.min(declaredBytes, candidate.maxBytes)
    let counter: HashCounter | undefined
    return this.uploadTo(
      tenant,
      candidate,
      meta,
      declaredSha256,
      reserveBytes,
      async (signal) => {
        const sender = new HashCounter(candidate.maxBytes, () => tooLarge(candidate.config.name, candidate.maxBytes))
        counter = sender
        try {
          return await candidate.adapter.upload(
            {
              source: {
                kind: 'stream',
                stream: sender.pass(body),
                senderFailure: (attemptTimedOut) => sender.senderFailure(attemptTimedOut),
              },
              filename: meta.filename,
              mimeType: meta.mimeType,
              purpose: candidate.purpose,
            },
            signal,
          )
        } catch (err) {
          // Our own limit or the client's abort surfaces as the provider call failing: report the
          // cause (the budget running out may have replaced the attempt's own error).
          throw sender.senderFailure(isProviderError(err) && err.code === 'PROVIDER_TIMEOUT') ?? err
        }
      },
      (providerFile) => {
        // The multipart parser stopped at its own size limit: the provider got a cut file.
        if ((body as { truncated?: boolean }).truncated) return tooLarge(candidate.config.name, candidate.maxBytes)
        const actual = counter?.digest()
        if (counter && counter.bytes === 0)
          return new AppError('EMPTY_FILE', { detail: 'The file part has no content' })
        if (actual !== declaredSha256) {
          return new AppError('CHECKSUM_MISMATCH', {
            detail: 'The content does not match X-Content-SHA256; the provider copy was deleted',
            extensions: { declared: declaredSha256, actual, provider: providerFile.provider },
          })
        }
        return counter?.bytes
      },
    )
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
   * Claims (tenant, provider, purpose, sha256) and uploads when this caller wins; waits for a
   * concurrent uploader otherwise. `verify` may refuse the provider's copy after the fact (stream
   * path): it returns an error (the copy is deleted) or the verified byte count.
   */
  private async uploadTo(
    tenant: string,
    candidate: Candidate,
    meta: FileMeta,
    sha256: string,
    bytes: number,
    put: (signal: AbortSignal) => Promise<{ id: string }>,
    verify?: (file: { id: string; provider: string }) => AppError | number | undefined,
  ): Promise<UploadResult> {
    const { store, metrics, config } = this.deps
    const provider = candidate.config.name
    const deadline = Date.now() + config.timeouts.uploadMs
    const quota = tenantQuotaOf(config.tenantQuotas, tenant)
    for (;;) {
      // A purpose with a documented file count (GLM) is counted in the same locked claim.
      const purposeFiles = purposeRule(candidate.config, candidate.purpose)?.maxFiles
      const claim = await store.call<ClaimResult>(purposeFiles ? 'claim_upload_within_purpose_cap' : 'claim_upload', {
        ...(purposeFiles ? { p_max_purpose_files: purposeFiles } : {}),
        p_tenant_id: tenant,
        p_provider: provider,
        p_purpose: candidate.purpose,
        p_sha256: sha256,
        p_bytes: bytes,
        p_filename: meta.filename,
        p_mime_type: meta.mimeType,
        p_metadata: meta.metadata,
        p_expires_at:
          meta.expiresInSeconds === undefined ? undefined : new Date(Date.now() + meta.expiresInSeconds * 1000),
        p_stuck_minutes: config.lifecycle.stuckUploadMinutes,
        p_max_files: candidate.config.maxFiles ?? undefined,
        p_max_bytes: candidate.config.maxTotalBytes ?? undefined,
        p_owner: claimOwner,
        p_lease_seconds: config.claimLeaseSeconds,
        p_tenant_max_files: quota.maxFiles ?? undefined,
        p_tenant_max_bytes: quota.maxBytes ?? undefined,
      })
      if (claim.outcome === 'duplicate') return this.dedupHit(claim.file, bytes || Number(claim.file.bytes))
      if (claim.outcome === 'tenant_quota_exceeded') throw tenantQuotaExceeded(provider, claim, bytes)
      if (claim.outcome === 'quota_exceeded') throw quotaRefusal(provider, claim)
      if (claim.outcome === 'in_progress') {
        await this.waitForSettle(tenant, claim.file.id, deadline)
        continue
      }

      metrics.uploadAttempts.inc({ provider })
      const started = process.hrtime.bigint()
      const observe = () =>
        metrics.uploadDuration.observe({ provider }, Number(process.hrtime.bigint() - started) / 1e9)
      let providerFile: { id: string }
      const heartbeat = this.renewWhileUploading(claim.file.id, claim.claim_token)
      try {
        providerFile = await put(AbortSignal.timeout(config.timeouts.uploadMs))
      } catch (err) {
        observe()
        metrics.uploadBytes.inc({ provider, status: 'failed' }, bytes)
        await store.call('fail_upload', {
          p_id: claim.file.id,
          p_claim_token: claim.claim_token,
          p_error: describe(err),
        })
        this.waiters.notify(claim.file.id)
        throw err
      } finally {
        clearInterval(heartbeat)
      }
      observe()

      const verdict = verify?.({ id: providerFile.id, provider })
      if (verdict instanceof AppError) {
        metrics.uploadBytes.inc({ provider, status: 'failed' }, bytes)
        const tomb = await store.call<FileRow | null>('fail_upload', {
          p_id: claim.file.id,
          p_claim_token: claim.claim_token,
          p_error: verdict.detail,
          p_provider_file_id: providerFile.id,
        })
        this.waiters.notify(claim.file.id)
        if (tomb) await deleteAtProvider(this.deletion, tomb)
        throw verdict
      }
      const finalBytes = typeof verdict === 'number' ? verdict : bytes
      const done = await store.call<{ outcome: 'completed' | 'lost'; file: FileRow; orphan?: FileRow }>(
        'complete_upload',
        {
          p_id: claim.file.id,
          p_claim_token: claim.claim_token,
          p_provider_file_id: providerFile.id,
          p_bytes: finalBytes,
        },
      )
      this.waiters.notify(claim.file.id)
      if (done.outcome === 'completed') {
        metrics.uploadBytes.inc({ provider, status: 'success' }, finalBytes)
        return { file: toFileObject(done.file, false), deduplicated: false }
      }
      // Our claim was taken over (we were too slow) or the row deleted meanwhile: our copy is an
      // orphan; delete it and settle on whatever the row is now.
      if (done.orphan) await deleteAtProvider(this.deletion, done.orphan)
      if (Date.now() > deadline) throw timeoutWaiting()
    }
  }

  /**
   * The owner's heartbeat: renews the claim's lease every third of it, so a lease runs out only
   * when its owner is gone (crashed, or cut from the database for a whole lease). A renewal that
   * fails is not fatal: the next one comes a third of a lease later, and a claim lost meanwhile
   * is settled by complete_upload (the copy becomes an orphan, deleted).
   */
  private renewWhileUploading(id: string, token: string): NodeJS.Timeout {
    const leaseSeconds = this.deps.config.claimLeaseSeconds
    const timer = setInterval(
      () => {
        this.deps.store
          .call('renew_upload_claim', { p_id: id, p_claim_token: token, p_lease_seconds: leaseSeconds })
          .catch(() => undefined)
      },
      (leaseSeconds * 1000) / 3,
    )
    timer.unref()
    return timer
  }

  /**
   * Waits until the row settles, or its owner's lease has run out (then the caller claims again
   * and takes it over; the database's clock decides, this one only says when to ask).
   */
  private async waitForSettle(tenant: string, id: string, deadline: number): Promise<void> {
    while (Date.now() < deadline) {
      await this.waiters.wait(id, Math.min(settlePollMs + Math.random() * 50, Math.max(0, deadline - Date.now())))
      const row = await this.deps.store.call<(FileRow & { claimed_until?: string | null }) | null>('get_file', {
        p_tenant_id: tenant,
        p_id: id,
      })
      if (!row || (row.status !== 'uploading' && row.status !== 'pending')) return
      if (row.claimed_until && Date.parse(row.claimed_until) < Date.now()) return
    }
    throw timeoutWaiting()
  }

  async get(tenant: string, id: string): Promise<FileObject> {
    return toFileObject(await this.getRow(tenant, id))
  }

  async getRow(tenant: string, id: string): Promise<FileRow> {
    const row = isUuid(id)
      ? await this.deps.store.call<FileRow | null>('get_file', { p_tenant_id: tenant, p_id: id })
      : null
    if (!row) throw new AppError('NOT_FOUND', { detail: `No file ${id}` })
    return row
  }

  async getRowByProviderId(tenant: string, provider: string, providerFileId: string): Promise<FileRow> {
    const row = await this.deps.store.call<FileRow | null>('get_file_by_provider_id', {
      p_tenant_id: tenant,
      p_provider: provider,
      p_provider_file_id: providerFileId,
    })
    if (!row) throw new AppError('NOT_FOUND', { detail: `No file ${providerFileId}` })
    return row
  }

  async list(
    tenant: string,
    query: ListQuery,
  ): Promise<{ rows: FileRow[]; hasMore: boolean; nextCursor: string | null }> {
    const after = query.afterKey ?? (query.after ? decodeCursor(query.after) : undefined)
    const page = await this.deps.store.call<{ data: FileRow[]; has_more: boolean }>('list_files', {
      p_tenant_id: tenant,
      p_limit: query.limit,
      p_provider: query.provider,
      p_status: query.status,
      p_sha256: query.sha256?.toLowerCase(),
      p_purpose: query.purpose,
      p_include_deleted: query.includeDeleted ?? false,
      p_after_created_at: after?.createdAt,
      p_after_id: after?.id,
      p_ascending: query.order === 'asc',
    })
    const last = page.data.at(-1)
    return { rows: page.data, hasMore: page.has_more, nextCursor: page.has_more && last ? encodeCursor(last) : null }
  }

  /** Tombstone first, then the provider delete; idempotent. */
  async delete(tenant: string, id: string): Promise<FileRow> {
    const row = await this.getRow(tenant, id)
    return this.deleteRow(row)
  }

  async deleteRow(row: FileRow): Promise<FileRow> {
    if (row.deleted_at) return row
    const tomb = await this.deps.store.call<FileRow>('soft_delete_file', { file_id: row.id, reason: 'manual' })
    this.waiters.notify(row.id)
    if (tomb.provider_deleted || tomb.deletion_reason !== 'manual') return tomb
    return (await deleteAtProvider(this.deletion, tomb)).row
  }

  async content(tenant: string, id: string): Promise<{ row: FileRow; content: ProviderContent }> {
    return this.contentOf(await this.getRow(tenant, id))
  }

  async contentOf(row: FileRow): Promise<{ row: FileRow; content: ProviderContent }> {
    if (row.status !== 'completed' || !row.provider_file_id) {
      throw new AppError('CONTENT_UNAVAILABLE', {
        detail: `File ${row.id} is ${row.status}; no content at the provider`,
        extensions: { provider: row.provider },
      })
    }
    // Only where the provider documents content for the purpose: elsewhere it has none to give,
    // and asking would only cost a call and come back as a provider error.
    const config = this.deps.config.providers.find((p) => p.name === row.provider)
    if (config && !purposeRule(config, row.purpose)?.content) {
      throw new AppError('CONTENT_UNAVAILABLE', {
        detail: `${row.provider} serves no content for files of purpose "${row.purpose}"`,
        extensions: { provider: row.provider, purpose: row.purpose },
      })
    }
    const adapter = this.deps.providers.require(row.provider)
    return { row, content: await adapter.content(row.provider_file_id) }
  }

  /** What occupies each provider account now (SQL provider_usage). */
  private usage(): Promise<Usage[]> {
    return this.deps.store.call('provider_usage')
  }

  /**
   * Per provider: limits, circuit state, and the caller's own usage against its quota. The
   * account's usage (every tenant's) only for `accountUsage` (admin keys): otherwise a tenant
   * could watch the sizes of other tenants' uploads as they happen.
   */
  async limits(view: { tenant: string; accountUsage: boolean }): Promise<ProviderLimits[]> {
    const [own, account, byPurpose] = await Promise.all([
      this.deps.store.call<Usage[]>('tenant_usage', { p_tenant_id: view.tenant }),
      view.accountUsage ? this.usage() : undefined,
      // Per-purpose counts are every tenant's too: admin keys only.
      view.accountUsage
        ? this.deps.store.call<Array<{ provider: string; purpose: string; files: number }>>('purpose_usage')
        : undefined,
    ])
    const quota = tenantQuotaOf(this.deps.config.tenantQuotas, view.tenant)
    return this.deps.config.providers.map((p) => {
      const adapter = this.deps.providers.get(p.name)
      const used = account?.find((u) => u.provider === p.name)
      const mine = own.find((u) => u.provider === p.name)
      const purposeFiles = (purpose: string) =>
        Number(byPurpose?.find((u) => u.provider === p.name && u.purpose === purpose)?.files ?? 0)
      const extensions = new Set<string>()
      let anyExtension = false
      for (const rule of Object.values(p.purposes)) {
        if (rule.extensions === null) anyExtension = true
        else for (const e of rule.extensions) extensions.add(e)
      }
      return {
        provider: p.name,
        kind: p.kind,
        configured: Boolean(adapter),
        circuit: adapter?.circuitState() ?? 'closed',
        max_file_bytes: p.maxFileBytes,
        documented_max_file_bytes: p.documentedMaxFileBytes,
        default_purpose: p.defaultPurpose,
        purposes: Object.entries(p.purposes).map(([purpose, rule]) => ({
          purpose,
          extensions: rule.extensions ? [...rule.extensions] : null,
          // What filegate lets through: the operator's cap, or the documented one where it is lower.
          max_file_bytes: effectiveMaxBytes(p, purpose),
          documented_max_file_bytes: rule.documentedMaxFileBytes ?? p.documentedMaxFileBytes,
          max_bytes_by_extension: rule.maxBytesByExtension ? { ...rule.maxBytesByExtension } : {},
          max_files: rule.maxFiles ?? null,
          ...(byPurpose ? { files: purposeFiles(purpose) } : {}),
          content_available: rule.content,
          source: rule.source ?? null,
          note: rule.note ?? null,
        })),
        docs: p.docs ? { region: p.docs.region, read_on: p.docs.readOn, sources: [...p.docs.sources] } : null,
        allowed_extensions: anyExtension ? null : [...extensions].sort(),
        account: {
          max_files: p.maxFiles,
          max_bytes: p.maxTotalBytes,
          ...(account ? { files: Number(used?.files ?? 0), bytes: Number(used?.bytes ?? 0) } : {}),
        },
        tenant: {
          max_files: quota.maxFiles,
          max_bytes: quota.maxBytes,
          files: Number(mine?.files ?? 0),
          bytes: Number(mine?.bytes ?? 0),
        },
      }
    })
  }

  /** Refreshes the live-usage gauges (called on scrape). */
  async refreshUsageGauges(): Promise<void> {
    const usage = await this.usage()
    for (const p of this.deps.config.providers) {
      const u = usage.find((x) => x.provider === p.name)
      this.deps.metrics.providerFiles.set({ provider: p.name }, Number(u?.files ?? 0))
      this.deps.metrics.providerBytes.set({ provider: p.name }, Number(u?.bytes ?? 0))
    }
  }
}

interface Usage {
  provider: string
  files: number
  bytes: number
}

/**
 * A streamed-through body's Content-Length counts its multipart framing too: the parts before the
 * file (at most 10 fields of 8 KiB), the file part's own header (a long filename included) and the
 * closing boundary. A declared length beyond the limit by more than this cannot be a file within it.
 */
export const multipartFramingAllowance = 256 * 1024

const tenantQuotaExceeded = (provider: string, usage: QuotaUsage, bytes: number) =>
  new AppError('TENANT_QUOTA_EXCEEDED', {
    detail: `This upload (${bytes} bytes) would exceed your quota at ${provider} (${usage.max_files ?? '∞'} files, ${usage.max_bytes ?? '∞'} bytes); delete files to make room`,
    extensions: {
      provider,
      limit_files: usage.max_files,
      limit_bytes: usage.max_bytes,
      used_files: Number(usage.files),
      used_bytes: Number(usage.bytes),
    },
  })

/** `auto` moves on to the next provider when this one is unavailable, failing, or full. */
function canFallBack(err: unknown): boolean {
  if (isProviderError(err)) return err.retryable || err.providerFault || err.code === 'PROVIDER_QUOTA_EXCEEDED'
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

const timeoutWaiting = () =>
  new AppError('PROVIDER_TIMEOUT', { detail: 'A concurrent upload of the same content did not finish in time' })
