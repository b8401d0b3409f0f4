/**
 * Every SQL function filegate calls (migrations/), one typed function each: its arguments, its
 * result. This is the only module that names SQL functions; the rest of the code calls these.
 * The steps of the upload path and of a sweep batch run in a span named after the step, with the
 * SQL function as `db.operation.name`. A function that makes an audited change gets `p_audit`, who
 * acts (src/audit-context.ts), and records the event in the transaction of the change.
 */
import type { Attributes } from '@opentelemetry/api'
import { currentAudit } from '../audit-context.js'
import type { DeletionReason, ProviderState } from '../schemas.js'
import { inSpan } from '../spans.js'
import type { CallArgs, StorePort } from './port.js'
import type { FileRow } from './rows.js'

type Row = Record<string, unknown>
type Describe = (result: unknown) => Attributes
const outcome: Describe = (result) => ({ 'filegate.outcome': String((result as Row | null)?.outcome ?? 'none') })
const failed: Describe = () => ({ 'filegate.outcome': 'failed' })
const rows: Describe = (result) => ({ 'filegate.rows': Array.isArray(result) ? result.length : 0 })

/** One call in a span of its own: the step's name, the SQL function, the provider it concerns. */
function traced<T>(store: StorePort, span: string, describe: Describe, fn: string, args: CallArgs): Promise<T> {
  const attributes: Attributes = { 'db.operation.name': fn }
  if (typeof args.p_provider === 'string') attributes['filegate.provider'] = args.p_provider
  return inSpan(span, attributes, () => store.call<T>(fn, args), describe)
}

// ---- schema --------------------------------------------------------------------------------

/**
 * The schema version the database reports; 0 when the schema is absent: 42883 is Postgres's
 * undefined_function (PostgreSQL Appendix A), PGRST202 PostgREST's "not in the schema cache".
 */
export async function schemaVersion(store: StorePort): Promise<number> {
  try {
    return Number(await store.call<number>('filegate_schema_version'))
  } catch (err) {
    const code = (err as { code?: string }).code
    if (code === '42883' || code === 'PGRST202') return 0
    throw err
  }
}

// ---- the upload claim ------------------------------------------------------------------------

/** What a claim reports when a cap would be broken: the usage it counted and the caps. */
export interface QuotaUsage {
  /** 'purpose': the provider's documented cap on files of one purpose (`purpose`), no byte cap. */
  scope?: 'purpose'
  purpose?: string
  files: number
  bytes: number
  max_files: number | null
  max_bytes: number | null
}

export type Claim =
  | { outcome: 'claimed'; claim_token: string; file: FileRow }
  | { outcome: 'duplicate'; file: FileRow }
  | { outcome: 'in_progress'; file: FileRow & { claimed_until?: string | null } }
  | ({ outcome: 'quota_exceeded' } & QuotaUsage)
  | ({ outcome: 'tenant_quota_exceeded' } & QuotaUsage)

export interface ClaimArgs {
  tenantId: string
  provider: string
  purpose: string
  sha256: string
  bytes: number
  filename: string
  mimeType: string
  metadata: Record<string, unknown>
  expiresAt: Date | undefined
  /** A claim older than this without a live lease is taken over. */
  stuckMinutes: number
  /** The provider account's caps (null: none). */
  maxFiles: number | null
  maxBytes: number | null
  /** The provider's documented cap on files of this purpose, counted in the same locked claim. */
  maxPurposeFiles: number | undefined
  owner: string
  leaseSeconds: number
  /** The tenant's own caps at this provider: always applied. */
  tenantMaxFiles: number | null
  tenantMaxBytes: number | null
  /** Its share of the account's caps (and of the purpose's file count): applied while the account is shared. */
  shareMaxFiles?: number | null
  shareMaxBytes?: number | null
  shareMaxPurposeFiles?: number | null
  /** The configuration lets more than one tenant in; else the claim asks whether another tenant has a row. */
  sharedByConfig?: boolean
}

/** Claims (tenant, provider, purpose, sha256), or reports the duplicate, the uploader at work, or the cap. */
export function claimUpload(store: StorePort, a: ClaimArgs): Promise<Claim> {
  const args: CallArgs = {
    ...(a.maxPurposeFiles
      ? { p_max_purpose_files: a.maxPurposeFiles, p_share_max_purpose_files: a.shareMaxPurposeFiles ?? undefined }
      : {}),
    p_tenant_id: a.tenantId,
    p_provider: a.provider,
    p_purpose: a.purpose,
    p_sha256: a.sha256,
    p_bytes: a.bytes,
    p_filename: a.filename,
    p_mime_type: a.mimeType,
    p_metadata: a.metadata,
    p_expires_at: a.expiresAt,
    p_stuck_minutes: a.stuckMinutes,
    p_max_files: a.maxFiles ?? undefined,
    p_max_bytes: a.maxBytes ?? undefined,
    p_owner: a.owner,
    p_lease_seconds: a.leaseSeconds,
    p_tenant_max_files: a.tenantMaxFiles ?? undefined,
    p_tenant_max_bytes: a.tenantMaxBytes ?? undefined,
    p_share_max_files: a.shareMaxFiles ?? undefined,
    p_share_max_bytes: a.shareMaxBytes ?? undefined,
    p_shared: a.sharedByConfig ?? false,
  }
  const fn = a.maxPurposeFiles ? 'claim_upload_within_purpose_cap' : 'claim_upload'
  return traced(store, 'filegate.upload.claim', outcome, fn, args)
}

