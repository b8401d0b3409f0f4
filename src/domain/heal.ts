/**
 * Healing a file whose provider copy vanished (POST /v1/files/{id}/ensure, and the reconcile job):
 * claim the heal (SQL claim_heal: one healer per file across replicas, a lease renewed while it
 * works), ask the provider whether it still has the file, and when it does not, upload it again
 * from the kept original under the same filegate id (complete_heal: the old provider id joins the
 * row's history, and the old copy is deleted like any other: it may still be there, and a 404
 * answers that it was not). Without an original to upload from, the row is tombstoned `reconciled`.
 * Where retrieve is a walk of the listing (GLM), not being shown is no proof that the copy is gone:
 * such a tombstone gets its provider delete too, which a 404 settles.
 *
 * Concurrent callers of one file heal it once: the others wait for the claim to end and answer the
 * row as it is then. A caller that finds the claim's lease run out (its holder died) heals itself.
 */
import type { Config } from '../config.js'
import { AppError, errors } from '../errors.js'
import type { Metrics } from '../metrics.js'
import type { OriginalsStore } from '../originals/index.js'
import type { ProviderRegistry } from '../providers/registry.js'
import type { ProviderAdapter, ProviderFile, UploadInput } from '../providers/types.js'
import type { StorePort } from '../store/port.js'
import {
  claimHeal,
  completeHeal,
  type HealRef,
  reconcileVanishedFile,
  releaseHeal,
  renewHeal,
} from '../store/queries.js'
import { type DeletionDeps, deleteAtProvider } from './deletion.js'
import type { FileRow } from './file-record.js'
import { keptOriginal } from './original-reads.js'
import { OriginalLostError, spoolOriginal } from './original-spool.js'
import type { SettleWaiters } from './settle-waiters.js'
import { removeSpool, type SpooledFile } from './spool.js'
import type { UnsettledCopies } from './unsettled-copies.js'

export interface HealDeps {
  store: StorePort
  providers: ProviderRegistry
  originals: OriginalsStore | undefined
  metrics: Metrics
  deletion: DeletionDeps
  config: Pick<Config, 'timeouts' | 'claimLeaseSeconds' | 'uploadTmpDir'>
  /** Woken when a heal ends here, so that callers waiting on the same file look again at once. */
  waiters: SettleWaiters
  /** complete_heal goes through it: tried again, and the new copy never lost (unsettled-copies.ts). */
  unsettled: UnsettledCopies
}

/** What became of one file: still at its provider, uploaded again, or tombstoned (not live). */
export type HealResult =
  | { outcome: 'present' | 'healed' | 'waited'; row: FileRow }
  | { outcome: 'not_live'; row: FileRow }
  | { outcome: 'unavailable'; row: FileRow; why: string }

const pollMs = 200

/** filegate_heals_total's outcome: a heal whose claim was lost meanwhile healed nothing. */
const metricOutcome: Record<HealResult['outcome'], 'present' | 'healed' | 'unavailable' | 'failed'> = {
  present: 'present',
  healed: 'healed',
  unavailable: 'unavailable',
  waited: 'failed',
  not_live: 'failed',
}

/**
 * Provider states that mean the copy is gone although the provider still answers for it. The
 * OpenAI-style file object has a free-form `status` (platform.openai.com/docs/api-reference/files/object);
 * a provider reporting its file expired or deleted no longer serves it, whatever the dialect.
 */
const goneStates = new Set(['expired', 'deleted'])

export const isGoneAtProvider = (file: ProviderFile | null) =>
  file === null || goneStates.has(file.status?.toLowerCase() ?? '')

export class Healer {
  constructor(private readonly deps: HealDeps) {}

  /**
   * Checks one live file of the tenant and heals it when its provider copy is gone. NOT_FOUND for
   * an unknown id (or another tenant's); a provider or store failure is thrown (the claim let go).
   */
  async heal(tenant: string, id: string): Promise<HealResult> {
    const { store, config, waiters } = this.deps
    const deadline = Date.now() + config.timeouts.uploadMs * 2
    /** The end of the lease of the claim this caller waited on (the database's clock). */
    let waitedUntil: number | undefined
    for (;;) {
      const claim = await claimHeal(store, tenant, id, config.claimLeaseSeconds)
      if (claim.outcome === 'not_live') {
        if (!claim.file) throw errors.fileNotFound(id)
        return { outcome: 'not_live', row: claim.file }
      }
      if (claim.outcome === 'in_progress') {
        if (Date.now() > deadline) {
          throw new AppError('PROVIDER_TIMEOUT', { detail: 'A concurrent heal of this file did not finish in time' })
        }
        waitedUntil = Date.parse(claim.heal_until)
        await waiters.wait(id, pollMs + Math.random() * 50)
        continue
      }
      const ref: HealRef = { id, healToken: claim.heal_token }
      // The heal waited on ended before its lease did: its holder let go, and the row is its outcome.
      if (waitedUntil !== undefined && Date.now() < waitedUntil) {
        return { outcome: 'waited', row: (await releaseHeal(store, ref)) ?? claim.file }
      }
      return this.healClaimed(claim.file, ref)
    }
  }

