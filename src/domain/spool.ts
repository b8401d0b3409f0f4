/**
 * Streams an upload to a temp file under UPLOAD_TMP_DIR while hashing and counting it, so the
 * file is never held in memory and its size limit is enforced as it arrives. The temp file is
 * removed on every failure path; the caller removes it after the provider upload.
 */
import { createHash, randomBytes } from 'node:crypto'
import { type FileHandle, lstat, mkdir, open, readdir, rm, stat } from 'node:fs/promises'
import { hostname } from 'node:os'
import { join } from 'node:path'
import type { Readable, Writable } from 'node:stream'
import { AppError, errors } from '../errors.js'
import { fileBatchBytes, returnBatch, takeBatch, writeAll } from '../file-batches.js'

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

/** Counts and hashes what it is given (`add`, or a stream through `pass`); fails with `onLimit()` past `maxBytes`. */
export class HashCounter {
  readonly hash = createHash('sha256')
  bytes = 0
  /** The `onLimit()` error, once the limit was passed. */
  failure: Error | undefined
  /** `pass`: the source failed (the client's body broke off or was malformed), as the client's error. */
  sourceError: Error | undefined
  /** `pass`: true while it waits for the source's next chunk (the client is the one to send). */
  waitingForSource = false
  constructor(
    private readonly maxBytes: number,
    private readonly onLimit: () => Error,
  ) {}
  /** Counts and hashes `chunk`; past the limit it hashes nothing and returns (and keeps) `onLimit()`. */
  add(chunk: Buffer): Error | undefined {
    this.bytes += chunk.length
    if (this.bytes > this.maxBytes) {
      this.failure = this.onLimit()
      return this.failure
    }
    this.hash.update(chunk)
    return undefined
  }
  /**
   * Yields `source` unchanged, hashing and counting; a plain generator, not a Transform (one stream
   * hop less per chunk). It notes whether it is waiting on the source, so that a consumer failing
   * meanwhile can tell a slow sender from a slow receiver.
   */
  async *pass(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer, void, undefined> {
    const chunks = source[Symbol.asyncIterator]()
    try {
      for (;;) {
        let next: IteratorResult<Buffer>
        this.waitingForSource = true
        try {
          next = await chunks.next()
        } catch (err) {
          this.sourceError = clientBodyError(err) as Error
          throw this.sourceError
        } finally {
          this.waitingForSource = false
        }
        if (next.done) return
        const failure = this.add(next.value)
        if (failure) throw failure
        yield next.value
      }
    } finally {
      await chunks.return?.()
    }
  }
  /**
   * Why a consumer of `pass` failed on the sender's side, if it did: the limit, the source
   * breaking off, or (`consumerTimedOut`) the consumer timing out while it waited for the source.
   */
  senderFailure(consumerTimedOut: boolean): Error | undefined {
    if (this.failure || this.sourceError) return this.failure ?? this.sourceError
    return consumerTimedOut && this.waitingForSource ? tooSlow() : undefined
  }
  digest(): string {
    return this.hash.digest('hex')
  }
}

/**
 * Makes the spool directory (0700) or checks the one that is there: a directory (not a symlink),
 * owned by this process's user, writable by nobody else. Another local user who owned it, or could
 * write to it, could swap a spooled body after it was hashed and before it is uploaded.
 */
export async function prepareSpoolDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const info = await lstat(dir)
  const uid = process.getuid?.()
  const problem = !info.isDirectory()
    ? 'is not a directory'
    : uid !== undefined && info.uid !== uid
      ? `is owned by uid ${info.uid}, not by this process (uid ${uid})`
      : (info.mode & 0o022) !== 0
        ? `is writable by other users (mode ${(info.mode & 0o777).toString(8)})`
        : undefined
  if (problem) {
    throw new Error(
      `UPLOAD_TMP_DIR ${dir} ${problem}: refusing it, since another user could swap a spooled upload; use a directory of this user with mode 0700`,
    )
  }
}

