/**
 * One provider's upload slots (PROVIDER_MAX_CONCURRENT_UPLOADS), shared fairly between tenants.
 *
 * - A free slot goes to the waiting tenant that holds the fewest slots (the earliest of its
 *   requests first): one tenant's burst queues behind itself, not in front of the others.
 * - A client-paced upload (a body streamed through: its pace is the client's) holds a slot for as
 *   long as its sender takes, so one tenant's such uploads hold at most its share of the slots
 *   (TENANT_MAX_SHARE of them, at least one), even when slots are free: another tenant always finds
 *   one. Uploads paced by the provider (a spooled body) may use every slot, in those fair turns.
 * - At most `queueLimit` requests wait, and one tenant's at most its share of them; past that a
 *   request is refused at once (`queue_full`). A wait ends with the caller's signal or `waitMs`
 *   (`timeout`): the caller answers 503, holding nothing meanwhile.
 *
 * Written by hand: cockatiel's bulkhead is one FIFO queue with no notion of who waits.
 */

export interface SlotRequest {
  tenant: string
  /** The body comes from a client at its own pace (streamed through): bounded by the tenant's share. */
  clientPaced: boolean
  /** The longest wait for a slot, ms. */
  waitMs: number
  /** The caller leaving (its reason is the rejection). */
  signal?: AbortSignal | undefined
}

/** A slot held; `release` gives it back (once; later calls do nothing). */
export interface SlotLease {
  release(): void
}

export type SlotRefusalReason = 'queue_full' | 'timeout'

/** No slot for this request: too many wait already, or none came free within its wait. */
export class SlotRefusal extends Error {
  constructor(
    readonly reason: SlotRefusalReason,
    readonly waitedMs: number,
  ) {
    super(reason === 'queue_full' ? 'too many uploads are waiting' : `no upload slot came free within ${waitedMs} ms`)
    this.name = 'SlotRefusal'
  }
}

interface Holding {
  all: number
  paced: number
  waiting: number
}

interface Waiter {
  tenant: string
  clientPaced: boolean
  grant(lease: SlotLease): void
}

export class UploadSlots {
  readonly #capacity: number
  readonly #queueLimit: number
  readonly #pacedLimit: number
  readonly #tenantQueueLimit: number
  readonly #tenants = new Map<string, Holding>()
  #inUse = 0
  #waiters: Waiter[] = []

  constructor(capacity: number, queueLimit: number, tenantShare: number) {
    this.#capacity = capacity
    this.#queueLimit = queueLimit
    this.#pacedLimit = Math.max(1, Math.floor(capacity * tenantShare))
    this.#tenantQueueLimit = Math.max(1, Math.floor(queueLimit * tenantShare))
  }

  /** Slots held now (all tenants). */
  get inUse(): number {
    return this.#inUse
  }

  acquire(request: SlotRequest): Promise<SlotLease> {
    const { tenant, clientPaced, signal } = request
    if (signal?.aborted) return Promise.reject(signal.reason)
    const holding = this.#holding(tenant)
    if (this.#waiters.length >= this.#queueLimit || holding.waiting >= this.#tenantQueueLimit) {
      return Promise.reject(new SlotRefusal('queue_full', 0))
    }
    return new Promise<SlotLease>((resolve, reject) => {
      const started = Date.now()
      let timer: NodeJS.Timeout | undefined
      const leave = (err: unknown) => {
        const at = this.#waiters.indexOf(waiter)
        if (at === -1) return
        this.#waiters.splice(at, 1)
        holding.waiting--
        cleanup()
        this.#forget(tenant)
        reject(err)
        // A waiter that could not be served may have been blocking nobody; others may be servable.
        this.#dispatch()
      }
      const onAbort = () => leave(signal?.reason)
      const cleanup = () => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
      }
      const waiter: Waiter = {
        tenant,
        clientPaced,
        grant: (lease) => {
          cleanup()
          resolve(lease)
        },
      }
      holding.waiting++
      this.#waiters.push(waiter)
      timer = setTimeout(() => leave(new SlotRefusal('timeout', Date.now() - started)), Math.max(0, request.waitMs))
      timer.unref()
      signal?.addEventListener('abort', onAbort, { once: true })
      this.#dispatch()
    })
  }

  /** Grants free slots to eligible waiters: the tenant holding the fewest first, then the earliest request. */
  #dispatch(): void {
    while (this.#inUse < this.#capacity) {
      let best: Waiter | undefined
      let bestHeld = Number.POSITIVE_INFINITY
      for (const w of this.#waiters) {
        const held = this.#holding(w.tenant)
        if (w.clientPaced && held.paced >= this.#pacedLimit) continue
        // Waiters are in arrival order: the first of the least-served tenant wins a tie.
        if (held.all < bestHeld) {
          best = w
          bestHeld = held.all
        }
      }
      if (!best) return
      this.#waiters.splice(this.#waiters.indexOf(best), 1)
      best.grant(this.#take(best))
    }
  }

  #take(waiter: Waiter): SlotLease {
    const holding = this.#holding(waiter.tenant)
    holding.waiting--
    holding.all++
    if (waiter.clientPaced) holding.paced++
    this.#inUse++
    let released = false
    return {
      release: () => {
        if (released) return
        released = true
        holding.all--
        if (waiter.clientPaced) holding.paced--
        this.#inUse--
        this.#forget(waiter.tenant)
        this.#dispatch()
      },
    }
  }

  #holding(tenant: string): Holding {
    let holding = this.#tenants.get(tenant)
    if (!holding) {
      holding = { all: 0, paced: 0, waiting: 0 }
      this.#tenants.set(tenant, holding)
    }
    return holding
  }

  /** A tenant that holds and waits for nothing is forgotten: the map stays as small as the activity. */
  #forget(tenant: string): void {
    const holding = this.#tenants.get(tenant)
    if (holding && holding.all === 0 && holding.waiting === 0) this.#tenants.delete(tenant)
  }
}
