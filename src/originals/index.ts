/** Picks the originals store from `ORIGINALS_URL`: `file:///absolute/path` or `s3://bucket/prefix`. */
import { fileURLToPath } from 'node:url'
import type { S3Connection } from './s3-store.js'
import type { OriginalsStore } from './store.js'

export type { OriginalKey, OriginalsStore, StagedOriginal } from './store.js'
export { OriginalCorruptError, OriginalMissingError } from './store.js'

export interface OriginalsOptions {
  url: string
  s3: S3Connection
  /** A fresh path for a temp file (an S3 part on its way); unset = S3 parts are held in memory. */
  partFile?: (() => Promise<string>) | undefined
}

export type OriginalsLocation = { kind: 'file'; root: string } | { kind: 's3'; bucket: string; prefix: string }

/** Parses `ORIGINALS_URL`; throws a message fit for the start-up error list. */
export function parseOriginalsUrl(url: string): OriginalsLocation {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new Error('must be file:///absolute/path or s3://bucket/prefix')
  }
  if (parsed.protocol === 'file:') {
    if (parsed.host) throw new Error('file: URLs take no host (file:///absolute/path)')
    const root = fileURLToPath(parsed)
    if (root === '/') throw new Error('file:/// would store originals at the filesystem root')
    return { kind: 'file', root }
  }
  if (parsed.protocol === 's3:') {
    // Bucket naming rules: https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(parsed.hostname)) throw new Error('s3:// needs a valid bucket name')
    const prefix = decodeURIComponent(parsed.pathname).replace(/^\/+|\/+$/g, '')
    if (prefix.split('/').some((segment) => segment === '..' || segment === '.'))
      throw new Error('the s3:// prefix may not contain . or .. segments')
    return { kind: 's3', bucket: parsed.hostname, prefix }
  }
  throw new Error('must be file:///absolute/path or s3://bucket/prefix')
}

export async function createOriginalsStore(options: OriginalsOptions): Promise<OriginalsStore> {
  const location = parseOriginalsUrl(options.url)
  if (location.kind === 'file') {
    const { createFileOriginalsStore } = await import('./file-store.js')
    return createFileOriginalsStore(location.root)
  }
  // The AWS SDK is loaded only when an s3:// store is configured.
  const { createS3OriginalsStore } = await import('./s3-store.js')
  return createS3OriginalsStore({
    ...options.s3,
    bucket: location.bucket,
    prefix: location.prefix,
    partFile: options.partFile,
  })
}
