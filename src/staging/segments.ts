/**
 * Segment objects: the pieces of a resumable upload's bytes as they arrive (a tus PATCH, an OpenAI
 * part), kept under `<upload id>/<segment id>` until the upload settles. One interface over two
 * backends: a local directory (UPLOAD_TMP_DIR, or an originals store in a directory) and the S3
 * bucket of the originals store (src/originals/s3-store.ts), so that an upload begun on one replica
 * continues on another whenever originals are kept. Bytes are streamed both ways, never held whole.
 */
import { createWriteStream, type Stats } from 'node:fs'
import { mkdir, open, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { StagingCount } from '../originals/verify.js'

export interface SegmentObjects {
  /** Streams `body` to `key` and resolves with the bytes stored; on failure nothing is left at `key`. */
  put(key: string, body: AsyncIterable<Uint8Array>): Promise<number>
  /** The bytes stored at `key`, and the version they are (S3: the ETag; none for a directory). */
  get(key: string): Promise<{ stream: Readable; version?: string | undefined }>
  /** Removes every object under `prefix/` (those of writes a crash cut short too); none is not an error. */
  removeAll(prefix: string): Promise<void>
}

const keyPattern = /^[0-9a-f-]{36}\/[0-9a-f-]{36}$/
const prefixPattern = /^[0-9a-f-]{36}$/

/** Throws unless `key` is `<uuid>/<uuid>`: keys become paths and object names. */
export function checkSegmentKey(key: string): string {
  if (!keyPattern.test(key)) throw new TypeError('invalid segment key')
  return key
}

export function checkSegmentPrefix(prefix: string): string {
  if (!prefixPattern.test(prefix)) throw new TypeError('invalid segment prefix')
  return prefix
}

/** Segments as files `<root>/<upload id>/<segment id>` (0600 in 0700 directories). */
export function directorySegments(root: string): SegmentObjects {
  return {
    async put(key, body) {
      const path = join(root, checkSegmentKey(key))
      await mkdir(join(root, key.slice(0, 36)), { recursive: true, mode: 0o700 })
      const count = new StagingCount()
      try {
        await pipeline(count.pass(body), createWriteStream(path, { flags: 'wx', mode: 0o600 }))
      } catch (err) {
        await rm(path, { force: true })
        throw err
      }
      return count.bytes
    },
    async get(key) {
      const file = await open(join(root, checkSegmentKey(key)))
      try {
        // The stream closes the file once read or destroyed.
        return { version: segmentVersion(await file.stat()), stream: file.createReadStream() }
      } catch (err) {
        await file.close()
        throw err
      }
    },
    async removeAll(prefix) {
      await rm(join(root, checkSegmentPrefix(prefix)), { recursive: true, force: true })
    },
  }
}

/**
 * A segment file's version: its inode, size and modification time. A segment is written once (its
 * name is new) and never again, so this changes only if something else replaced it.
 */
export const segmentVersion = (stats: Stats) => `${stats.ino}:${stats.size}:${stats.mtimeMs}`