export interface ClaimRef {
  id: string
  claimToken: string
}

/** Extends the owner's lease on its claim. */
export function renewUploadClaim(store: StorePort, claim: ClaimRef, leaseSeconds: number): Promise<unknown> {
  return store.call('renew_upload_claim', {
    p_id: claim.id,
    p_claim_token: claim.claimToken,
    p_lease_seconds: leaseSeconds,
  })
}

export type Completion = { outcome: 'completed' | 'lost'; file: FileRow; orphan?: FileRow }

/** Records the provider's copy on the claimed row; `lost` when the claim was taken over meanwhile. */
export function completeUpload(
  store: StorePort,
  claim: ClaimRef,
  done: {
    providerFileId: string
    bytes: number
    /** The original is kept in the originals store. */
    originalStored?: boolean
    /** The provider's own expiry of its copy: the row expires no later. */
    providerExpiresAt?: Date | undefined
    /** The provider's processing state, where it has one; 'failed' settles the row failed. */
    providerState?: ProviderState | undefined
    providerError?: string | undefined
  },
): Promise<Completion> {
  return traced(store, 'filegate.upload.settle', outcome, 'complete_upload', {
    p_id: claim.id,
    p_claim_token: claim.claimToken,
    p_provider_file_id: done.providerFileId,
    p_bytes: done.bytes,
    p_original_stored: done.originalStored ?? false,
    p_provider_expires_at: done.providerExpiresAt?.toISOString(),
    p_provider_state: done.providerState,
    p_provider_error: done.providerError,
    p_audit: currentAudit(),
  })
}

/**
 * Records the state the provider now reports for a file still processing; 'failed' settles it
 * failed with the provider's message. The row as it now is (null when there is none).
 */
export function recordProviderState(
  store: StorePort,
  tenant: string,
  id: string,
  state: { state: ProviderState; error?: string | undefined },
): Promise<FileRow | null> {
  return store.call('record_provider_state', {
    p_tenant_id: tenant,
    p_id: id,
    p_state: state.state,
    p_error: state.error,
  })
}

/**
 * Marks the claimed row failed. With the provider's copy (refused after the fact), the row becomes
 * a tombstone owing that provider delete, which is returned.
 */
export function failUpload(
  store: StorePort,
  claim: ClaimRef,
  failure: { error: string; providerFileId?: string },
): Promise<FileRow | null> {
  return traced(store, 'filegate.upload.settle', failed, 'fail_upload', {
    p_id: claim.id,
    p_claim_token: claim.claimToken,
    p_error: failure.error,
    ...(failure.providerFileId === undefined ? {} : { p_provider_file_id: failure.providerFileId }),
  })
}

/** A provider copy made for a row whose settle could not be recorded in time (see unsettled-copies.ts). */
export interface UnsettledCopy {
  /** The row the copy was made for: an upload's claimed row, or the file a heal remade. */
  rowId: string
  providerFileId: string
  /** The upload's claim, or the heal's, when the copy was made under one. */
  claimToken?: string | undefined
  healToken?: string | undefined
  bytes?: number | undefined
}

export type UnsettledRecord = { outcome: 'settled'; file: FileRow } | { outcome: 'orphan'; file: FileRow }

/**
 * Records a copy whose settle never answered: `settled` when a row holds it live (a settle did
 * commit), else the tombstone owing its provider delete. Null when the row is gone altogether.
 */
export function recordUnsettledCopy(
  store: StorePort,
  copy: UnsettledCopy,
  why: string,
): Promise<UnsettledRecord | null> {
  return store.call('record_unsettled_copy', {
    p_id: copy.rowId,
    p_provider_file_id: copy.providerFileId,
    p_why: why,
    p_claim_token: copy.claimToken,
    p_heal_token: copy.healToken,
    p_bytes: copy.bytes,
  })
}

/** One dedup probe: a live copy at any of `providers` (in order of preference). */
export interface DedupProbe {
  tenant_id: string
  providers: string[]
  purpose: string
  sha256: string
}

/** A batch of dedup probes in one statement: one answer (a live row or null) per probe, in order. */
export function findLiveDuplicates(store: StorePort, probes: readonly DedupProbe[]): Promise<Array<FileRow | null>> {
  return store.call('find_live_duplicates', { p_batch: { probes } })
}

// ---- reads -----------------------------------------------------------------------------------

export type FileRowWithClaim = FileRow & { claimed_until?: string | null }

export function getFile(store: StorePort, tenantId: string, id: string): Promise<FileRowWithClaim | null> {
  return store.call('get_file', { p_tenant_id: tenantId, p_id: id })
}

export function getFileByProviderId(
  store: StorePort,
  tenantId: string,
  provider: string,
  providerFileId: string,
): Promise<FileRow | null> {
  return store.call('get_file_by_provider_id', {
    p_tenant_id: tenantId,
    p_provider: provider,
    p_provider_file_id: providerFileId,
  })
}

