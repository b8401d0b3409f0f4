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
 *
 * A claim is held by a short lease that the run renews while it works (HeldClaims), and a run that
 * stops for any reason lets go of what it still holds, trying the database a few times: whatever
 * it could not let go of (the database unreachable, the process killed) is free again once that
 * short lease runs out, so a deleted file's original leaves the store within a few sweeps of the
 * store and the database answering again.
 */
import { setTimeout as sleep } from 'node:timers/promises'
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
  renewOriginalDeletes,
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
  /** How long a claimed delete holds its original unless renewed (every third of it while the run works). */
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
const refKey = (ref: OriginalRef) => `${ref.tenantId}/${ref.sha256}`

/** A release the database did not answer is tried this many times in all, this far apart at first. */
const releaseAttempts = 4
const releaseBackoffMs = 100

/**
 * The delete claims one run holds: renewed every third of their lease while the run works, and
 * let go of when it stops. A claim is given up once its removal is done or released.
 */
class HeldClaims {
  private readonly held = new Map<string, OriginalRef>()
  private readonly timer: NodeJS.Timeout

  constructor(
    private readonly store: StorePort,
    private readonly leaseSeconds: number,
  ) {
    // A failed renewal is not fatal: the next one tries again, and a claim it lost is only a delete
    // done later (finish_original_delete then answers false if an upload took the original back).
    this.timer = setInterval(() => void this.renew().catch(() => undefined), (leaseSeconds * 1000) / 3)
    this.timer.unref()
  }

  add(ref: OriginalRef): void {
    this.held.set(refKey(ref), ref)
  }

  done(ref: OriginalRef): void {
    this.held.delete(refKey(ref))
  }

  private async renew(): Promise<void> {
    if (this.held.size > 0) await renewOriginalDeletes(this.store, [...this.held.values()], this.leaseSeconds)
  }

  /** Lets go of one claim, trying a database that does not answer a few times; false when it could not. */
  async release(ref: OriginalRef): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      try {
        await releaseOriginalDelete(this.store, ref)
        this.done(ref)
        return true
      } catch {
        if (attempt >= releaseAttempts) return false
        await sleep(releaseBackoffMs * 2 ** (attempt - 1))
      }
    }
  }

  /** Stops renewing and lets go of every claim still held (the rest lapse with their short lease). */
  async close(): Promise<void> {
    clearInterval(this.timer)
    await Promise.all([...this.held.values()].map((ref) => this.release(ref)))
  }
}

export class OriginalsSweep {
  private readonly claims: HeldClaims | undefined

  constructor(
    private readonly deps: OriginalsSweepDeps,
    private readonly options: OriginalsSweepOptions,
  ) {
    if (!options.dryRun) this.claims = new HeldClaims(deps.store, deps.leaseSeconds)
  }

  async run(tallies: Tallies): Promise<void> {
    try {
      await this.unreferenced(tally(tallies, 'originals'))
      await this.staging(tally(tallies, 'staging'))
      await this.unknown(tally(tallies, 'unknown'))
    } finally {
      await this.claims?.close()
    }
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
    const claims = this.claims as HeldClaims
    let remaining = this.limit
    while (remaining > 0 && !this.deps.stopping()) {
      const size = Math.min(batchSize, remaining)
      await this.deps.renewLease()
      const batch = await claimOriginalDeletes(store, { graceSeconds, leaseSeconds, limit: size })
      const refs = batch.map((o) => ({ tenantId: o.tenant_id, sha256: o.sha256 }))
      for (const ref of refs) claims.add(ref)
      remaining -= batch.length
      for (const o of batch) this.note(t, keyOf(o))
      await mapBounded(refs, this.deps.concurrency, (ref) => this.remove(t, ref))
      if (batch.length < size) return
    }
  }

  /** Removes one claimed original; a failure lets go of its claim at once (the next run tries again). */
  private async remove(t: ProviderTally, ref: OriginalRef): Promise<void> {
    const { store, originals } = this.deps
    const claims = this.claims as HeldClaims
    try {
      await originals.remove({ tenant: ref.tenantId, sha256: ref.sha256 })
      // False: an upload referenced it after the lease ran out; its row stays and it writes the object anew.
      await finishOriginalDelete(store, ref)
      claims.done(ref)
      t.deleted++
    } catch (err) {
      t.failed++
      await claims.release(ref)
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
      const claims = this.claims as HeldClaims
      claims.add(ref)
      // Listed before another run removed it and forgot its row: gone already, nothing to remove.
      if ((await this.deps.originals.stat({ tenant: o.tenant_id, sha256: o.sha256 }).catch(() => 0)) === null) {
        await finishOriginalDelete(store, ref)
        claims.done(ref)
        t.candidates--
        return
      }
      await this.remove(t, ref)
    })
    return unknown.length
  }
}