/** Prepared once per directory, not once per upload (a syscall chain on the small-upload hot path). */
const madeDirs = new Map<string, Promise<unknown>>()
const ensureDir = (dir: string) => {
  let made = madeDirs.get(dir)
  if (!made) {
    made = prepareSpoolDir(dir).catch((err) => {
      madeDirs.delete(dir)
      throw err
    })
    madeDirs.set(dir, made)
  }
  return made
}

const spoolName = (dir: string) => join(dir, `${spoolPrefix}${randomBytes(8).toString('hex')}.part`)

/**
 * A fresh path for a temp file of this process under `dir` (prepared as the spool directory), named
 * like a spool file so that the stale-spool sweep removes it when the process dies holding it: the
 * originals store buffers an S3 part there.
 */
export async function spoolFilePath(dir: string): Promise<string> {
  await ensureDir(dir)
  return spoolName(dir)
}

/**
 * Spill-file writes are batched: the socket delivers 64 KiB chunks and each write is a round trip
 * through libuv's thread pool, so chunks are gathered to this size and written with one writev.
 * At most two batches are held per upload (one being written, one filling) before the source pauses.
 */
export const spoolWriteBatchBytes = fileBatchBytes

/**
 * Reads `source` to its end, hashing and counting as it arrives: up to `memoryBytes` it is held in
 * memory; past that everything so far and the rest go to a 0600 temp file in batched writes, with
 * backpressure. Plain 'data' listeners and a FileHandle, not stream.pipeline into a WriteStream:
 * a dedup hit of a small body is the hot path (a pipeline cost it a fifth of its CPU), and a large
 * body pays one thread-pool round trip per 256 KiB instead of per 64 KiB chunk.
 */
export interface SpoolOptions {
  dir: string
  maxBytes: number
  onLimit: () => Error
  memoryBytes?: number
  /**
   * A second consumer of a body that spills (the originals store's staging): opened at the spill,
   * it gets every byte in order and ends with the body; the source waits while it is full, so it
   * is written as the body streams, without a second pass over the spool file. The spool fails with
   * MirrorClosedError when it closes early, and destroys it with the cause when the spool fails.
   */
  mirror?: () => Writable
}

/** The mirror of a spool (see SpoolOptions.mirror) closed before the body ended: its consumer failed. */
export class MirrorClosedError extends Error {
  constructor() {
    super('the mirror of the upload body closed before the body ended')
    this.name = 'MirrorClosedError'
  }
}

export function spoolToFile(source: Readable, options: SpoolOptions): Promise<SpooledFile> {
  return new Promise<SpooledFile>((resolve, reject) => new Spooler(source, options, resolve, reject).start())
}

/** One body being spooled: the source's listeners and the spill file's writes, until it settles once. */
class Spooler {
  private readonly counter: HashCounter
  private readonly memoryBytes: number
  /**
   * What arrived and is not on disk yet: the whole body while in memory; once spilled, the filling
   * batch is `fill` (its first `fillBytes`) followed by `held` (chunks that did not fit).
   */
  private held: Buffer[] = []
  private heldBytes = 0
  /**
   * Once spilled, chunks are copied into `fill` and the socket's own buffers are let go at once
   * (src/file-batches.ts says why). The two buffers take turns: one filling, one being written.
   */
  private fill: Buffer | undefined
  private spare: Buffer | undefined
  private fillBytes = 0
  private path: string | undefined
  /** Set once the spill file is being opened; resolves to its handle (or undefined if that failed). */
  private opening: Promise<FileHandle | undefined> | undefined
  private file: FileHandle | undefined
  private position = 0
  private writing = false
  private ended = false
  private settled = false
  private mirror: Writable | undefined
  /** The mirror refused the last chunk: the source waits for its 'drain'. */
  private mirrorFull = false

  constructor(
    private readonly source: Readable,
    private readonly options: SpoolOptions,
    private readonly resolve: (file: SpooledFile) => void,
    private readonly reject: (err: Error) => void,
  ) {
    this.counter = new HashCounter(options.maxBytes, options.onLimit)
    this.memoryBytes = options.memoryBytes ?? memorySpoolBytes
  }

