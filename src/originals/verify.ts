/**
 * Reading an original back: the bytes are hashed as they pass and the last chunk is held until the
 * whole content hashed to its key. A corrupted object therefore ends in an error before its last
 * byte, and no client or provider ever receives it complete.
 */
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { OriginalCorruptError, type OriginalKey } from './store.js'

/**
 * `source`'s bytes, verified. The stream returned owns `source`: destroyed, or abandoned before it
 * was read, it destroys `source` too (an open file, a socket of the store's); a failure of `source`
 * before it is read is kept (its listener here) and reaches the reader as the stream's error.
 */
export function verifyingStream(key: OriginalKey, source: Readable): Readable {
  async function* verified() {
    const hash = createHash('sha256')
    let held: Uint8Array | undefined
    for await (const chunk of source) {
      hash.update(chunk)
      if (held) yield held
      held = chunk
    }
    const actual = hash.digest('hex')
    if (actual !== key.sha256) throw new OriginalCorruptError(key, actual)
    if (held) yield held
  }
  source.on('error', () => {}) // the read of `source` below rethrows it
  const verifying = Readable.from(verified(), { objectMode: false })
  verifying.once('close', () => source.destroy())
  return verifying
}

/** Counts what passes, for staged writes (their hash is the writer's: see store.ts). */
export class StagingCount {
  bytes = 0
  async *pass(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array, void, undefined> {
    for await (const chunk of source) {
      this.bytes += chunk.byteLength
      yield chunk
    }
  }
}