  private async healClaimed(row: FileRow, ref: HealRef): Promise<HealResult> {
    const { store, metrics, config, waiters } = this.deps
    const heartbeat = setInterval(
      () => void renewHeal(store, ref, config.claimLeaseSeconds).catch(() => undefined),
      (config.claimLeaseSeconds * 1000) / 3,
    )
    heartbeat.unref()
    try {
      const result = await this.checkAndHeal(row, ref)
      metrics.heals.inc({ provider: row.provider, outcome: metricOutcome[result.outcome] })
      return result
    } catch (err) {
      metrics.heals.inc({ provider: row.provider, outcome: 'failed' })
      await releaseHeal(store, ref).catch(() => undefined)
      throw err
    } finally {
      clearInterval(heartbeat)
      waiters.notify(row.id)
    }
  }

  private async checkAndHeal(row: FileRow, ref: HealRef): Promise<HealResult> {
    const { originals } = this.deps
    const adapter = this.deps.providers.require(row.provider)
    let listed: ProviderFile | null | undefined
    if (row.provider_file_id) {
      listed = await adapter.retrieve(row.provider_file_id)
      if (!isGoneAtProvider(listed))
        return { outcome: 'present', row: (await releaseHeal(this.deps.store, ref)) ?? row }
    }
    // Gone for sure when the provider said so: a 404 to a retrieve, or a file object saying so.
    const provenGone = listed !== null || !adapter.retrieveByListing
    const kept = keptOriginal(originals, row)
    if ('why' in kept) return this.tombstone(ref, provenGone, kept.why)
    let spool: SpooledFile
    try {
      spool = await spoolOriginal(
        kept.store,
        { tenant: row.tenant_id, sha256: row.sha256 },
        {
          dir: this.deps.config.uploadTmpDir,
          maxBytes: Number(row.bytes),
          onLimit: () => new OriginalLostError('the kept bytes are more than the file had'),
        },
      )
    } catch (err) {
      if (!(err instanceof OriginalLostError)) throw err
      return this.tombstone(ref, provenGone, err.why)
    }
    try {
      return await this.uploadAgain(row, ref, adapter, spool)
    } finally {
      await removeSpool(spool)
    }
  }

  /** No original to heal from: tombstoned `reconciled`; a copy not proven gone is deleted at the provider. */
  private async tombstone(ref: HealRef, provenGone: boolean, why: string): Promise<HealResult> {
    const tomb = await reconcileVanishedFile(this.deps.store, ref, provenGone)
    if (tomb.deleted_at === null || tomb.provider_deleted) return { outcome: 'unavailable', row: tomb, why }
    return { outcome: 'unavailable', row: (await deleteAtProvider(this.deps.deletion, tomb)).row, why }
  }

  /** One provider upload (retries allowed: the spool can be read again), then complete_heal. */
  private async uploadAgain(row: FileRow, ref: HealRef, adapter: ProviderAdapter, spool: SpooledFile) {
    const { store, config, metrics } = this.deps
    const input: UploadInput = {
      source: spool.buffer
        ? { kind: 'buffer', buffer: spool.buffer, bytes: spool.bytes }
        : { kind: 'file', path: spool.path, bytes: spool.bytes },
      filename: row.filename,
      mimeType: row.mime_type,
      purpose: row.purpose,
    }
    metrics.uploadAttempts.inc({ provider: row.provider })
    const sent = await adapter.upload(input, AbortSignal.timeout(config.timeouts.uploadMs))
    const copy = { provider: row.provider, rowId: row.id, healToken: ref.healToken, providerFileId: sent.id }
    const done = await this.deps.unsettled.settle(copy, () =>
      completeHeal(store, ref, {
        providerFileId: sent.id,
        // A remade copy has the provider's new expiry (Gemini: 48 hours again) and processing state.
        expiresAt: typeof sent.expiresAt === 'number' ? new Date(sent.expiresAt * 1000) : undefined,
        providerState: sent.state,
      }),
    )
    if (done.outcome === 'healed') {
      metrics.uploadBytes.inc({ provider: row.provider, status: 'success' }, spool.bytes)
      // The replaced copy, queued as an orphan tombstone: deleted now, or by the provider_deletes sweep.
      if (done.replaced) await deleteAtProvider(this.deps.deletion, done.replaced)
      return { outcome: 'healed' as const, row: done.file }
    }
    // The claim was lost meanwhile (the file deleted, or its lease taken over): the new copy is an orphan.
    await deleteAtProvider(this.deps.deletion, done.orphan)
    return done.file.deleted_at === null && done.file.status === 'completed'
      ? { outcome: 'waited' as const, row: done.file }
      : { outcome: 'not_live' as const, row: done.file }
  }
}
