/**
 * Streams an upload to a temp file under UPLOAD_TMP_DIR while hashing and counting it, so the
 * file is never held in memory and its size limit is enforced as it arrives. The temp file is
 * removed on every failure path; the caller removes it after the provider upload.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream, type WriteStream } from 'node:fs'
import { mkdir, readdir, rm, stat } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { type Readable, Transform, type TransformCallback } from 'node:stream'
import { AppError } from '../errors.js'

/**
 * A received body: small ones stay in memory (a dedup hit then never touches the disk), larger
 * ones are on disk under UPLOAD_TMP_DIR; either way hashed and counted as they arrived.
 */
export type SpooledFile = { bytes: number; sha256: string } & (
  | { path: string; buffer?: undefined }
  | { buffer: Buffer; path?: undefined }
)

// Names carry host and pid so a start-up sweep can tell its own leftovers from a live peer's.
const spoolPrefix = `fg-${hostname().replace(/[^A-Za-z0-9_.-]/g, '_')}-${process.pid}-`

/** Bodies up to this size are kept in memory; beyond it they stream to a spool file. */
export const memorySpoolBytes = 64 * 1024

/** Counts and hashes what flows through; fails with `onLimit()` past `maxBytes`. */
export class HashCounter extends Transform {
  readonly hash = createHash('sha256')
  bytes = 0
  constructor(
    private readonly maxBytes: number,
    private readonly onLimit: () => Error,
  ) {
    super()
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
    this.bytes += chunk.length
    if (this.bytes > this.maxBytes) {
      done(this.onLimit())
      return
    }
    this.hash.update(chunk)
    done(null, chunk)
  }
  digest(): string {
    return this.hash.digest('hex')
  }
}

/** mkdir -p once per directory, not once per upload (a syscall chain on the small-upload hot path). */
const madeDirs = new Map<string, Promise<unknown>>()
const ensureDir = (dir: string) => {
  let made = madeDirs.get(dir)
  if (!made) {
    made = mkdir(dir, { recursive: true }).catch((err) => {
      madeDirs.delete(dir)
      throw err
    })
    madeDirs.set(dir, made)
  }
  return made
}

/**
 * Reads `source` to its end, hashing and counting as it arrives: up to `memoryBytes` it is held in
 * memory; past that everything so far and the rest go to a 0600 temp file, with backpressure.
 * Plain 'data' listeners, not stream.pipeline: a dedup hit of a small body is the hot path, and a
 * pipeline (Transform + Writable + an AbortController per call) cost it a fifth of its CPU.
 */
export function spoolToFile(
  source: Readable,
  options: { dir: string; maxBytes: number; onLimit: () => Error; memoryBytes?: number },
): Promise<SpooledFile> {
  const memoryBytes = options.memoryBytes ?? memorySpoolBytes
  return new Promise<SpooledFile>((resolve, reject) => {
    const hash = createHash('sha256')
    let bytes = 0
    let held: Buffer[] = []
    let path: string | undefined
    let file: WriteStream | undefined
    let settled = false
    /** The source ended while the spill file was still being opened. */
    let endedEarly = false
    const resume = () => {
      if (!settled) source.resume()
    }
    const detach = () => {
      source.removeListener('data', onData)
      source.removeListener('end', onEnd)
      source.removeListener('error', fail)
      source.removeListener('close', onClose)
    }
    function fail(err: Error) {
      if (settled) return
      settled = true
      detach()
      // Whatever the source still emits (its own destroy error included) must not go unhandled.
      source.on('error', () => {})
      if (!source.destroyed) source.destroy()
      file?.destroy()
      // The directory vanished under us (a tmp cleaner): make it again for the next upload.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') madeDirs.delete(options.dir)
      const removed = path ? rm(path, { force: true }) : Promise.resolve()
      removed.then(
        () => reject(err),
        () => reject(err),
      )
    }
    function spill() {
      path = join(options.dir, `${spoolPrefix}${randomBytes(8).toString('hex')}.part`)
      source.pause()
      ensureDir(options.dir).then(() => {
        if (settled) return
        file = createWriteStream(path as string, { flags: 'wx', mode: 0o600 })
        file.on('error', fail)
        for (const chunk of held) file.write(chunk)
        held = []
        if (endedEarly) finish()
        else if (file.writableNeedDrain) file.once('drain', resume)
        else resume()
      }, fail)
    }
    function onData(chunk: Buffer) {
      if (settled) return
      bytes += chunk.length
      if (bytes > options.maxBytes) {
        fail(options.onLimit())
        return
      }
      hash.update(chunk)
      if (file) {
        if (!file.write(chunk)) {
          source.pause()
          file.once('drain', resume)
        }
        return
      }
      held.push(chunk)
      if (bytes > memoryBytes && path === undefined) spill()
    }
    function onEnd() {
      if (settled) return
      // A multipart parser that hit its own size limit ends the stream early and only flags it
      // (busboy's `truncated`): a cut file must never pass for a whole one.
      if ((source as { truncated?: boolean }).truncated) {
        fail(options.onLimit())
        return
      }
      if (path !== undefined && !file) endedEarly = true
      else finish()
    }
    function finish() {
      const sha256 = hash.digest('hex')
      if (!file) {
        settled = true
        detach()
        resolve({ buffer: held.length === 1 ? (held[0] as Buffer) : Buffer.concat(held, bytes), bytes, sha256 })
        return
      }
      file.end(() => {
        if (settled) return
        settled = true
        detach()
        resolve({ path: path as string, bytes, sha256 })
      })
    }
    function onClose() {
      if (!source.readableEnded)
        fail(Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }))
    }
    source.on('data', onData)
    source.once('end', onEnd)
    source.on('error', fail)
    source.once('close', onClose)
  })
}

export const removeSpool = (file: SpooledFile | undefined) =>
  file?.path ? rm(file.path, { force: true }) : Promise.resolve()

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Removes spool files a crashed process left: older than `maxAgeMs` (a live upload touches its
 * file within UPLOAD_TIMEOUT_MS), and, for files of this host, only when their process is gone.
 */
export async function removeStaleSpools(dir: string, maxAgeMs: number): Promise<number> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch {
    return 0
  }
  const host = hostname().replace(/[^A-Za-z0-9_.-]/g, '_')
  let removed = 0
  for (const name of names) {
    const m = /^fg-(.+)-(\d+)-[0-9a-f]{16}\.part$/.exec(name)
    if (!m) continue
    const path = join(dir, name)
    const info = await stat(path).catch(() => undefined)
    if (!info || Date.now() - info.mtimeMs < maxAgeMs) continue
    const pid = Number(m[2])
    if (m[1] === host && pid !== process.pid && isAlive(pid)) continue
    await rm(path, { force: true })
    removed++
  }
  return removed
}

export const tooLarge = (provider: string, limitBytes: number) =>
  new AppError('FILE_TOO_LARGE', {
    detail: `The file is larger than ${limitBytes} bytes, the limit for ${provider}`,
    extensions: { provider, limit_bytes: limitBytes },
  })
