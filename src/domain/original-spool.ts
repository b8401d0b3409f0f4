/**
 * Reading a kept original back into a spool file, for a copy to another provider or a heal: the
 * store's verifying read withholds the last chunk until the content hashed to its key, so a
 * corrupt or cut object fails the spool and nothing of it is ever sent to a provider.
 */
import { errors } from '../errors.js'
import { OriginalCorruptError, OriginalMissingError, type OriginalsStore } from '../originals/index.js'
import { removeSpool, type SpooledFile, spoolToFile } from './spool.js'

/** The original cannot serve (not stored, or not the content its key names): 409 for the caller. */
export class OriginalLostError extends Error {
  readonly code = 'ORIGINAL_LOST'
  constructor(readonly why: string) {
    super(why)
    this.name = 'OriginalLostError'
  }
}

export interface OriginalSpoolOptions {
  dir: string
  maxBytes: number
  onLimit: () => Error
}

/**
 * The original of (tenant, sha256), spooled and verified. Throws OriginalLostError when it is
 * missing or corrupt, ORIGINALS_UNAVAILABLE when the store cannot be read, the spool's own error
 * (its size limit, a full disk) otherwise.
 */
export async function spoolOriginal(
  originals: OriginalsStore,
  key: { tenant: string; sha256: string },
  options: OriginalSpoolOptions,
): Promise<SpooledFile> {
  let readError: unknown
  let stream: Awaited<ReturnType<OriginalsStore['read']>>['stream']
  try {
    ;({ stream } = await originals.read(key))
  } catch (err) {
    throw storeFailure(err)
  }
  // The spooler reports a source failure as a client's malformed body: keep the store's own error.
  stream.on('error', (err) => {
    readError ??= err
  })
  try {
    const spool = await spoolToFile(stream, options)
    // verifyingStream already refused a mismatch; a second look costs nothing and guards the contract.
    if (spool.sha256 === key.sha256) return spool
    await removeSpool(spool)
    throw new OriginalCorruptError(key, spool.sha256)
  } catch (err) {
    stream.destroy()
    throw readError === undefined ? storeFailure(err, false) : storeFailure(readError)
  }
}

function storeFailure(err: unknown, fromStore = true): unknown {
  if (err instanceof OriginalMissingError) return new OriginalLostError('it is not in the originals store')
  if (err instanceof OriginalCorruptError) return new OriginalLostError('the kept bytes do not match its SHA-256')
  return fromStore ? errors.originalsUnavailable(err) : err
}