export interface ListArgs {
  tenantId: string
  limit: number
  provider: string | undefined
  status: string | undefined
  sha256: string | undefined
  purpose: string | undefined
  includeDeleted: boolean
  after: { createdAt: string; id: string } | undefined
  ascending: boolean
}

/** One keyset page of a tenant's files. */
export function listFiles(store: StorePort, a: ListArgs): Promise<{ data: FileRow[]; has_more: boolean }> {
  return store.call('list_files', {
    p_tenant_id: a.tenantId,
    p_limit: a.limit,
    p_provider: a.provider,
    p_status: a.status,
    p_sha256: a.sha256,
    p_purpose: a.purpose,
    p_include_deleted: a.includeDeleted,
    p_after_created_at: a.after?.createdAt,
    p_after_id: a.after?.id,
    p_ascending: a.ascending,
  })
}

// ---- usage -----------------------------------------------------------------------------------

export interface Usage {
  provider: string
  files: number
  bytes: number
}

/** What occupies each provider account now (every tenant's files). */
export const providerUsage = (store: StorePort): Promise<Usage[]> => store.call('provider_usage')

/** Whether a tenant's share caps apply now: the configuration says so, or another tenant has a row. */
export const tenantAccountShared = (store: StorePort, tenantId: string, sharedByConfig: boolean): Promise<boolean> =>
  store.call<boolean>('tenant_account_shared', { p_tenant_id: tenantId, p_shared: sharedByConfig })

/** What one tenant's files occupy at each provider. */
export const tenantUsage = (store: StorePort, tenantId: string): Promise<Usage[]> =>
  store.call('tenant_usage', { p_tenant_id: tenantId })

/** Every tenant's live files per provider and purpose. */
export const purposeUsage = (store: StorePort): Promise<Array<{ provider: string; purpose: string; files: number }>> =>
  store.call('purpose_usage')

// ---- deletes ---------------------------------------------------------------------------------

/** Tombstones a file (idempotent: an existing tombstone is returned as it is). */
export function softDeleteFile(store: StorePort, id: string, reason: DeletionReason): Promise<FileRow> {
  return store.call('soft_delete_file', { file_id: id, reason, p_audit: currentAudit() })
}

/** Leases a tombstone's provider delete to this worker; null when another holds it or it is done. */
export function claimProviderDelete(store: StorePort, id: string, leaseSeconds: number): Promise<FileRow | null> {
  return store.call('claim_provider_delete', { p_id: id, p_lease_seconds: leaseSeconds })
}

/** Records a failed provider delete; the next attempt waits at least `minDelaySeconds`. */
export function recordProviderDeleteFailure(
  store: StorePort,
  id: string,
  failure: { error: string; minDelaySeconds: number },
): Promise<FileRow | null> {
  return store.call('record_provider_delete_failure', {
    p_id: id,
    p_error: failure.error,
    p_min_delay_seconds: failure.minDelaySeconds,
  })
}

export function markProviderDeleted(store: StorePort, id: string): Promise<FileRow | null> {
  return store.call('mark_provider_deleted', { p_id: id })
}

/** Marks many provider deletes done in one statement; counts them by provider and reason. */
export function markProviderDeletedMany(
  store: StorePort,
  ids: string[],
): Promise<Array<{ provider: string; reason: string; n: number }>> {
  return store.call('mark_provider_deleted_many', { p_ids: ids })
}

// ---- the sweeps ------------------------------------------------------------------------------

/** Takes or renews a job's lease; false when another holder's lease is live. */
export function acquireJobLease(store: StorePort, job: string, holder: string, ttlSeconds: number): Promise<boolean> {
  return store.call('acquire_job_lease', { p_job: job, p_holder: holder, p_ttl_seconds: ttlSeconds })
}

export function releaseJobLease(store: StorePort, job: string, holder: string): Promise<unknown> {
  return store.call('release_job_lease', { p_job: job, p_holder: holder })
}

/** The sweep jobs that work on rows, and the settings their SQL reads. */
export type SweepJob = 'expired' | 'orphaned' | 'stuck' | 'provider_deletes'
export interface SweepSettings {
  retentionDays: number
  orphanAgeDays: number
  stuckUploadMinutes: number
}

/** A job's candidates, read only (dry run). */
export function findSweepCandidates(
  store: StorePort,
  job: SweepJob,
  settings: SweepSettings,
  limit: number,
): Promise<FileRow[]> {
  switch (job) {
    case 'expired':
      return store.call('find_expired_files', { retention_days: settings.retentionDays, p_limit: limit })
    case 'orphaned':
      return store.call('find_orphaned_files', { orphan_age_days: settings.orphanAgeDays, p_limit: limit })
    case 'stuck':
      return store.call('find_stuck_uploads', { stuck_minutes: settings.stuckUploadMinutes, p_limit: limit })
    case 'provider_deletes':
      return store.call('find_pending_provider_deletes', { p_limit: limit })
  }
}

