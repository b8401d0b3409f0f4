/**
 * The failure switches the Gemini and Anthropic fakes share: latency and hangs restricted to some
 * operations, and a queue of injected failures (the next n requests of an operation answer a status,
 * a 429 with its Retry-After).
 */
export interface Switches<Op extends string> {
  latencyMs: number
  /** Accept and never answer (restricted to `ops` when set). */
  hang: boolean
  ops: Op[] | null
}

/** Waits the configured latency; false when the request should hang (never be answered). */
export async function passSwitches<Op extends string>(switches: Switches<Op>, op: Op): Promise<boolean> {
  const applies = switches.ops === null || switches.ops.includes(op)
  if (!applies) return true
  if (switches.hang) return false
  if (switches.latencyMs > 0) await new Promise((r) => setTimeout(r, switches.latencyMs))
  return true
}

export interface InjectedFailure {
  status: number
  retryAfter?: number
}

export class FailureQueue<Op extends string> {
  readonly #queue: Array<InjectedFailure & { n: number; op?: Op | undefined }> = []

  add(n: number, status: number, op?: Op, retryAfter?: number): void {
    this.#queue.push({ n, status, op, ...(retryAfter !== undefined ? { retryAfter } : {}) })
  }

  /** The next failure queued for `op` (or for any operation), counted down; undefined when none. */
  take(op: Op): InjectedFailure | undefined {
    const next = this.#queue.find((f) => f.n > 0 && (f.op === undefined || f.op === op))
    if (!next) return undefined
    next.n--
    return next
  }
}
