/**
 * The `originals` cleanup job: removes from the originals store what no file needs any more.
 *   originals  objects whose content no row of the tenant uses (no live row, no tombstone still
 *              waiting for its provider delete), unreferenced for ORIGINALS_GRACE_MINUTES. Each is
 *              claimed in SQL (claim_original_deletes: a delete lease, SKIP LOCKED), removed, then
 *              its row dropped (finish_original_delete), so it is deleted exactly once across
 *              replicas; an upload of the same content meanwhile waits for the lease (reference_original
 *              answers `deleting`) and then writes the object anew.
 *   staging    staging objects (an upload that crashed between its write and its commit), older
 *              than the grace and than any upload in flight can be.
 *   unknown    content objects no row knows (a crash between a write and its bookkeeping), older
 *              than the grace: held through the same lease (claim_unknown_original) while removed.
 * The job runs under the job lease like the others; a dry run only reads.
 */
import type { OriginalsStore } from '../originals/index.js'
import type { StoredObject } from '../originals/store.js'
import type { StorePort } from '../store/port.js'
import {
  claimOriginalDeletes,
  claimUnknownOriginal,
  findOriginalDeletes,
  finishOriginalDelete,
  type OriginalRef,
  releaseOriginalDelete,
  unknownOriginals,
} from '../store/queries.js'
import { dryRunIdCap, mapBounded, type ProviderTally, type Tallies, tally } from './sweep-batches.js'

export interface OriginalsSweepDeps {
  store: StorePort
  originals: OriginalsStore
  graceMinutes: number
  /** No upload in flight holds a staging object longer than this (its whole request). */
  inFlightMs: number
  batchSize: number
  concurrency: number
  /** How long a claimed delete holds its original: far longer than one object removal takes. */
  leaseSeconds: number
  renewLease: () => Promise<unknown>
  stopping: () => boolean
  warn(obj: object, msg: string): void
}

export interface OriginalsSweepOptions {
  dryRun: boolean
  /** At most this many candidates of each kind (originals, staging, unknown). */
  limit?: number | undefined
}

const keyOf = (o: { tenant_id: string; sha256: string }) => `${o.tenant_id}/${o.sha256}`

export class OriginalsSweep {
  constructor(
    private readonly deps: OriginalsSweepDeps,
    private readonly options: OriginalsSweepOptions,
  ) {}

  async run(tallies: Tallies): Promise<void> {
    await this.unreferenced(tally(tallies, 'originals'))
    await this.staging(tally(tallies, 'staging'))
    await this.unknown(tally(tallies, 'unknown'))
  }

  private get limit(): number {
    return this.options.limit ?? Number.POSITIVE_INFINITY
  }

  private note(t: ProviderTally, id: string) {
    t.candidates++
    if (!this.options.dryRun) return
    t.candidate_ids ??= []
    if (t.candidate_ids.length < dryRunIdCap) t.candidate_ids.push(id)
  }

  /** Originals nothing uses any more, batch by batch: claimed, removed, forgotten. */
  private async unreferenced(t: ProviderTally): Promise<void> {
    const { store, graceMinutes, leaseSeconds, batchSize } = this.deps
    const graceSeconds = graceMinutes * 60
    if (this.options.dryRun) {
      const found = await findOriginalDeletes(store, { graceSeconds, limit: Math.min(this.limit, dryRunIdCap) })
      for (const o of found) this.note(t, keyOf(o))
      return
    }
    let remaining = this.limit
    while (remaining > 0 && !this.deps.stopping()) {
      const size = Math.min(batchSize, remaining)
      const [batch] = await Promise.all([
        claimOriginalDeletes(store, { graceSeconds, leaseSeconds, limit: size }),
        this.deps.renewLease(),
      ])
      remaining -= batch.length
      for (const o of batch) this.note(t, keyOf(o))
      await mapBounded(batch, this.deps.concurrency, (o) => this.remove(t, { tenantId: o.tenant_id, sha256: o.sha256 }))
      if (batch.length < size) return
    }
  }

  /** Removes one claimed original; a failure lets go of its claim at once (the next run tries again). */
  private async remove(t: ProviderTally, ref: OriginalRef): Promise<void> {
    const { store, originals } = this.deps
    try {
      await originals.remove({ tenant: ref.tenantId, sha256: ref.sha256 })
      // False: an upload referenced it after the lease ran out; its row stays and it writes the object anew.
      await finishOriginalDelete(store, ref)
      t.deleted++
    } catch (err) {
      t.failed++
      await releaseOriginalDelete(store, ref).catch(() => undefined)
      this.deps.warn({ err: { message: (err as Error).message } }, 'original delete failed')
    }
  }

  /** Staging objects older than the grace and than any upload in flight. */
  private async staging(t: ProviderTally): Promise<void> {
    const { originals, graceMinutes, inFlightMs } = this.deps
    const cutoff = Date.now() - Math.max(graceMinutes * 60_000, inFlightMs)
    const stale: string[] = []
    for await (const s of originals.listStaging()) {
      if (stale.length >= this.limit) break
      if (s.modifiedAt.getTime() <= cutoff) stale.push(s.id)
    }
    for (const id of stale) this.note(t, id)
    if (this.options.dryRun) return
    await mapBounded(stale, this.deps.concurrency, async (id) => {
      try {
        await originals.removeStaging(id)
        t.deleted++
      } catch (err) {
        t.failed++
        this.deps.warn({ err: { message: (err as Error).message } }, 'staging object removal failed')
      }
    })
  }

  /** Content objects no row knows, older than the grace, page by page of the store's listing. */
  private async unknown(t: ProviderTally): Promise<void> {
    const cutoff = Date.now() - this.deps.graceMinutes * 60_000
    let page: StoredObject[] = []
    let found = 0
    for await (const o of this.deps.originals.list()) {
      if (found >= this.limit || this.deps.stopping()) break
      if (o.modifiedAt.getTime() > cutoff) continue
      page.push(o)
      if (page.length >= this.deps.batchSize) {
        found += await this.unknownPage(t, page, this.limit - found)
        page = []
      }
    }
    if (page.length > 0 && found < this.limit) await this.unknownPage(t, page, this.limit - found)
  }

  private async unknownPage(t: ProviderTally, page: StoredObject[], room: number): Promise<number> {
    const { store, leaseSeconds } = this.deps
    const keys = page.map((o) => ({ tenant_id: o.tenant, sha256: o.sha256 }))
    const unknown = (await unknownOriginals(store, keys)).slice(0, room)
    for (const o of unknown) this.note(t, keyOf(o))
    if (this.options.dryRun) return unknown.length
    const bytesOf = new Map(page.map((o) => [keyOf({ tenant_id: o.tenant, sha256: o.sha256 }), o.bytes]))
    await mapBounded(unknown, this.deps.concurrency, async (o) => {
      const ref = { tenantId: o.tenant_id, sha256: o.sha256 }
      // Held like a claimed delete: an upload of this content from now on waits for the removal.
      if (!(await claimUnknownOriginal(store, ref, { bytes: bytesOf.get(keyOf(o)) ?? 0, leaseSeconds }))) {
        t.candidates--
        return
      }
      // Listed before another run removed it and forgot its row: gone already, nothing to remove.
      if ((await this.deps.originals.stat({ tenant: o.tenant_id, sha256: o.sha256 }).catch(() => 0)) === null) {
        await finishOriginalDelete(store, ref)
        t.candidates--
        return
      }
      await this.remove(t, ref)
    })
    return unknown.length
  }
}
