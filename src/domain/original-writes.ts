/**
 * Writing a file's original (ORIGINALS_URL) on its way in. The body is staged while it streams (a
 * tee beside the spool or the provider stream, with backpressure), and kept once the row is claimed:
 * reference the original (a delete holding it is waited out), commit the staged object under its
 * content address (the store checks its hash), mark it stored; only then may the row complete with
 * `original_stored`. A staged object that is not committed is discarded on every path, so a request
 * that fails leaves nothing in the store's staging area.
 * `filegate_original_writes_total` counts each write once: `created` or `existing` once it is
 * committed and marked, `failed` when the store refused or did not answer at any step (the staging,
 * a stat, the commit, the mark). A body that failed on the client's side is no write of the store's.
 */
import { open } from 'node:fs/promises'
import { PassThrough, Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { errors, isAppError } from '../errors.js'
import type { Metrics } from '../metrics.js'
import type { OriginalsStore, StagedOriginal } from '../originals/index.js'
import type { StorePort } from '../store/port.js'
import { markOriginalStored, referenceOriginal } from '../store/queries.js'
import type { SpooledFile } from './spool.js'

/**
 * Where an upload's original comes from: `staged` = the request body was staged while it streamed
 * (committed after the claim); `kept` = the content is already in the originals store (referenced,
 * nothing written).
 */
export type OriginalSource = { kind: 'staged'; staged: StagedOriginal } | { kind: 'kept' }

/** What the tee holds between the body and a slower store before the body waits. */
const teeBufferBytes = 64 * 1024

/** Longest single wait for a delete that holds an original; the upload's deadline bounds the total. */
const deletingPollMs = 1_000

/** Wraps a staged original so that discarding it after a commit or a discard is a no-op. */
export function settleOnce(staged: StagedOriginal): StagedOriginal {
  let settled: Promise<unknown> | undefined
  return {
    bytes: staged.bytes,
    commit(content) {
      if (settled) return Promise.reject(new Error('the staged original was already committed or discarded'))
      const committed = staged.commit(content)
      settled = committed.catch(() => {})
      return committed
    },
    async discard() {
      settled ??= staged.discard()
      await settled
    },
  }
}

/** What a staging needs: the store, and the counter of its failed writes. */
export interface StagingDeps {
  originals: OriginalsStore
  metrics: Pick<Metrics, 'originalWrites'>
}

/**
 * A tee into the originals store's staging: `sink` takes the body's bytes (its 'drain' is the
 * backpressure), `stagedOriginal()` settles when the store has them all. A store failure destroys
 * the sink, so whoever feeds it stops at once; `failure` is then the upload's answer (503), counted
 * as a failed write when it is reported (once, however often it is asked for).
 */
export class StagingTee {
  readonly sink = new PassThrough({ highWaterMark: teeBufferBytes })
  readonly #staged: Promise<StagedOriginal>
  readonly #metrics: StagingDeps['metrics']
  /** Set when the feeding side stopped the staging (its body failed), not the store. */
  #aborted = false
  /** The store's own failure (it stopped reading), as 503 ORIGINALS_UNAVAILABLE. */
  #storeFailure: Error | undefined
  #failureCounted = false

  /** `declaredSha256`: the content's hash as the client declared it, before the body (X-Content-SHA256). */
  constructor(deps: StagingDeps, tenant: string, declaredSha256?: string) {
    this.#metrics = deps.metrics
    const declared = declaredSha256 ? { sha256: declaredSha256 } : undefined
    this.#staged = deps.originals.stage(tenant, this.sink, declared).then(settleOnce, (err: unknown) => {
      const failure = errors.originalsUnavailable(err)
      if (!this.#aborted) this.#storeFailure = failure
      this.sink.destroy()
      throw failure
    })
    this.#staged.catch(() => {})
  }

  /** The staged object once the store has the whole body; the store's failure (503) otherwise. */
  async stagedOriginal(): Promise<StagedOriginal> {
    try {
      return await this.#staged
    } catch (err) {
      this.#countStoreFailure()
      throw err
    }
  }

  /** `source`, unchanged, with every chunk also written to the sink (waiting while it is full). */
  async *pass(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer, void, undefined> {
    const { sink } = this
    let ended = false
    try {
      for await (const chunk of source) {
        if (sink.destroyed || (!sink.write(chunk) && !(await drained(sink)))) {
          throw (await this.storeFailure()) ?? errors.originalsUnavailable(new Error('the staging closed'))
        }
        yield chunk
      }
      sink.end()
      ended = true
    } finally {
      if (!ended) this.abort()
    }
  }

  /** Stops the staging (the body failed); the store then removes what it staged. */
  abort(): void {
    if (this.sink.destroyed || this.sink.writableFinished) return
    this.#aborted = true
    this.sink.destroy()
  }

  /** Once the staging settled: the store's own failure, if it failed by itself. */
  async storeFailure(): Promise<Error | undefined> {
    await this.#staged.catch(() => {})
    this.#countStoreFailure()
    return this.#storeFailure
  }

  /** Waits until the store is done with the staging, and removes what it staged. */
  async discard(): Promise<void> {
    const staged = await this.#staged.catch(() => undefined)
    await staged?.discard().catch(() => {})
  }

  #countStoreFailure(): void {
    if (!this.#storeFailure || this.#failureCounted) return
    this.#failureCounted = true
    this.#metrics.originalWrites.inc({ outcome: 'failed' })
  }
}

/** True on 'drain'; false when the stream closes first (its consumer failed). */
function drained(stream: PassThrough): Promise<boolean> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done)
      stream.off('close', done)
      resolve(!stream.destroyed)
    }
    stream.once('drain', done)
    stream.once('close', done)
  })
}

