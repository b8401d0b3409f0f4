/**
 * Originals in an S3-compatible bucket (`ORIGINALS_URL=s3://bucket/prefix`): AWS S3, MinIO,
 * Cloudflare R2, Supabase Storage's S3 endpoint. Objects are `<prefix>/<tenant>/<sha256>`; a body is
 * streamed to `<prefix>/.staging/<uuid>` with a multipart upload (@aws-sdk/lib-storage: parts of
 * 5 MiB, S3's minimum, one in flight, so an upload holds about two parts whatever its size), and on commit copied server-side
 * to its content address (CopyObject: the bytes do not come back through filegate).
 *
 * S3 API reference: https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html,
 * https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html
 */
import { randomUUID } from 'node:crypto'
import { Readable } from 'node:stream'
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import {
  checkKey,
  checkTenant,
  isContentKey,
  type OriginalKey,
  OriginalMissingError,
  type OriginalsStore,
  type StagedOriginal,
  type StagingObject,
  type StoredObject,
} from './store.js'
import { StagingHash, verifyingStream } from './verify.js'

export interface S3Options {
  bucket: string
  /** Key prefix, without leading or trailing slash; may be empty. */
  prefix: string
  endpoint?: string | undefined
  region: string
  accessKeyId?: string | undefined
  secretAccessKey?: string | undefined
  forcePathStyle: boolean
}

// Memory per staged upload is about (queueSize + 1) parts: 8 concurrent 100 MB uploads must stay
// within the service's 200 MB budget. 5 MiB is S3's smallest part (all but the last):
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html
const partBytes = 5 * 1024 * 1024
const stagingIdPattern = /^[0-9a-f-]{36}$/

const isNotFound = (err: unknown) => {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } }
  return e.$metadata?.httpStatusCode === 404 || e.name === 'NotFound' || e.name === 'NoSuchKey'
}

export function createS3OriginalsStore(options: S3Options): OriginalsStore {
  const client = new S3Client({
    region: options.region,
    forcePathStyle: options.forcePathStyle,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    // Without explicit keys the SDK's default chain applies (IAM role, web identity, profile).
    ...(options.accessKeyId && options.secretAccessKey
      ? { credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey } }
      : {}),
  })
  const Bucket = options.bucket
  const base = options.prefix ? `${options.prefix}/` : ''
  const stagingBase = `${base}.staging/`
  const objectKey = (key: OriginalKey) => `${base}${checkKey(key).tenant}/${key.sha256}`

  async function head(Key: string): Promise<number | null> {
    try {
      const out = await client.send(new HeadObjectCommand({ Bucket, Key }))
      return out.ContentLength ?? 0
    } catch (err) {
      if (isNotFound(err)) return null
      throw err
    }
  }

  /** Whether `Key` holds `bytes` bytes, asking a few times while a concurrent write settles. */
  async function settlesAs(Key: string, bytes: number): Promise<boolean> {
    for (let attempt = 0; attempt < 5; attempt++) {
      if ((await head(Key).catch(() => null)) === bytes) return true
      await new Promise((r) => setTimeout(r, 50 * 2 ** attempt))
    }
    return false
  }

  async function* listKeys(Prefix: string) {
    let ContinuationToken: string | undefined
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket, Prefix, ContinuationToken }))
      for (const item of page.Contents ?? []) {
        if (item.Key)
          yield {
            key: item.Key.slice(Prefix.length),
            bytes: item.Size ?? 0,
            modifiedAt: item.LastModified ?? new Date(0),
          }
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (ContinuationToken)
  }

  async function stage(tenant: string, body: Readable | AsyncIterable<Uint8Array>): Promise<StagedOriginal> {
    checkTenant(tenant)
    const Key = `${stagingBase}${randomUUID()}`
    const hash = new StagingHash()
    const upload = new Upload({
      client,
      params: { Bucket, Key, Body: Readable.from(hash.pass(body)) },
      partSize: partBytes,
      queueSize: 1,
      leavePartsOnError: false,
    })
    await upload.done()
    const sha256 = hash.digest()
    const discard = async () => {
      await client.send(new DeleteObjectCommand({ Bucket, Key }))
    }
    return {
      bytes: hash.bytes,
      sha256,
      discard,
      async commit(expectedSha256) {
        try {
          if (expectedSha256 !== sha256)
            throw new Error(`staged original hashes to ${sha256}, expected ${expectedSha256}`)
          const target = objectKey({ tenant, sha256 })
          try {
            if ((await head(target)) !== null) return 'existing'
            await client.send(new CopyObjectCommand({ Bucket, Key: target, CopySource: `${Bucket}/${encodeURI(Key)}` }))
            return 'created'
          } catch (err) {
            // Content-addressed: a writer racing this one puts identical bytes under the same key, and
            // some stores refuse a read or the second write while the first is under way. The content
            // is there either way once that write has settled.
            if (await settlesAs(target, hash.bytes)) return 'existing'
            throw err
          }
        } finally {
          // A staging object left behind is removed by the originals job after its grace.
          await discard().catch(() => {})
        }
      },
    }
  }

  return {
    kind: 's3',
    stage,
    stat: async (key) => head(objectKey(key)),
    async read(key) {
      try {
        const out = await client.send(new GetObjectCommand({ Bucket, Key: objectKey(key) }))
        const body = out.Body as Readable | undefined
        if (!body) throw new OriginalMissingError(key)
        return { bytes: out.ContentLength ?? 0, stream: verifyingStream(key, body) }
      } catch (err) {
        if (isNotFound(err)) throw new OriginalMissingError(key)
        throw err
      }
    },
    async remove(key) {
      await client.send(new DeleteObjectCommand({ Bucket, Key: objectKey(key) }))
    },
    async *list(): AsyncIterable<StoredObject> {
      for await (const item of listKeys(base)) {
        const [tenant, sha256, ...rest] = item.key.split('/')
        if (rest.length || !tenant || !sha256 || !isContentKey(tenant, sha256)) continue
        yield { tenant, sha256, bytes: item.bytes, modifiedAt: item.modifiedAt }
      }
    },
    async *listStaging(): AsyncIterable<StagingObject> {
      for await (const item of listKeys(stagingBase)) {
        if (stagingIdPattern.test(item.key)) yield { id: item.key, bytes: item.bytes, modifiedAt: item.modifiedAt }
      }
    },
    async removeStaging(id) {
      if (!stagingIdPattern.test(id)) throw new TypeError('invalid staging id')
      await client.send(new DeleteObjectCommand({ Bucket, Key: `${stagingBase}${id}` }))
    },
    async ping() {
      await client.send(new HeadBucketCommand({ Bucket }))
    },
    async close() {
      client.destroy()
    },
  }
}