  start(): void {
    const { source } = this
    // A parser may have destroyed the part before it was handed over (a body that ended early):
    // its 'error' and 'close' are gone, so waiting for them would hang until the request timeout.
    if (source.destroyed && !source.readableEnded) {
      this.onSourceError(source.errored ?? new Error('the body ended before the file part did'))
      return
    }
    source.on('data', this.onData)
    source.once('end', this.onEnd)
    source.on('error', this.onSourceError)
    source.once('close', this.onClose)
  }

  private detach(): void {
    this.source.removeListener('data', this.onData)
    this.source.removeListener('end', this.onEnd)
    this.source.removeListener('error', this.onSourceError)
    this.source.removeListener('close', this.onClose)
  }

  private settle(file: SpooledFile): void {
    this.settled = true
    this.detach()
    this.resolve(file)
  }

  private readonly onSourceError = (err: Error) => this.fail(clientBodyError(err) as Error)

  private readonly fail = (err: Error): void => {
    if (this.settled) return
    this.settled = true
    this.detach()
    const { source } = this
    // Whatever the source still emits (its own destroy error included) must not go unhandled.
    source.on('error', () => {})
    if (!source.destroyed) source.destroy()
    this.mirror?.destroy(err)
    // The directory vanished under us (a tmp cleaner): make it again for the next upload.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') madeDirs.delete(this.options.dir)
    // Close before removing, and only after a pending open settled: a file created after the
    // removal would be left behind.
    const path = this.path
    const cleaned = (this.opening ?? Promise.resolve(undefined))
      .then((fh) => fh?.close())
      .catch(() => {})
      .then(() => (path ? rm(path, { force: true }) : undefined))
    cleaned.then(
      () => this.reject(err),
      () => this.reject(err),
    )
  }

  /** Past the memory threshold: opens the 0600 spill file (and the mirror); what is held goes to it first. */
  private spill(): void {
    this.openMirror()
    const before = this.held
    this.held = []
    this.heldBytes = 0
    this.fill = takeBatch()
    this.spare = takeBatch()
    for (const chunk of before) this.hold(chunk)
    const target = spoolName(this.options.dir)
    this.path = target
    this.opening = ensureDir(this.options.dir)
      .then(() => open(target, 'wx', 0o600))
      .then(
        (fh) => {
          this.file = fh
          this.pump()
          return fh
        },
        (err: Error) => {
          this.fail(err)
          return undefined
        },
      )
  }

  /** Writes the held batch when it is full (or the body ended), resumes the source, finishes at the end. */
  private pump(): void {
    const { file } = this
    if (this.settled || !file || this.writing) return
    // A batch is written once full, at the end, or as soon as the source waits for the mirror: the
    // chunks are written while it waits instead of sitting in memory until the batch fills.
    if (this.heldBytes >= spoolWriteBatchBytes || ((this.ended || this.mirrorFull) && this.heldBytes > 0)) {
      const batch = this.fill && this.fillBytes > 0 ? [this.fill.subarray(0, this.fillBytes), ...this.held] : this.held
      const size = this.heldBytes
      // The batch being written keeps its buffer until the write is done; the other one fills meanwhile.
      ;[this.fill, this.spare] = [this.spare, this.fill]
      this.fillBytes = 0
      this.held = []
      this.heldBytes = 0
      this.writing = true
      writeAll(file, batch, size, this.position).then(() => {
        this.position += size
        this.writing = false
        this.pump()
      }, this.fail)
    } else if (this.ended) {
      // Nothing is being written: the batch buffers can serve the next spool.
      returnBatch(this.fill)
      returnBatch(this.spare)
      this.fill = this.spare = undefined
      const sha256 = this.counter.digest()
      file.close().then(() => {
        if (!this.settled) this.settle({ path: this.path as string, bytes: this.counter.bytes, sha256 })
      }, this.fail)
      return
    }
    this.resumeIfFree()
  }

  /** Resumes the source unless the spill file or the mirror still holds it back. */
  private resumeIfFree(): void {
    if (this.ended || this.settled || this.mirrorFull || !this.source.isPaused()) return
    if (this.heldBytes < spoolWriteBatchBytes) this.source.resume()
  }

