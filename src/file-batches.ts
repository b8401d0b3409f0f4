/**
 * Writing an upload's bytes to a local file in batches (the spool file, an S3 part's reserve): the
 * chunks are copied into 256 KiB buffers that take turns, one filling while the other is written,
 * instead of holding the socket's own buffers until a thread-pool write returns. A chunk held that
 * long outlives the young generation's collections and is kept until a full one; eight concurrent
 * large uploads' worth of those is tens of MiB. The buffers are pooled across files.
 */
import type { FileHandle } from 'node:fs/promises'

/** The size of a batch: one write (a thread-pool round trip) per 256 KiB instead of per 64 KiB chunk. */
export const fileBatchBytes = 256 * 1024

/** Batch buffers of finished files, for the next ones (a few: enough for a busy moment, 4 MiB at most). */
const pool: Buffer[] = []
const poolMax = 16

export const takeBatch = (): Buffer => pool.pop() ?? Buffer.allocUnsafe(fileBatchBytes)

/** Gives back a batch buffer no write is using any more. */
export const returnBatch = (buffer: Buffer | undefined): void => {
  if (buffer && pool.length < poolMax) pool.push(buffer)
}

/**
 * One writev of `batch` at `position`, continued if only part of it was written (libuv reports a
 * short count, not the error, when e.g. the disk fills after some bytes; the retry surfaces it).
 */
export async function writeAll(
  file: Pick<FileHandle, 'writev' | 'write'>,
  batch: Buffer[],
  size: number,
  position: number,
): Promise<void> {
  let done = (await file.writev(batch, position)).bytesWritten
  if (done >= size) return
  const whole = Buffer.concat(batch, size)
  while (done < size) done += (await file.write(whole, done, size - done, position + done)).bytesWritten
}
