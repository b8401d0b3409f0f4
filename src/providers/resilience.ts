/**
 * Per-provider resilience with cockatiel: an upload slot (upload-slots.ts: shared fairly between
 * tenants), then retries with exponential backoff and jitter that honour Retry-After, around a
 * consecutive-failure circuit breaker, around a timeout per attempt that aborts the undici request.
 * One overall budget bounds everything, queueing and backoff included; a caller's own deadline
 * (an AbortSignal.timeout) ends it the same way: PROVIDER_TIMEOUT, or PROVIDER_UNAVAILABLE while
 * still waiting for a slot, never a bare TimeoutError.
 *
 *   upload slot (uploads only) → retry → circuit breaker → attempt timeout → the HTTP call
 *
 * The breaker sits inside the retry so that every failed attempt counts, and an opening breaker
 * stops the retries at once (PROVIDER_UNAVAILABLE) instead of hammering a failing provider.
 */
import {
  BrokenCircuitError,
  type CircuitBreakerPolicy,
  CircuitState as CockatielState,
  ConsecutiveBreaker,
  circuitBreaker,
  handleWhen,
  type IBackoff,
  type IRetryBackoffContext,
  IsolatedCircuitError,
  retry,
  TaskCancelledError,
  type TimeoutPolicy,
  TimeoutStrategy,
  timeout,
} from 'cockatiel'
import { inSpan } from '../spans.js'
import { circuitOpenError, isProviderError, ProviderError, timeoutError } from './errors.js'
import type { CircuitState, ProviderEvents, ProviderOp } from './types.js'
import { type SlotLease, SlotRefusal, type SlotRefusalReason, type SlotRequest, UploadSlots } from './upload-slots.js'

export interface ResilienceSettings {
  provider: string
  retry: { maxAttempts: number; baseDelayMs: number; maxDelayMs: number }
  circuit: { failureThreshold: number; resetMs: number }
  /** One attempt (PROVIDER_TIMEOUT_MS). */
  attemptTimeoutMs: number
  /** All attempts of one call, queueing and backoff included (UPLOAD_TIMEOUT_MS). */
  budgetMs: number
  maxConcurrentUploads: number
  /** Uploads that may wait for a slot; more are refused at once. */
  uploadQueue?: number
  /** TENANT_MAX_SHARE: the share of the slots (and of the queue) one tenant's client-paced uploads may hold. */
  tenantShare?: number
  events?: ProviderEvents | undefined
}

export interface RunOptions {
  op: ProviderOp
  /** The input cannot be replayed (a one-shot stream): exactly one attempt. */
  oneShot?: boolean
  /** An upload: it takes an upload slot (unless `slot` is one the caller already holds). */
  upload?: boolean
  /** An upload slot the caller took (acquireUploadSlot) and releases itself. */
  slot?: SlotLease | undefined
  /** Whom the upload is for: slots are shared fairly between tenants. */
  tenant?: string | undefined
  /** The caller leaving; a TimeoutError reason (AbortSignal.timeout) ends the call as a timeout. */
  signal?: AbortSignal | undefined
  /**
   * For an upload whose body comes from a client: the client's own failure behind a failed
   * attempt, if any (see UploadSource). It is thrown as is, never retried, and never counts
   * toward the circuit breaker: one client's bad body must not cut the provider off for all.
   */
  senderFailure?: ((attemptTimedOut: boolean) => Error | undefined) | undefined
}

const stateNames: Record<CockatielState, CircuitState> = {
  [CockatielState.Closed]: 'closed',
  [CockatielState.Open]: 'open',
  [CockatielState.HalfOpen]: 'half_open',
  [CockatielState.Isolated]: 'open',
}

export class ProviderResilience {
  readonly #s: ResilienceSettings
  readonly #breaker: CircuitBreakerPolicy
  readonly #timeout: TimeoutPolicy
  readonly #uploads: UploadSlots
  readonly #listeners: Array<{ dispose(): void }> = []
  #openedAt = 0

