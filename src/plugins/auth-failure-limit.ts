/**
 * Failed authentications counted per client address in fixed one-minute windows. The tenant
 * rate limit (@fastify/rate-limit) runs after authentication, so without this an address could
 * send wrong keys without end; it cannot live in that plugin, which counts every request it sees
 * and cannot count only the failures. Memory is bounded: windows past their end are dropped, and
 * past `maxAddresses` the oldest addresses are forgotten first.
 */
export class AuthFailureLimit {
  readonly #windows = new Map<string, { failures: number; endsAt: number }>()

  constructor(
    private readonly maxFailures: number,
    private readonly windowMs = 60_000,
    private readonly maxAddresses = 100_000,
  ) {}

  /** Milliseconds until `address` may fail again; 0 while it is under the limit. */
  retryAfterMs(address: string, now = Date.now()): number {
    const window = this.#windows.get(address)
    if (!window || window.endsAt <= now) return 0
    return window.failures >= this.maxFailures ? window.endsAt - now : 0
  }

  recordFailure(address: string, now = Date.now()): void {
    const window = this.#windows.get(address)
    if (window && window.endsAt > now) {
      window.failures++
      return
    }
    this.#windows.delete(address)
    if (this.#windows.size >= this.maxAddresses) this.#prune(now)
    this.#windows.set(address, { failures: 1, endsAt: now + this.windowMs })
  }

  #prune(now: number): void {
    for (const [address, window] of this.#windows) if (window.endsAt <= now) this.#windows.delete(address)
    // Still full: forget the oldest windows (a Map iterates in insertion order).
    for (const address of this.#windows.keys()) {
      if (this.#windows.size < this.maxAddresses) break
      this.#windows.delete(address)
    }
  }
}
