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
import { Transform, type TransformCallback, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
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

/**
 * Holds the first `memoryBytes` in memory and, past that, moves everything to a file opened on
 * demand, so a large body is never held whole and a small one costs no file system call.
 */
class SpoolSink extends Writable {
  private chunks: Buffer[] = []
  private held = 0
  file: WriteStream | undefined
  /** Named only when the body spills to disk: a body kept in memory costs no random name. */
  path: string | undefined
  constructor(
    private readonly dir: string,
    private readonly memoryBytes: number,
  ) {
    super()
  }
  get buffer(): Buffer | undefined {
    return this.file ? undefined : Buffer.concat(this.chunks, this.held)
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void) {
    if (!this.file && this.held + chunk.length <= this.memoryBytes) {
      this.chunks.push(chunk)
      this.held += chunk.length
      done()
      return
    }
    if (!this.file) {
      this.path = join(this.dir, `${spoolPrefix}${randomBytes(8).toString('hex')}.part`)
      this.file = createWriteStream(this.path, { flags: 'wx', mode: 0o600 })
      this.file.on('error', (err) => this.destroy(err))
      for (const held of this.chunks) this.file.write(held)
      this.chunks = []
    }
    if (this.file.write(chunk)) done()
    else this.file.once('drain', () => done())
  }
  override _final(done: (err?: Error | null) => void) {
    if (!this.file) {
      done()
      return
    }
    this.file.end()
    this.file.once('finish', () => done())
  }
  override _destroy(err: Error | null, done: (err?: Error | null) => void) {
    this.file?.destroy()
    done(err)
  }
}

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

export async function spoolToFile(
  source: NodeJS.ReadableStream,
  options: { dir: string; maxBytes: number; onLimit: () => Error; signal?: AbortSignal; memoryBytes?: number },
): Promise<SpooledFile> {
  // A source that fails while the directory is being made (a client abort) must not become an
  // uncaught 'error': the pipeline below still sees the stored error and rejects with it.
  const early = () => {}
  source.on('error', early)
  const counter = new HashCounter(options.maxBytes, options.onLimit)
  const sink = new SpoolSink(options.dir, options.memoryBytes ?? memorySpoolBytes)
  try {
    await ensureDir(options.dir)
    await pipeline(source, counter, sink, {
      ...(options.signal ? { signal: options.signal } : {}),
    })
    // A multipart parser that hit its own size limit ends the stream early and only flags it
    // (busboy's `truncated`): a cut file must never pass for a whole one.
    if ((source as { truncated?: boolean }).truncated) throw options.onLimit()
  } catch (err) {
    // The directory vanished under us (a tmp cleaner): make it again for the next upload.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') madeDirs.delete(options.dir)
    if (sink.path) await rm(sink.path, { force: true })
    throw err
  } finally {
    source.removeListener('error', early)
  }
  const sha256 = counter.digest()
  return sink.path
    ? { path: sink.path, bytes: counter.bytes, sha256 }
    : { buffer: sink.buffer as Buffer, bytes: counter.bytes, sha256 }
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
