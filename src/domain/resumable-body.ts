/**
 * A resumable upload's staged bytes taken in for the upload path: read once, in order, into a spool
 * file under UPLOAD_TMP_DIR (hashed and counted as they pass, the provider's limit enforced), the
 * hashes the client declared checked, and with originals kept the original staged beside the spool
 * in the same pass (the tee the multipart intake uses). The spool is what the provider put reads,
 * and retries re-read: the staging area is read exactly once.
 */
import { createHash, type Hash } from 'node:crypto'
import { Readable } from 'node:stream'
import { AppError, errors } from '../errors.js'
import type { OriginalsStore } from '../originals/index.js'
import { inSpan } from '../spans.js'
import { type OriginalSource, StagingTee } from './original-writes.js'
import { MirrorClosedError, removeSpool, type SpooledFile, spoolToFile } from './spool.js'

/** The bytes of a resumable upload, as its staging area yields them, and what the client declared of them. */
export interface StagedBody {
  /** The segments in order, as one stream (read once). */
  stream: Readable
  /** The declared size, which the segments add up to. */
  bytes: number
  /** Declared before the bytes (tus metadata `sha256`): a live duplicate answers unread; checked once read. */
  sha256?: string | undefined
  /** OpenAI's `md5` on complete: checked once read, before any provider hears of the upload. */
  md5?: string | undefined
}

export interface StagedTarget {
  tenant: string
  /** UPLOAD_TMP_DIR, where the spool file goes. */
  dir: string
  /** The largest limit of the plan's candidates, and whose it is. */
  limit: { provider: string; maxBytes: number }
  originals: OriginalsStore | undefined
}

/** Spools the staged body; the caller removes the spool, and a staged original it does not keep. */
export async function receiveStaged(
  body: StagedBody,
  target: StagedTarget,
): Promise<{ spool: SpooledFile; original: OriginalSource | undefined }> {
  const md5 = body.md5 ? createHash('md5') : undefined
  const source = md5 ? Readable.from(hashed(body.stream, md5), { objectMode: false }) : body.stream
  const { originals, tenant, limit } = target
  let tee: StagingTee | undefined
  const mirror = originals
    ? () => {
        tee = new StagingTee(originals, tenant)
        return tee.sink
      }
    : undefined
  let spool: SpooledFile
  try {
    spool = await inSpan(
      'filegate.upload.receive',
      {},
      () =>
        spoolToFile(source, {
          dir: target.dir,
          maxBytes: limit.maxBytes,
          onLimit: () => errors.fileTooLarge(limit.provider, limit.maxBytes),
          ...(mirror ? { mirror } : {}),
        }),
      (received) => ({ 'filegate.bytes': received.bytes }),
    )
  } catch (err) {
    const failure =
      err instanceof MirrorClosedError ? ((await tee?.storeFailure()) ?? errors.originalsUnavailable(err)) : err
    await tee?.discard()
    throw failure
  }
  const refusal = declaredMismatch(body, spool, md5?.digest('hex'))
  if (refusal) {
    await Promise.all([removeSpool(spool), tee?.discard()])
    throw refusal
  }
  try {
    return { spool, original: tee ? { kind: 'staged', staged: await tee.staged } : undefined }
  } catch (err) {
    await removeSpool(spool)
    throw err
  }
}

async function* hashed(source: AsyncIterable<Buffer>, hash: Hash): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    hash.update(chunk)
    yield chunk
  }
}

/** CHECKSUM_MISMATCH when the bytes are not what the client declared (sha256, md5), else undefined. */
function declaredMismatch(body: StagedBody, spool: SpooledFile, md5: string | undefined): AppError | undefined {
  if (body.sha256 && spool.sha256 !== body.sha256) {
    return new AppError('CHECKSUM_MISMATCH', {
      detail: 'The uploaded bytes do not match the declared sha256',
      extensions: { declared: body.sha256, actual: spool.sha256 },
    })
  }
  if (body.md5 && md5 !== body.md5.toLowerCase()) {
    return new AppError('CHECKSUM_MISMATCH', {
      detail: 'The parts, in the order given, do not match the md5',
      extensions: { declared: body.md5, actual: md5 },
    })
  }
  return undefined
}