/** Claims (and tombstones) one batch of a job's rows, their provider deletes leased for `leaseSeconds`. */
export function claimSweepBatch(
  store: StorePort,
  job: SweepJob,
  settings: SweepSettings,
  limit: number,
  leaseSeconds: number,
): Promise<FileRow[]> {
  const batch = (fn: string, args: CallArgs) => traced<FileRow[]>(store, 'filegate.cleanup.batch', rows, fn, args)
  switch (job) {
    case 'expired':
      return batch('sweep_expired_files', {
        retention_days: settings.retentionDays,
        p_limit: limit,
        p_lease_seconds: leaseSeconds,
        p_audit: currentAudit(),
      })
    case 'orphaned':
      return batch('sweep_orphaned_files', {
        orphan_age_days: settings.orphanAgeDays,
        p_limit: limit,
        p_lease_seconds: leaseSeconds,
      })
    case 'stuck':
      return batch('fail_stuck_uploads', { stuck_minutes: settings.stuckUploadMinutes, p_limit: limit })
    case 'provider_deletes':
      return batch('claim_provider_deletes', { p_limit: limit, p_lease_seconds: leaseSeconds })
  }
}

/** Of the ids a provider listed, those no row knows. */
export function findUnknownProviderFiles(
  store: StorePort,
  provider: string,
  providerFileIds: string[],
): Promise<string[]> {
  return store.call('find_unknown_provider_files', { p_provider: provider, p_provider_file_ids: providerFileIds })
}

/** Live rows whose provider file was not listed (and is older than the listing): tombstoned when `apply`. */
export function reconcileGoneFiles(
  store: StorePort,
  a: {
    provider: string
    listedIds: string[]
    listedBefore: Date
    apply: boolean
    limit: number
    /** Originals are kept: rows with one are left live (to be healed), not tombstoned. */
    keepOriginalStored?: boolean
  },
): Promise<FileRow[]> {
  // Not being listed is no proof that a copy is gone: the tombstones wait for a provider delete
  // (a 404 there settles them).
  return store.call('reconcile_gone_files', {
    p_provider: a.provider,
    p_provider_file_ids: a.listedIds,
    p_listed_before: a.listedBefore,
    p_apply: a.apply,
    p_limit: a.limit,
    p_keep_original_stored: a.keepOriginalStored ?? false,
    ...(a.apply ? { p_audit: currentAudit(), p_provider_deleted: false } : {}),
  })
}

export interface ReconcileResult {
  provider: string
  unknown_files: number
  finished_at: string
}

/** What the last reconcile of `provider` found: its unknown files still there. */
export function recordReconcileResult(store: StorePort, provider: string, unknownFiles: number): Promise<unknown> {
  return store.call('record_reconcile_result', { p_provider: provider, p_unknown_files: unknownFiles })
}

export const reconcileResults = (store: StorePort): Promise<ReconcileResult[]> => store.call('reconcile_results')

// ---- originals -------------------------------------------------------------------------------

export interface OriginalRef {
  tenantId: string
  sha256: string
}

export type OriginalReference = { outcome: 'referenced'; stored: boolean } | { outcome: 'deleting'; until: string }

/**
 * References (tenant, sha256) for a claimed upload, copy or heal: from then on the originals job
 * leaves it alone. `deleting`: a delete holds it now; wait until `until`, then reference again.
 */
export function referenceOriginal(store: StorePort, ref: OriginalRef, bytes: number): Promise<OriginalReference> {
  return traced(store, 'filegate.original.reference', outcome, 'reference_original', {
    p_tenant_id: ref.tenantId,
    p_sha256: ref.sha256,
    p_bytes: bytes,
  })
}

/** The object is written: it counts in the gauges. False when a delete holds it (reference again). */
export function markOriginalStored(store: StorePort, ref: OriginalRef): Promise<boolean> {
  return store.call('mark_original_stored', { p_tenant_id: ref.tenantId, p_sha256: ref.sha256 })
}

export interface OriginalToDelete {
  tenant_id: string
  sha256: string
  bytes: number
  /** Whether the object was known to be written (a never-written one may still exist). */
  stored: boolean
}

/** Claims up to `limit` originals nothing uses any more, each held for `leaseSeconds`. */
export function claimOriginalDeletes(
  store: StorePort,
  a: { graceSeconds: number; leaseSeconds: number; limit: number },
): Promise<OriginalToDelete[]> {
  return traced(store, 'filegate.cleanup.batch', rows, 'claim_original_deletes', {
    p_grace_seconds: a.graceSeconds,
    p_lease_seconds: a.leaseSeconds,
    p_limit: a.limit,
  })
}

/** What claimOriginalDeletes would claim now, read only (the dry run). */
export function findOriginalDeletes(
  store: StorePort,
  a: { graceSeconds: number; limit: number },
): Promise<OriginalToDelete[]> {
  return store.call('find_original_deletes', { p_grace_seconds: a.graceSeconds, p_limit: a.limit })
}

/** The object is removed; false when an upload referenced the original again meanwhile. */
export function finishOriginalDelete(store: StorePort, ref: OriginalRef): Promise<boolean> {
  return store.call('finish_original_delete', { p_tenant_id: ref.tenantId, p_sha256: ref.sha256 })
}

export function releaseOriginalDelete(store: StorePort, ref: OriginalRef): Promise<boolean> {
  return store.call('release_original_delete', { p_tenant_id: ref.tenantId, p_sha256: ref.sha256 })
}

