/**
 * The staging area of resumable uploads: where their segments wait until the upload settles. In the
 * originals store when ORIGINALS_URL is set (a bucket or directory every replica reaches, so an
 * upload continues on any replica), else under UPLOAD_TMP_DIR/resumable (one replica: a client
 * must come back to the replica it began on). The database records which segments an upload has
 * (migration 0011); this module only stores, reads and removes their bytes.
 */
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { AppError, errors } from '../errors.js'
import type { OriginalsStore } from '../originals/index.js'
import { directorySegments, type SegmentObjects } from './segments.js'

export interface StagingArea {
  /** `shared`: every replica reaches it (the originals store); `local`: this replica's disk only. */
  readonly reach: 'shared' | 'local'
  /** Stores what `body` yields as one segment of the upload; resolves with the bytes stored. */
  write(uploadId: string, segmentId: string, body: AsyncIterable<Uint8Array>): Promise<number>
  /** The segments, in the order given, as one stream; a segment whose size differs from its record fails it. */
  read(uploadId: string, segments: ReadonlyArray<{ id: string; bytes: number }>): Readable
  /** Removes every segment of the upload, including those of writes a crash cut short. */
  remove(uploadId: string): Promise<void>
}

export function createStagingArea(originals: OriginalsStore | undefined, uploadTmpDir: string): StagingArea {
  const objects = originals ? originals.segments : directorySegments(join(uploadTmpDir, 'resumable'))
  return {
    reach: originals ? 'shared' : 'local',
    write: (uploadId, segmentId, body) => objects.put(`${uploadId}/${segmentId}`, body),
    read: (uploadId, segments) =>
      Readable.from(concatenated(objects, uploadId, segments, originals !== undefined), { objectMode: false }),
    remove: (uploadId) => objects.removeAll(uploadId),
  }
}

/**
 * Each segment in turn, counted against its record: a segment cut or grown behind our back is an
 * error. Failures are the service's (503 when the originals store does not answer), never the client's.
 */
async function* concatenated(
  objects: SegmentObjects,
  uploadId: string,
  segments: ReadonlyArray<{ id: string; bytes: number }>,
  shared: boolean,
): AsyncGenerator<Buffer> {
  for (const segment of segments) {
    let bytes = 0
    try {
      for await (const chunk of await objects.get(`${uploadId}/${segment.id}`)) {
        bytes += (chunk as Buffer).byteLength
        yield chunk as Buffer
      }
    } catch (err) {
      throw shared ? errors.originalsUnavailable(err) : stagingFailure(`cannot read staged segment ${segment.id}`, err)
    }
    if (bytes !== Number(segment.bytes)) {
      throw stagingFailure(`staged segment ${segment.id} holds ${bytes} bytes, ${segment.bytes} were recorded`)
    }
  }
}

/** A 500 whose detail stays in the log (the answer says nothing of the service's insides). */
const stagingFailure = (why: string, cause?: unknown) =>
  new AppError('INTERNAL', { detail: errors.internal().detail, cause: new Error(why, { cause }) })
