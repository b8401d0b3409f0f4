/**
 * tus `Upload-Metadata` (tus 1.0, creation extension): comma-separated pairs of a key and its
 * base64-encoded value, or a key alone. filegate reads `filename` (required), `provider` (default
 * DEFAULT_PROVIDER), `purpose`, `expires_in`, `metadata` (a JSON object) and `sha256` (hex), with the
 * same rules as the fields of POST /v1/files; `filetype` (what tus-js-client and Uppy send) gives
 * the media type. Other keys are ignored: tus clients add their own (Uppy's `name`, `type`,
 * `relativePath`), which refusing would break.
 */
import { sanitizeFilename } from '../../src/domain/filename.js'
import type { FileMeta } from '../../src/domain/files.js'
import { errors } from '../../src/errors.js'
import { parseMeta } from '../intake.js'

const keyPattern = /^[\x21-\x2b\x2d-\x7e]+$/
const base64Pattern = /^[A-Za-z0-9+/]*={0,2}$/
const mimePattern = /^[a-z0-9!#$&^_.+-]{1,64}\/[a-z0-9!#$&^_.+-]{1,128}$/i

export interface TusFields {
  provider: string
  purpose: string | undefined
  meta: FileMeta
  sha256: string | undefined
}

function decodePairs(header: string | undefined): Map<string, string> {
  const pairs = new Map<string, string>()
  for (const pair of (header ?? '').split(',')) {
    if (pair.trim() === '') continue
    const [key = '', value = '', ...rest] = pair.trim().split(' ')
    if (!keyPattern.test(key) || rest.length > 0 || !base64Pattern.test(value) || value.length % 4 === 1) {
      throw errors.validationFailed('Upload-Metadata must be comma-separated "key base64value" pairs')
    }
    if (pairs.has(key)) throw errors.validationFailed(`Upload-Metadata names ${key.slice(0, 64)} twice`)
    pairs.set(key, Buffer.from(value, 'base64').toString('utf8'))
  }
  return pairs
}

export function parseUploadMetadata(header: string | undefined, defaultProvider: string): TusFields {
  const pairs = decodePairs(header)
  const name = pairs.get('filename')
  if (!name) throw errors.validationFailed('Upload-Metadata needs a filename')
  const sha256 = pairs.get('sha256')?.toLowerCase()
  if (sha256 !== undefined && !/^[0-9a-f]{64}$/.test(sha256)) {
    throw errors.validationFailed('Upload-Metadata sha256 must be 64 hex digits')
  }
  const type = pairs.get('filetype') ?? ''
  const meta = parseMeta(
    { metadata: pairs.get('metadata'), expires_in: pairs.get('expires_in') },
    sanitizeFilename(name),
    mimePattern.test(type) ? type.toLowerCase() : 'application/octet-stream',
  )
  return {
    provider: pairs.get('provider') || defaultProvider,
    purpose: pairs.get('purpose') || undefined,
    meta,
    sha256,
  }
}