/** Keeps the claims on `refs` for `leaseSeconds` more (those whose lease ran out stay lost); how many. */
export async function renewOriginalDeletes(store: StorePort, refs: OriginalRef[], leaseSeconds: number) {
  const keys = refs.map((r) => ({ tenant_id: r.tenantId, sha256: r.sha256 }))
  return Number(await store.call('renew_original_deletes', { p_keys: { keys }, p_lease_seconds: leaseSeconds }))
}

/** Of the objects listed in the store, those no row knows. */
export function unknownOriginals(
  store: StorePort,
  keys: Array<{ tenant_id: string; sha256: string }>,
): Promise<Array<{ tenant_id: string; sha256: string }>> {
  // An object, not an array: the Postgres drivers would send a JS array as a Postgres array.
  return store.call('unknown_originals', { p_keys: { keys } })
}

/** Holds an object no row knows for its removal (a row with a delete lease); false when a row exists by now. */
export function claimUnknownOriginal(
  store: StorePort,
  ref: OriginalRef,
  a: { bytes: number; leaseSeconds: number },
): Promise<boolean> {
  return store.call('claim_unknown_original', {
    p_tenant_id: ref.tenantId,
    p_sha256: ref.sha256,
    p_bytes: a.bytes,
    p_lease_seconds: a.leaseSeconds,
  })
}

export const originalsUsage = (store: StorePort): Promise<{ objects: number; bytes: number }> =>
  store.call('originals_usage')

// ---- healing ---------------------------------------------------------------------------------

export type HealClaim =
  | { outcome: 'claimed'; heal_token: string; file: FileRow }
  | { outcome: 'in_progress'; file: FileRow; heal_until: string }
  | { outcome: 'not_live'; file: FileRow | null }

export interface HealRef {
  id: string
  healToken: string
}

/** Claims the right to check and heal one live completed file of the tenant. */
export function claimHeal(store: StorePort, tenantId: string, id: string, leaseSeconds: number): Promise<HealClaim> {
  return traced(store, 'filegate.heal.claim', outcome, 'claim_heal', {
    p_tenant_id: tenantId,
    p_id: id,
    p_lease_seconds: leaseSeconds,
  })
}

export function renewHeal(store: StorePort, heal: HealRef, leaseSeconds: number): Promise<boolean> {
  return store.call('renew_heal', { p_id: heal.id, p_heal_token: heal.healToken, p_lease_seconds: leaseSeconds })
}

/** Lets go of the heal claim (the provider still had the file, or the heal failed); the row, or null. */
export function releaseHeal(store: StorePort, heal: HealRef): Promise<FileRow | null> {
  return store.call('release_heal', { p_id: heal.id, p_heal_token: heal.healToken })
}

export type HealCompletion =
  | { outcome: 'healed'; file: FileRow; replaced: FileRow | null }
  | { outcome: 'lost'; file: FileRow; orphan: FileRow }

/**
 * Records the remade copy (the old provider id joins the history; `replaced`: the old copy as an
 * orphan tombstone, to delete); `lost`: the new copy is an orphan to delete.
 */
export function completeHeal(
  store: StorePort,
  heal: HealRef,
  done: { providerFileId: string; expiresAt?: Date | undefined; providerState?: ProviderState | undefined },
): Promise<HealCompletion> {
  return traced(store, 'filegate.heal.settle', outcome, 'complete_heal', {
    p_id: heal.id,
    p_heal_token: heal.healToken,
    p_provider_file_id: done.providerFileId,
    ...(done.expiresAt === undefined ? {} : { p_expires_at: done.expiresAt }),
    p_provider_state: done.providerState,
    p_audit: currentAudit(),
  })
}

/**
 * The copy is gone and cannot be remade: the row is tombstoned `reconciled`, already gone at the
 * provider when `providerDeleted` (the provider said so), else waiting for its provider delete.
 */
export function reconcileVanishedFile(store: StorePort, heal: HealRef, providerDeleted = true): Promise<FileRow> {
  return store.call('reconcile_vanished_file', {
    p_id: heal.id,
    p_heal_token: heal.healToken,
    p_audit: currentAudit(),
    p_provider_deleted: providerDeleted,
  })
}

// ---- resumable uploads -----------------------------------------------------------------------

export type ResumableProtocol = 'tus' | 'openai'
export type ResumableStatus = 'receiving' | 'processing' | 'completed' | 'failed' | 'cancelled' | 'expired'

/** A segment of a resumable upload's staged bytes: a tus PATCH's, or an OpenAI part's. */
export interface SegmentRow {
  id: string
  bytes: number
  /** tus: the offset it starts at; null for OpenAI parts (ordered by the complete call). */
  position?: number | null
  created_at?: string
}

/** One resumable upload as the database keeps it (migration 0011). */
export interface ResumableRow {
  id: string
  tenant_id: string
  protocol: ResumableProtocol
  provider: string
  purpose: string | null
  filename: string
  mime_type: string
  bytes: number
  received: number
  metadata: Record<string, unknown>
  file_expires_in: number | null
  sha256: string | null
  /** The providers its creator's key may upload to (migration 0013); null = every provider. */
  allowed_providers?: string[] | null
  status: ResumableStatus
  file_id: string | null
  error: string | null
  error_code: string | null
  created_at: string
  updated_at: string
  expires_at: string
  /** Another holder's lease (a PATCH, a completion) is live. */
  locked: boolean
  locked_until: string | null
  /** Completions begun (migration 0012). */
  attempts: number
  /** A completion deferred after a failure waiting cures is taken up again from then on. */
  next_attempt_at: string | null
  /** OpenAI: the md5 the completion was begun with (kept when it is taken over). */
  part_md5: string | null
  segments?: SegmentRow[]
}