  private openMirror(): void {
    const mirror = this.options.mirror?.()
    if (!mirror) return
    this.mirror = mirror
    const closedEarly = () => {
      if (!mirror.writableFinished) this.fail(new MirrorClosedError())
    }
    mirror.on('error', closedEarly)
    mirror.once('close', closedEarly)
    mirror.on('drain', () => {
      this.mirrorFull = false
      this.resumeIfFree()
    })
    for (const chunk of this.held) this.toMirror(chunk)
  }

  private toMirror(chunk: Buffer): void {
    if (this.mirror && !this.mirror.write(chunk)) {
      this.mirrorFull = true
      this.source.pause()
      this.pump()
    }
  }

  /** Keeps `chunk` until it is written: copied into the filling batch where it fits, else as it is. */
  private hold(chunk: Buffer): void {
    const { fill } = this
    if (fill && this.held.length === 0 && this.fillBytes + chunk.length <= fill.length) {
      chunk.copy(fill, this.fillBytes)
      this.fillBytes += chunk.length
    } else this.held.push(chunk)
    this.heldBytes += chunk.length
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.settled) return
    const failure = this.counter.add(chunk)
    if (failure) {
      this.fail(failure)
      return
    }
    this.hold(chunk)
    if (this.path === undefined) {
      if (this.counter.bytes > this.memoryBytes) this.spill()
      else return
    } else this.toMirror(chunk)
    if (this.heldBytes < spoolWriteBatchBytes) return
    // A full batch: write it now if the file is free, and hold the source until it is.
    if (!this.file || this.writing) this.source.pause()
    this.pump()
  }

  private readonly onEnd = (): void => {
    if (this.settled) return
    // A multipart parser that hit its own size limit ends the stream early and only flags it
    // (busboy's `truncated`): a cut file must never pass for a whole one.
    if ((this.source as { truncated?: boolean }).truncated) {
      this.fail(this.options.onLimit())
      return
    }
    this.ended = true
    this.mirror?.end()
    if (this.path !== undefined) {
      this.pump()
      return
    }
    const { held, counter } = this
    this.settle({
      buffer: held.length === 1 ? (held[0] as Buffer) : Buffer.concat(held, counter.bytes),
      bytes: counter.bytes,
      sha256: counter.digest(),
    })
  }

  private readonly onClose = (): void => {
    if (!this.source.readableEnded) this.onSourceError(new Error('the body ended before the file part did'))
  }
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
 * Removes spool files that no live upload owns. A file of this host whose process is gone goes
 * whatever its age (a process killed and restarted within UPLOAD_TIMEOUT_MS would otherwise leave
 * it for good); one of a live process on this host, this one included, is never touched. A file of
 * another host (a shared directory) goes once older than `maxAgeMs`, since its process cannot be
 * asked: a live upload touches its file within UPLOAD_TIMEOUT_MS.
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
    const pid = Number(m[2])
    if (m[1] === host) {
      if (pid === process.pid || isAlive(pid)) continue
    } else {
      const info = await stat(path).catch(() => undefined)
      if (!info || Date.now() - info.mtimeMs < maxAgeMs) continue
    }
    await rm(path, { force: true })
    removed++
  }
  return removed
}

/**
 * What the client's body failing means for the answer: a multipart parser's plain Error (no
 * boundary, a part cut short, a malformed part header) or a premature end is the client's
 * 400, never a 500. Catalogue errors, Fastify's own 4xx and file-system failures (a full
 * disk is ours) pass through unchanged.
 */
export function clientBodyError(err: unknown): unknown {
  if (err instanceof AppError) return err
  const e = err as { statusCode?: unknown; syscall?: unknown; message?: unknown } | null
  if (typeof e?.statusCode === 'number' || typeof e?.syscall === 'string') return err
  const reason = typeof e?.message === 'string' ? e.message.slice(0, 200) : 'unreadable'
  return new AppError('VALIDATION_FAILED', {
    detail: `The multipart body is malformed or cut short (${reason})`,
    cause: err,
  })
}

/** A body streamed through to a provider must keep pace with it; the client was the slow side. */
export const tooSlow = () =>
  errors.requestTimeout(
    'The body arrived too slowly to stream it through to the provider; send it faster, or without X-Content-SHA256 to have it received first',
  )
