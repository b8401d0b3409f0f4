/**
 * Originals in a local directory (`ORIGINALS_URL=file:///absolute/path`): `<root>/<tenant>/<sha256>`,
 * staging files under `<root>/.staging/`. Files are 0600 in 0700 directories. A staged file is
 * flushed to disk before it is linked under its content address (the writer's hash, its size
 * checked); `link` fails when the name exists, so concurrent writers of one content leave exactly
 * one object and each learns which it was. A resumable upload that arrived as one segment becomes
 * its original the same way: the segment file is linked under its content address (assemble).
 */
import { randomUUID } from 'node:crypto'
import { createWriteStream, fdatasync, type WriteStream } from 'node:fs'
import { access, constants, type FileHandle, link, mkdir, open, readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { checkSegmentKey, directorySegments, segmentVersion } from '../staging/segments.js'
import {
  checkKey,
  checkTenant,
  isContentKey,
  type OriginalKey,
  OriginalMissingError,
  type OriginalsStore,
  type SegmentSource,
  type StagedOriginal,
  type StagingObject,
  type StoredObject,
  stagedContentError,
} from './store.js'
import { StagingCount, verifyingStream } from './verify.js'

const stagingDir = '.staging'
const segmentsDir = '.resumable'
const stagingIdPattern = /^[0-9a-f-]{36}$/

const isMissing = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT'

/** How much is written between two background flushes of a staging file. */
const syncEveryBytes = 8 * 1024 * 1024

/**
 * Flushes a staging file to disk in the background while it is written (fdatasync every
 * `syncEveryBytes`, one at a time, never holding the writes), so that the flush on close, which
 * the commit waits for, has only the last few MiB left instead of the whole body.
 */
class SyncBehind {
  #unsynced = 0
  #inFlight: Promise<void> | undefined
  constructor(private readonly file: WriteStream) {}

  async *pass(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array, void, undefined> {
    for await (const chunk of source) {
      this.#unsynced += chunk.byteLength
      const { fd } = this.file as WriteStream & { fd: number | null }
      if (this.#unsynced >= syncEveryBytes && !this.#inFlight && typeof fd === 'number') {
        this.#unsynced = 0
        // A failed background flush is not the write's failure: the flush on close reports it.
        this.#inFlight = new Promise<void>((resolve) => fdatasync(fd, () => resolve())).then(() => {
          this.#inFlight = undefined
        })
      }
      yield chunk
    }
    await this.#inFlight // the file closes once this ends: not under a flush
  }

  /**
   * Waits for a background flush still running, once the write ended or failed (a failed write may
   * close the file under it: harmless, a flush writes nothing of its own).
   */
  async settled(): Promise<void> {
    await this.#inFlight
  }
}