export interface ResumableCreateArgs {
  tenantId: string
  protocol: ResumableProtocol
  provider: string
  purpose: string | undefined
  filename: string
  mimeType: string
  bytes: number
  metadata: Record<string, unknown>
  fileExpiresIn: number | undefined
  sha256: string | undefined
  ttlSeconds: number
  tenantMaxFiles: number | null
  tenantMaxBytes: number | null
  /** The tenant's share of the account's caps, for a cap it has none of (as claim_upload takes them). */
  shareMaxFiles: number | null
  shareMaxBytes: number | null
  /** The configuration lets more than one tenant in (the account is shared whatever the rows say). */
  sharedByConfig: boolean
  /** The providers the creator's key may upload to; null = every provider. */
  allowedProviders: readonly string[] | null
}

export type ResumableCreation =
  | { outcome: 'created'; upload: ResumableRow }
  | ({ outcome: 'tenant_quota_exceeded' } & QuotaUsage)

/**
 * Creates a resumable upload, its declared bytes counted with what the tenant has staged against the
 * caps that apply to it (its own, else its share of a shared account: the claim's rule, in SQL).
 */
export function createResumableUpload(store: StorePort, a: ResumableCreateArgs): Promise<ResumableCreation> {
  return traced(store, 'filegate.resumable.create', outcome, 'create_resumable_upload', {
    p_tenant_id: a.tenantId,
    p_protocol: a.protocol,
    p_provider: a.provider,
    p_purpose: a.purpose,
    p_filename: a.filename,
    p_mime_type: a.mimeType,
    p_bytes: a.bytes,
    p_metadata: a.metadata,
    p_file_expires_in: a.fileExpiresIn,
    p_sha256: a.sha256,
    p_ttl_seconds: a.ttlSeconds,
    p_tenant_max_files: a.tenantMaxFiles ?? undefined,
    p_tenant_max_bytes: a.tenantMaxBytes ?? undefined,
    p_share_max_files: a.shareMaxFiles ?? undefined,
    p_share_max_bytes: a.shareMaxBytes ?? undefined,
    p_shared: a.sharedByConfig,
    p_allowed_providers: a.allowedProviders ?? undefined,
  })
}

/** The tenant's upload with its segments; null when it has none of that id. */
export function getResumableUpload(store: StorePort, tenantId: string, id: string): Promise<ResumableRow | null> {
  return store.call('get_resumable_upload', { p_tenant_id: tenantId, p_id: id })
}

export type ResumableLock =
  | { outcome: 'locked'; token: string; upload: ResumableRow }
  | { outcome: 'busy' | 'offset_mismatch' | 'settled'; upload: ResumableRow }

/** Takes the upload's lease (a tus PATCH at `offset`, or a completion); null when the tenant has no such upload. */
export function lockResumableUpload(
  store: StorePort,
  a: { tenantId: string; id: string; leaseSeconds: number; offset?: number },
): Promise<ResumableLock | null> {
  return traced(store, 'filegate.resumable.lock', outcome, 'lock_resumable_upload', {
    p_tenant_id: a.tenantId,
    p_id: a.id,
    p_lease_seconds: a.leaseSeconds,
    p_offset: a.offset,
  })
}

export interface ResumableLease {
  id: string
  token: string
}

export function renewResumableLock(store: StorePort, lease: ResumableLease, leaseSeconds: number): Promise<boolean> {
  return store.call('renew_resumable_lock', { p_id: lease.id, p_token: lease.token, p_lease_seconds: leaseSeconds })
}

/** Lets go of the lease; a completion that failed goes back to receiving, its error noted. */
export function releaseResumableLock(
  store: StorePort,
  lease: ResumableLease,
  failure?: { error: string; code: string },
): Promise<ResumableRow | null> {
  return store.call('release_resumable_lock', {
    p_id: lease.id,
    p_token: lease.token,
    p_error: failure?.error,
    p_error_code: failure?.code,
  })
}

/** Records a tus segment at the current offset under the lease; null when the lease was lost. */
export function appendResumableSegment(
  store: StorePort,
  lease: ResumableLease,
  segment: { id: string; bytes: number },
  keepLock: boolean,
): Promise<ResumableRow | null> {
  return traced(store, 'filegate.resumable.append', rows, 'append_resumable_segment', {
    p_id: lease.id,
    p_token: lease.token,
    p_segment_id: segment.id,
    p_bytes: segment.bytes,
    p_keep_lock: keepLock,
  })
}

export type PartAddition =
  | { outcome: 'added'; part: SegmentRow & { created_at: string } }
  | { outcome: 'too_large' | 'processing' | 'settled'; upload: ResumableRow }

