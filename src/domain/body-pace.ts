/**
 * A body streamed through to a provider holds one of its upload slots and a reservation on its
 * account for as long as the client takes to send it, so it must keep a useful pace: after a short
 * grace, the time spent waiting on the client must stay within what the bytes received so far
 * allow at `bytesPerSecond`. A body that falls behind is cut at once (408 REQUEST_TIMEOUT, its slot
 * and reservation released), instead of at the end of the attempt. Only the time spent waiting on
 * the client counts: while the provider is the slow side, nothing accrues.
 */
import type { Readable } from 'node:stream'
import { tooSlow } from './spool.js'

export interface Pace {
  /** The slowest average a body may keep while it is being waited for. */
  bytesPerSecond: number
  /** Waiting the client may cost before the pace applies (its first bytes, a slow start). */
  graceMs: number
}

/**
 * A streamed body's slowest useful pace: fast enough to arrive within one provider attempt
 * (PROVIDER_TIMEOUT_MS, which ends it anyway), and never below 32 KiB/s; the grace is a quarter of
 * an attempt, at most 2 s.
 */
export function streamPace(declaredBytes: number, attemptMs: number): Pace {
  return {
    bytesPerSecond: Math.max(minStreamBytesPerSecond, (declaredBytes * 1000) / attemptMs),
    graceMs: Math.min(2000, attemptMs / 4),
  }
}

/** Below this a client is too slow to stream through; it can send without X-Content-SHA256 (spooled, no slot held). */
export const minStreamBytesPerSecond = 32 * 1024

/**
 * Yields `source` unchanged while it keeps `pace`; destroys it with 408 REQUEST_TIMEOUT (so the
 * pending read fails, the consumer sees the client's failure) the moment it falls behind. One timer
 * per wait, re-armed only when it fires early, so a body of tiny chunks costs no timer per chunk.
 */
export async function* keepPace(source: Readable, pace: Pace): AsyncGenerator<Buffer, void, undefined> {
  let received = 0
  let waitedMs = 0
  let waitingSince: number | undefined
  let timer: NodeJS.Timeout | undefined
  const allowedMs = () => pace.graceMs + (received * 1000) / pace.bytesPerSecond
  const waited = () => waitedMs + (waitingSince === undefined ? 0 : performance.now() - waitingSince)
  const check = () => {
    timer = undefined
    if (waitingSince === undefined) return
    const left = allowedMs() - waited()
    if (left <= 0) source.destroy(tooSlow())
    else arm(left)
  }
  const arm = (ms: number) => {
    timer = setTimeout(check, Math.ceil(ms))
    timer.unref()
  }
  const chunks = source[Symbol.asyncIterator]()
  try {
    for (;;) {
      waitingSince = performance.now()
      if (timer === undefined) arm(Math.max(0, allowedMs() - waitedMs))
      let next: IteratorResult<Buffer>
      try {
        next = await chunks.next()
      } finally {
        waitedMs += performance.now() - waitingSince
        waitingSince = undefined
      }
      if (next.done) return
      received += next.value.length
      yield next.value
    }
  } finally {
    clearTimeout(timer)
    await chunks.return?.()
  }
}