export function createFileOriginalsStore(root: string): OriginalsStore {
  const objectPath = (key: OriginalKey) => join(root, checkKey(key).tenant, key.sha256)
  const stagingPath = (id: string) => join(root, stagingDir, id)
  let rootReady: Promise<unknown> | undefined
  const ensureRoot = () => {
    rootReady ??= mkdir(join(root, stagingDir), { recursive: true, mode: 0o700 }).catch((err) => {
      rootReady = undefined
      throw err
    })
    return rootReady
  }

  /** Links the file at `path` under `key`: `existing` when the name is taken (the same content, kept already). */
  async function linkUnder(key: OriginalKey, path: string): Promise<'created' | 'existing'> {
    const target = objectPath(key)
    await mkdir(join(root, key.tenant), { recursive: true, mode: 0o700 })
    try {
      await link(path, target)
      return 'created'
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return 'existing'
      throw err
    }
  }

  async function stage(
    tenant: string,
    body: Readable | AsyncIterable<Uint8Array>,
    declared?: { sha256: string },
  ): Promise<StagedOriginal> {
    checkTenant(tenant)
    await ensureRoot()
    const id = randomUUID()
    const path = stagingPath(id)
    const count = new StagingCount()
    // flush: the data is synced to disk before the file closes, so a committed original survives a crash.
    const file = createWriteStream(path, { flags: 'wx', mode: 0o600, flush: true })
    const syncing = new SyncBehind(file)
    try {
      await pipeline(syncing.pass(count.pass(body)), file)
    } catch (err) {
      await rm(path, { force: true })
      throw err
    } finally {
      await syncing.settled()
    }
    const discard = () => rm(path, { force: true })
    return {
      bytes: count.bytes,
      discard,
      async commit(content) {
        const refused = stagedContentError(count.bytes, content, declared)
        if (refused) {
          await discard()
          throw refused
        }
        try {
          return await linkUnder({ tenant, sha256: content.sha256 }, path)
        } finally {
          await discard()
        }
      },
    }
  }

  /**
   * A resumable upload that arrived as one segment (one tus PATCH, one OpenAI part): the segment file
   * is flushed and linked under its content address, once the writer hashed it, if it is still the
   * file it read. Several segments: undefined. A directory cannot join files without copying their
   * bytes, and one file appended to by each PATCH could take bytes from a writer that lost its lease
   * after they were hashed; the completion's read keeps the original then (docs/originals.md).
   */
  function assemble(tenant: string, segments: ReadonlyArray<SegmentSource>): StagedOriginal | undefined {
    checkTenant(tenant)
    const [segment, ...more] = segments.filter((s) => s.bytes > 0)
    if (!segment || more.length > 0) return undefined
    const path = join(root, segmentsDir, checkSegmentKey(segment.key))
    return {
      bytes: segment.bytes,
      // Nothing is staged: the segment is the upload's, removed with it (the link keeps the original).
      discard: async () => {},
      async commit(content) {
        const refused = stagedContentError(segment.bytes, content)
        if (refused) throw refused
        const file = await open(path, 'r')
        try {
          if (segmentVersion(await file.stat()) !== segment.version()) {
            throw new Error('the segment is not the file that was read')
          }
          await file.datasync() // a committed original survives a crash, as a staged one does
        } finally {
          await file.close()
        }
        return linkUnder({ tenant, sha256: content.sha256 }, path)
      },
    }
  }

  async function statObject(key: OriginalKey): Promise<number | null> {
    try {
      return (await stat(objectPath(key))).size
    } catch (err) {
      if (isMissing(err)) return null
      throw err
    }
  }

  async function* list(): AsyncIterable<StoredObject> {
    await ensureRoot()
    for (const tenant of await readdir(root)) {
      if (tenant === stagingDir) continue
      const names = await readdir(join(root, tenant)).catch((err) => (isMissing(err) ? [] : Promise.reject(err)))
      for (const sha256 of names) {
        if (!isContentKey(tenant, sha256)) continue
        const info = await stat(join(root, tenant, sha256)).catch(() => undefined)
        if (info) yield { tenant, sha256, bytes: info.size, modifiedAt: info.mtime }
      }
    }
  }

  async function* listStaging(): AsyncIterable<StagingObject> {
    await ensureRoot()
    for (const id of await readdir(join(root, stagingDir))) {
      if (!stagingIdPattern.test(id)) continue
      const info = await stat(stagingPath(id)).catch(() => undefined)
      if (info) yield { id, bytes: info.size, modifiedAt: info.mtime }
    }
  }

  return {
    kind: 'file',
    stage,
    stat: statObject,
    async read(key) {
      // Opened here, not by the stream on its own later: a remove in between is a missing original
      // now, never a stream error after it was handed on. The stream closes the file.
      let file: FileHandle
      try {
        file = await open(objectPath(key), 'r')
      } catch (err) {
        if (isMissing(err)) throw new OriginalMissingError(key)
        throw err
      }
      try {
        const { size } = await file.stat()
        return { bytes: size, stream: verifyingStream(key, file.createReadStream()) }
      } catch (err) {
        await file.close()
        throw err
      }
    },
    async remove(key) {
      await rm(objectPath(key), { force: true })
    },
    list,
    listStaging,
    async removeStaging(id) {
      if (!stagingIdPattern.test(id)) throw new TypeError('invalid staging id')
      await rm(stagingPath(id), { force: true })
    },
    segments: directorySegments(join(root, segmentsDir)),
    assemble,
    async ping() {
      await ensureRoot()
      await access(root, constants.W_OK)
    },
    async close() {},
  }
}