/** Records an OpenAI part; null when the tenant has no such upload. */
export function addResumablePart(
  store: StorePort,
  a: { tenantId: string; id: string; segmentId: string; bytes: number },
): Promise<PartAddition | null> {
  return traced(store, 'filegate.resumable.part', outcome, 'add_resumable_part', {
    p_tenant_id: a.tenantId,
    p_id: a.id,
    p_segment_id: a.segmentId,
    p_bytes: a.bytes,
  })
}

export type CompletionStart =
  | { outcome: 'processing'; segments: SegmentRow[]; upload: ResumableRow }
  | { outcome: 'invalid'; reason: string }
  | { outcome: 'lost' }

/**
 * Under the lease: the segments to read in order (OpenAI: `partIds`' order, and its `md5`), the
 * upload processing, one more attempt counted.
 */
export function beginResumableCompletion(
  store: StorePort,
  lease: ResumableLease,
  order: { partIds: string[]; md5?: string | undefined } | undefined,
): Promise<CompletionStart> {
  return traced(store, 'filegate.resumable.complete', outcome, 'begin_resumable_completion', {
    p_id: lease.id,
    p_token: lease.token,
    // An object, not an array: the Postgres drivers would send a JS array as a Postgres array.
    p_part_ids: order === undefined ? undefined : { ids: order.partIds },
    p_md5: order?.md5,
  })
}

/**
 * A completion failed in a way waiting cures: the upload stays processing, the lease is let go and
 * the next attempt is due after `baseSeconds` doubled per attempt made; null when the lease was lost.
 */
export function deferResumableCompletion(
  store: StorePort,
  lease: ResumableLease,
  failure: { error: string; code: string },
  baseSeconds: number,
): Promise<ResumableRow | null> {
  return store.call('defer_resumable_completion', {
    p_id: lease.id,
    p_token: lease.token,
    p_error: failure.error,
    p_error_code: failure.code,
    p_base_seconds: baseSeconds,
  })
}

/** Claims completions to take up (deferred and due, or their holder dead), each under a fresh lease. */
export function claimResumableCompletions(
  store: StorePort,
  a: { limit: number; leaseSeconds: number },
): Promise<Array<{ token: string; upload: ResumableRow }>> {
  return store.call('claim_resumable_completions', { p_limit: a.limit, p_lease_seconds: a.leaseSeconds })
}

export function finishResumableUpload(
  store: StorePort,
  lease: ResumableLease,
  fileId: string,
): Promise<ResumableRow | null> {
  return store.call('finish_resumable_upload', { p_id: lease.id, p_token: lease.token, p_file_id: fileId })
}

export function failResumableUpload(
  store: StorePort,
  lease: ResumableLease,
  failure: { error: string; code: string },
): Promise<ResumableRow | null> {
  return store.call('fail_resumable_upload', {
    p_id: lease.id,
    p_token: lease.token,
    p_error: failure.error,
    p_error_code: failure.code,
  })
}

export type ResumableCancel = { outcome: 'cancelled' | 'processing' | 'settled'; upload: ResumableRow }

export function cancelResumableUpload(store: StorePort, tenantId: string, id: string): Promise<ResumableCancel | null> {
  return store.call('cancel_resumable_upload', { p_tenant_id: tenantId, p_id: id })
}

export interface ResumableRemovals {
  /** The protocol of each upload the claim expired. */
  expired: ResumableProtocol[]
  /** The protocol of each processing upload that expired before its completion succeeded (failed). */
  failed: ResumableProtocol[]
  claimed: Array<{ id: string; token: string; protocol: ResumableProtocol; status: ResumableStatus }>
}

/** Expires what ran out and claims settled uploads whose staged bytes are still there. */
export function claimResumableRemovals(
  store: StorePort,
  a: { limit: number; leaseSeconds: number },
): Promise<ResumableRemovals> {
  return store.call('claim_resumable_removals', { p_limit: a.limit, p_lease_seconds: a.leaseSeconds })
}

/** What the resumable job would remove now, read only (the dry run). */
export function findResumableRemovals(
  store: StorePort,
  limit: number,
): Promise<Array<{ id: string; protocol: ResumableProtocol; status: ResumableStatus }>> {
  return store.call('find_resumable_removals', { p_limit: limit })
}

/** The upload's staged bytes are removed: its segments are forgotten. False when it is not settled. */
export function forgetResumableSegments(store: StorePort, lease: { id: string; token?: string }): Promise<boolean> {
  return store.call('forget_resumable_segments', { p_id: lease.id, p_token: lease.token })
}

/** Drops settled rows past their expiry whose staged bytes are gone (or `id` at once); how many. */
export function deleteSettledResumableUploads(store: StorePort, limit: number, id?: string): Promise<number> {
  return store.call('delete_settled_resumable_uploads', { p_limit: limit, p_id: id })
}

// ---- access: keys and the audit --------------------------------------------------------------

/** A key as the API shows it: never a digest, never the secret. */
export interface KeyRow {
  id: string
  tenant_id: string
  name: string | null
  scopes: string[]
  providers: string[] | null
  key_hint: string
  created_at: string
  created_by: string
  expires_at: string | null
  revoked_at: string | null
  rotated_at: string | null
  previous_key_expires_at: string | null
  last_used_at: string | null
}