  constructor(settings: ResilienceSettings) {
    this.#s = settings
    const { provider, events } = settings
    // Only failures that say the provider is unhealthy count: 5xx, timeouts, network errors and
    // transient 429s. A refused file, a quota or a bad key must not cut everyone else off.
    this.#breaker = circuitBreaker(
      handleWhen((err) => isProviderError(err) && err.providerFault),
      { halfOpenAfter: settings.circuit.resetMs, breaker: new ConsecutiveBreaker(settings.circuit.failureThreshold) },
    )
    // Aggressive: the attempt ends at the deadline even if the body stream ignores the abort.
    // abortOnReturn false: a streamed content body must outlive the attempt that opened it.
    this.#timeout = timeout(settings.attemptTimeoutMs, { strategy: TimeoutStrategy.Aggressive, abortOnReturn: false })
    this.#uploads = new UploadSlots(
      settings.maxConcurrentUploads,
      settings.uploadQueue ?? 1000,
      settings.tenantShare ?? 1,
    )
    this.#listeners.push(
      this.#breaker.onStateChange((state) => {
        if (state === CockatielState.Open) {
          this.#openedAt = Date.now()
          events?.onCircuitOpen?.(provider)
        }
        events?.onCircuitStateChange?.(provider, stateNames[state])
      }),
    )
  }

  /**
   * Cockatiel moves Open → HalfOpen only on the next call; once `resetMs` has passed we already
   * report `half_open`, because that is what a caller choosing a provider needs to know: a trial
   * call would be let through.
   */
  state(): CircuitState {
    const state = this.#breaker.state
    if (state === CockatielState.Open && this.retryAfterMs() === 0) return 'half_open'
    return stateNames[state]
  }

  retryAfterMs(): number {
    const state = this.#breaker.state
    if (state === CockatielState.Isolated) return this.#s.circuit.resetMs
    if (state !== CockatielState.Open) return 0
    return Math.max(0, this.#openedAt + this.#s.circuit.resetMs - Date.now())
  }

  /**
   * Waits for one of the provider's upload slots, fairly between tenants (upload-slots.ts); the
   * caller releases it. PROVIDER_UNAVAILABLE with Retry-After (counted) when too many wait or none
   * came free within `waitMs`.
   */
  async acquireUploadSlot(request: SlotRequest): Promise<SlotLease> {
    const started = Date.now()
    try {
      return await this.#uploads.acquire(request)
    } catch (err) {
      if (err instanceof SlotRefusal) throw this.#noSlot(err.reason, err.waitedMs)
      if (isTimeoutAbort(err)) throw this.#noSlot('timeout', Date.now() - started)
      throw err
    }
  }

  async run<T>(opts: RunOptions, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const { provider, budgetMs } = this.#s
    const started = Date.now()
    const deadline = started + budgetMs
    const outer = new AbortController()
    let waitingForSlot = false
    // The reason is the error callers get: a spent budget (or the caller's own deadline) is a
    // timeout, not a retryable one; while still waiting for a slot, the provider is busy.
    const expire = () =>
      outer.abort(
        waitingForSlot ? this.#noSlot('timeout', Date.now() - started) : timeoutError(provider, budgetMs, 'budget'),
      )
    const budgetTimer = setTimeout(expire, budgetMs)
    const onCallerAbort = () => {
      const reason = opts.signal?.reason
      if (isTimeoutAbort(reason)) expire()
      else outer.abort(reason ?? new DOMException('aborted', 'AbortError'))
    }
    if (opts.signal?.aborted) onCallerAbort()
    opts.signal?.addEventListener('abort', onCallerAbort, { once: true })

    const retryPolicy = retry(
      handleWhen((err) => this.#shouldRetry(err, deadline, outer.signal)),
      {
        maxAttempts: opts.oneShot ? 0 : this.#s.retry.maxAttempts - 1,
        backoff: this.#backoff(deadline),
      },
    )

    const attempt = async ({ signal }: { signal: AbortSignal }): Promise<T> => {
      // Cockatiel may wake from a backoff after the budget is spent; do not start a new request.
      if (signal.aborted) throw signal.reason
      this.#s.events?.onAttempt?.(provider, opts.op)
      try {
        return await this.#breaker.execute(
          () =>
            this.#timeout
              .execute((_ctx, attemptSignal) => fn(attemptSignal), signal)
              .catch((err: unknown) => {
                throw this.#classifyFailure(err, outer.signal, opts.senderFailure)
              }),
          signal,
        )
      } catch (err) {
        if (err instanceof BrokenCircuitError || err instanceof IsolatedCircuitError) {
          throw circuitOpenError(provider, this.retryAfterMs())
        }
        throw err
      }
    }

    // A span per attempt: which one (1 = the first call), and how it ended.
    const tracedAttempt = (context: { signal: AbortSignal; attempt: number }) =>
      inSpan(
        'filegate.provider.attempt',
        { 'filegate.provider': provider, 'filegate.provider.op': opts.op, 'filegate.attempt': context.attempt + 1 },
        () => attempt(context),
      )

    const work = async () => {
      if (!opts.upload || opts.slot) return retryPolicy.execute(tracedAttempt, outer.signal)
      waitingForSlot = true
      let slot: SlotLease
      try {
        slot = await this.acquireUploadSlot({
          tenant: opts.tenant ?? '',
          clientPaced: opts.oneShot === true,
          // A slot is worth waiting for while one attempt still fits in the budget.
          waitMs: deadline - Date.now() - this.#s.attemptTimeoutMs,
          signal: outer.signal,
        })
      } finally {
        waitingForSlot = false
      }
      try {
        return await retryPolicy.execute(tracedAttempt, outer.signal)
      } finally {
        slot.release()
      }
    }

    try {
      // Cockatiel's backoff sleeps do not watch the signal; the race does.
      return await raceAbort(work(), outer.signal)
    } catch (err) {
      throw outer.signal.aborted && !isProviderError(err) ? outer.signal.reason : err
    } finally {
      clearTimeout(budgetTimer)
      opts.signal?.removeEventListener('abort', onCallerAbort)
    }
  }

  dispose(): void {
    for (const l of this.#listeners.splice(0)) l.dispose()
  }

  /** PROVIDER_UNAVAILABLE for an upload that got no slot (not the provider's fault), counted. */
  #noSlot(reason: SlotRefusalReason, waitedMs: number): ProviderError {
    const { provider, maxConcurrentUploads } = this.#s
    this.#s.events?.onUploadSlotRefused?.(provider, reason)
    return new ProviderError('PROVIDER_UNAVAILABLE', {
      provider,
      retryable: false,
      providerFault: false,
      retryAfterSeconds: 5,
      detail:
        reason === 'queue_full'
          ? `too many uploads to ${provider} are waiting`
          : `all ${maxConcurrentUploads} upload slots of ${provider} stayed busy for ${waitedMs} ms; try again shortly`,
    })
  }

  /**
   * What a failed attempt means, decided inside the breaker so that it counts only what is the
   * provider's: the sender's own failure first, then an abort (the caller leaving, the budget
   * running out, or the attempt timing out), else the error as the client classified it.
   */
  #classifyFailure(err: unknown, outer: AbortSignal, senderFailure: RunOptions['senderFailure']): unknown {
    const classified = this.#classifyAbort(err, outer)
    const timedOut = isProviderError(classified) && classified.code === 'PROVIDER_TIMEOUT'
    return senderFailure?.(timedOut) ?? classified
  }

  /** An abort inside an attempt is the caller leaving, the budget running out, or the attempt timing out. */
  #classifyAbort(err: unknown, outer: AbortSignal): unknown {
    if (isProviderError(err)) return err
    if (outer.aborted) return outer.reason
    const name = (err as { name?: string } | null)?.name
    const code = (err as { code?: string } | null)?.code
    if (
      err instanceof TaskCancelledError ||
      name === 'AbortError' ||
      name === 'TimeoutError' ||
      code === 'UND_ERR_ABORTED'
    ) {
      return timeoutError(this.#s.provider, this.#s.attemptTimeoutMs)
    }
    return err
  }

  #shouldRetry(err: unknown, deadline: number, outer: AbortSignal): boolean {
    if (outer.aborted || !isProviderError(err) || !err.retryable) return false
    // Retry-After beyond what is left of the budget: give up now and pass the 429 on, rather
    // than sleep only to time out.
    const wait = err.upstreamRetryAfterMs ?? this.#s.retry.baseDelayMs
    return Date.now() + wait < deadline
  }

  /**
   * Exponential backoff with "equal jitter" between baseDelayMs and maxDelayMs, raised to the
   * provider's Retry-After and capped by the budget left.
   */
  #backoff(deadline: number) {
    const { baseDelayMs, maxDelayMs } = this.#s.retry
    const make = (context: IRetryBackoffContext<unknown>): IBackoff<IRetryBackoffContext<unknown>> => {
      const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** (context.attempt - 1))
      let duration = ceiling / 2 + Math.random() * (ceiling / 2)
      duration = Math.max(baseDelayMs, duration)
      const reason = 'error' in context.result ? context.result.error : undefined
      if (isProviderError(reason) && reason.upstreamRetryAfterMs !== undefined) {
        duration = Math.max(duration, reason.upstreamRetryAfterMs)
      }
      duration = Math.max(0, Math.min(duration, deadline - Date.now()))
      return { duration, next: make }
    }
    return { next: make }
  }
}

/** An abort by AbortSignal.timeout (or a timer of that name): the caller's deadline, not its leaving. */
const isTimeoutAbort = (reason: unknown) => (reason as { name?: unknown } | null)?.name === 'TimeoutError'

function raceAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err)
      },
    )
  })
}