export interface OriginalDeps {
  store: StorePort
  originals: OriginalsStore
  metrics: Metrics
}

/**
 * The original of one upload until it is kept: a staged object waiting for its commit, or the
 * spooled body to stage from (a body held in memory is staged only once a claim needs it, so a
 * small dedup hit writes nothing), or nothing (`kept`: the content is in the store already).
 */
export class PendingOriginal {
  private pending: StagedOriginal | undefined
  /** A body streamed through staged it on its way to the provider: settles after the put. */
  private tee: StagingTee | undefined

  constructor(
    private readonly deps: OriginalDeps,
    private readonly tenant: string,
    private readonly sha256: string,
    private bytes: number,
    private readonly source: OriginalSource | undefined,
    private readonly spool?: SpooledFile,
  ) {
    this.pending = source?.kind === 'staged' ? source.staged : undefined
  }

  /** The tee of a body streamed through (its staging settles after the provider put): kept the same way. */
  stagedBy(tee: StagingTee): void {
    this.tee = tee
  }

  /**
   * References the original for the claimed row and makes sure the object is written. Throws 503
   * ORIGINALS_UNAVAILABLE when the store cannot be written (or a delete holds it past `deadline`).
   * `bytes`: the content's counted size, when it is known only now (a body streamed through).
   */
  async keep(deadline: number, bytes = this.bytes): Promise<void> {
    this.bytes = bytes
    if (this.tee) {
      // Its staging failing is counted by the tee.
      const staged = await this.tee.stagedOriginal()
      this.tee = undefined
      this.pending = staged
    }
    try {
      const outcome = await this.write(deadline)
      if (outcome) this.deps.metrics.originalWrites.inc({ outcome })
    } catch (err) {
      if (isAppError(err) && err.code === 'ORIGINALS_UNAVAILABLE') {
        this.deps.metrics.originalWrites.inc({ outcome: 'failed' })
      }
      throw err
    }
  }

  /** Reference, then stage or stat, commit and mark; what was written (undefined: nothing was). */
  private async write(deadline: number): Promise<'created' | 'existing' | undefined> {
    const stored = await this.reference(deadline)
    if (!this.pending) {
      // Kept already: by another upload, by this one for an earlier candidate, or by the caller.
      if (stored) return undefined
      if (this.source?.kind === 'kept' && (await this.stat()) === this.bytes) {
        await this.mark()
        return undefined
      }
      if (!this.spool) throw errors.originalsUnavailable(new Error('the original is not in the store'))
      this.pending = await this.stageFromSpool(this.spool)
    }
    const staged = this.pending
    this.pending = undefined
    let outcome: 'created' | 'existing'
    try {
      outcome = await staged.commit({ sha256: this.sha256, bytes: this.bytes })
    } catch (err) {
      throw errors.originalsUnavailable(err)
    }
    await this.mark()
    return outcome
  }

  /** Removes a staged object that was not committed (a dedup hit, a failure); safe to call always. */
  async discard(): Promise<void> {
    const staged = this.pending ?? (this.source?.kind === 'staged' ? this.source.staged : undefined)
    this.pending = undefined
    await this.tee?.discard()
    this.tee = undefined
    // A committed one is gone already (commit moves it); settleOnce makes this a no-op then.
    await staged?.discard().catch(() => {})
  }

  /** reference_original, waiting while a delete holds the original; true when it is stored already. */
  private async reference(deadline: number): Promise<boolean> {
    const ref = { tenantId: this.tenant, sha256: this.sha256 }
    for (;;) {
      const answer = await referenceOriginal(this.deps.store, ref, this.bytes)
      if (answer.outcome === 'referenced') return answer.stored
      const wait = Math.min(Math.max(50, Date.parse(answer.until) - Date.now()), deletingPollMs)
      if (Date.now() + wait > deadline) {
        throw errors.originalsUnavailable(new Error('a delete of the original held it past the upload deadline'))
      }
      await sleep(wait)
    }
  }

  private async mark(): Promise<void> {
    const marked = await markOriginalStored(this.deps.store, { tenantId: this.tenant, sha256: this.sha256 })
    // A delete cannot take an original a live row uses: this only happens if the row was lost.
    if (!marked) throw errors.originalsUnavailable(new Error('a delete took the original before it was marked'))
  }

  private async stat(): Promise<number | null> {
    try {
      return await this.deps.originals.stat({ tenant: this.tenant, sha256: this.sha256 })
    } catch (err) {
      throw errors.originalsUnavailable(err)
    }
  }

  /**
   * A second pass, only where the body did not stream past a tee (held in memory, or a copy's spool).
   * The spool file is opened before the store is handed its stream, and the stream is destroyed once
   * the staging settled: a store that fails before reading it leaves no read pending on a file the
   * request's cleanup then removes.
   */
  private async stageFromSpool(spool: SpooledFile): Promise<StagedOriginal> {
    let body: Readable | undefined
    try {
      body = spool.buffer ? Readable.from([spool.buffer]) : (await open(spool.path, 'r')).createReadStream()
      // The staging reads it and gets its errors; this only keeps one before that from going unhandled.
      body.on('error', () => {})
      return settleOnce(await this.deps.originals.stage(this.tenant, body))
    } catch (err) {
      throw errors.originalsUnavailable(err)
    } finally {
      body?.destroy()
    }
  }
}
