/**
 * The staging area of resumable uploads: where their segments wait until the upload settles. In the
 * originals store when ORIGINALS_URL is set (a bucket or directory every replica reaches, so an
 * upload continues on any replica), else under UPLOAD_TMP_DIR/resumable (one replica: a client
 * must come back to the replica it began on). The database records which segments an upload has
 * (migration 0011); this module only stores, reads and removes their bytes, and asks the originals
 * store to assemble the finished file from them where it can (no byte through filegate again).
 */
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { AppError, errors } from '../errors.js'
import type { OriginalsStore, StagedOriginal } from '../originals/index.js'
import { directorySegments, type SegmentObjects } from './segments.js'

/** A finished upload's segments as the completion reads them. */
export interface StagedRead {
  /** The segments, in order, as one stream (read once). */
  stream: Readable
  /**
   * The original assembled in the originals store from the very segments the stream yields, committed
   * once the reader hashed them; undefined where the store cannot (the stream's bytes are then kept).
   */
  original: StagedOriginal | undefined
}

export interface StagingArea {
  /** `shared`: every replica reaches it (the originals store); `local`: this replica's disk only. */
  readonly reach: 'shared' | 'local'
  /** Stores what `body` yields as one segment of the upload; resolves with the bytes stored. */
  write(uploadId: string, segmentId: string, body: AsyncIterable<Uint8Array>): Promise<number>
  /**
   * The tenant's upload's segments, in the order given, as one stream (a segment whose size differs
   * from its record fails it), and their original assembled in the store where it can be.
   */
  read(upload: { id: string; tenant: string }, segments: ReadonlyArray<{ id: string; bytes: number }>): StagedRead
  /** Removes every segment of the upload, including those of writes a crash cut short. */
  remove(uploadId: string): Promise<void>
}

export function createStagingArea(originals: OriginalsStore | undefined, uploadTmpDir: string): StagingArea {
  const objects = originals ? originals.segments : directorySegments(join(uploadTmpDir, 'resumable'))
  return {
    reach: originals ? 'shared' : 'local',
    write: (uploadId, segmentId, body) => objects.put(`${uploadId}/${segmentId}`, body),
    read(upload, segments) {
      // The version each segment was read at: the assembly copies that very object.
      const versions = new Map<string, string | undefined>()
      const stream = Readable.from(concatenated(objects, upload.id, segments, originals !== undefined, versions), {
        objectMode: false,
      })
      const sources = segments.map((s) => ({
        key: `${upload.id}/${s.id}`,
        bytes: Number(s.bytes),
        version: () => versions.get(s.id),
      }))
      return { stream, original: originals?.assemble(upload.tenant, sources) }
    },
    remove: (uploadId) => objects.removeAll(uploadId),
  }
}

/**
 * Each segment in turn, counted against its record: a segment cut or grown behind our back is an
 * error. Failures are the service's (503 when the originals store does not answer), never the client's.
 * `versions` learns the version of each segment read whole.
 */
async function* concatenated(
  objects: SegmentObjects,
  uploadId: string,
  segments: ReadonlyArray<{ id: string; bytes: number }>,
  shared: boolean,
  versions: Map<string, string | undefined>,
): AsyncGenerator<Buffer> {
  for (const segment of segments) {
    let bytes = 0
    let version: string | undefined
    try {
      const object = await objects.get(`${uploadId}/${segment.id}`)
      version = object.version
      for await (const chunk of object.stream) {
        bytes += (chunk as Buffer).byteLength
        yield chunk as Buffer
      }
    } catch (err) {
      throw shared ? errors.originalsUnavailable(err) : stagingFailure(`cannot read staged segment ${segment.id}`, err)
    }
    if (bytes !== Number(segment.bytes)) {
      throw stagingFailure(`staged segment ${segment.id} holds ${bytes} bytes, ${segment.bytes} were recorded`)
    }
    // Read whole: the version the assembly may copy.
    versions.set(segment.id, version)
  }
}

/** A 500 whose detail stays in the log (the answer says nothing of the service's insides). */
const stagingFailure = (why: string, cause?: unknown) =>
  new AppError('INTERNAL', { detail: errors.internal().detail, cause: new Error(why, { cause }) })