/** What authentication reads of a key: its digests (the previous one during a rotation's grace). */
export interface KeyAuthRow {
  id: string
  tenant_id: string
  scopes: string[]
  providers: string[] | null
  key_sha256: string
  previous_sha256: string | null
  previous_until: string | null
  expires_at: string | null
  revoked_at: string | null
  last_used_at: string | null
}

export interface NewKey {
  id: string
  tenantId: string
  name: string | undefined
  scopes: string[]
  providers: string[] | null
  sha256: string
  hint: string
  expiresAt: Date | undefined
  createdBy: string
}

/** Stores a key (its digest) and records `key.create`; every replica hears of it. */
export function createApiKey(store: StorePort, k: NewKey): Promise<KeyRow> {
  return store.call('create_api_key', {
    p_id: k.id,
    p_tenant_id: k.tenantId,
    p_name: k.name,
    p_scopes: k.scopes,
    p_providers: k.providers,
    p_key_sha256: k.sha256,
    p_key_hint: k.hint,
    p_expires_at: k.expiresAt,
    p_created_by: k.createdBy,
    p_audit: currentAudit(),
  })
}

export const getApiKey = (store: StorePort, id: string): Promise<KeyRow | null> =>
  store.call('get_api_key', { p_id: id })

export function findApiKeyForAuth(store: StorePort, id: string): Promise<KeyAuthRow | null> {
  const found: Describe = (row) => ({ 'filegate.key_found': row !== null })
  return traced(store, 'filegate.auth.key_lookup', found, 'find_api_key_for_auth', { p_id: id })
}

/** One keyset page of keys, newest first: one tenant's, or every tenant's (`tenantId` undefined). */
export function listApiKeys(
  store: StorePort,
  a: { tenantId: string | undefined; limit: number; after: { createdAt: string; id: string } | undefined },
): Promise<{ data: KeyRow[]; has_more: boolean }> {
  return store.call('list_api_keys', {
    p_limit: a.limit,
    p_tenant_id: a.tenantId,
    p_after_created_at: a.after?.createdAt,
    p_after_id: a.after?.id,
  })
}

/** Revokes a key (idempotent) and records `key.revoke` once; null for an unknown id. */
export const revokeApiKey = (store: StorePort, id: string): Promise<KeyRow | null> =>
  store.call('revoke_api_key', { p_id: id, p_audit: currentAudit() })

export type Rotation = { outcome: 'rotated' | 'revoked' | 'expired'; key: KeyRow }

/** A new digest for the key; the previous one authenticates for `graceSeconds` more. Null: unknown id. */
export function rotateApiKey(
  store: StorePort,
  id: string,
  r: { sha256: string; hint: string; graceSeconds: number },
): Promise<Rotation | null> {
  return store.call('rotate_api_key', {
    p_id: id,
    p_key_sha256: r.sha256,
    p_key_hint: r.hint,
    p_grace_seconds: r.graceSeconds,
    p_audit: currentAudit(),
  })
}

/** Writes last_used_at of these keys (at most once a minute each); how many were written. */
export const touchApiKeys = (store: StorePort, ids: string[]): Promise<number> =>
  store.call('touch_api_keys', { p_ids: ids })

/** Whether any key was ever created (open mode ends with the first). */
export const apiKeysExist = (store: StorePort): Promise<boolean> => store.call('api_keys_exist')

export interface AuditEventRow {
  id: string
  at: string
  tenant_id: string | null
  actor: string
  action: string
  target: string | null
  request_id: string | null
  ip: string | null
  detail: Record<string, unknown>
}

/** Records an event that is not part of a database change (a cleanup run), as whoever acts now. */
export function recordAuditEvent(
  store: StorePort,
  e: { action: string; tenantId?: string | undefined; target?: string | undefined; detail: Record<string, unknown> },
): Promise<unknown> {
  return store.call('record_audit_event', {
    p_audit: currentAudit(),
    p_action: e.action,
    p_tenant_id: e.tenantId,
    p_target: e.target,
    p_detail: e.detail,
  })
}

export interface AuditQuery {
  tenantId: string | undefined
  action: string | undefined
  target: string | undefined
  since: string | undefined
  limit: number
  after: { at: string; id: string } | undefined
}

/** One keyset page of audit events, newest first. */
export function listAuditEvents(
  store: StorePort,
  q: AuditQuery,
): Promise<{ data: AuditEventRow[]; has_more: boolean }> {
  return store.call('list_audit_events', {
    p_limit: q.limit,
    p_tenant_id: q.tenantId,
    p_action: q.action,
    p_target: q.target,
    p_since: q.since,
    p_after_at: q.after?.at,
    p_after_id: q.after?.id,
  })
}

/** Removes up to `limit` events older than `retentionDays`; how many went. */
export function purgeAuditEvents(store: StorePort, retentionDays: number, limit: number): Promise<number> {
  return traced(store, 'filegate.cleanup.batch', () => ({}), 'purge_audit_events', {
    p_retention_days: retentionDays,
    p_limit: limit,
  })
}

/** How many events the retention sweep would remove now (its dry run). */
export const countAuditPurgeCandidates = (store: StorePort, retentionDays: number): Promise<number> =>
  store.call('count_audit_purge_candidates', { p_retention_days: retentionDays })
