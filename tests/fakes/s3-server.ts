/**
 * A real S3-protocol server on loopback for the originals tests: s3rver (the S3 REST API over a
 * directory, multipart uploads and CopyObject included), one bucket, stopped and removed after the
 * test. Not a fake of ours: the AWS SDK talks to it exactly as to S3 with path-style addressing.
 * The tests reach it through a front (s3-part-copy.ts) that adds UploadPartCopy and the 5 MiB part
 * minimum, which s3rver lacks, and notes every request.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import S3rver from 's3rver'
import { type S3Request, startPartCopyFront } from './s3-part-copy.js'

export interface S3Server {
  /** The front (UploadPartCopy, the part minimum, the request log). */
  endpoint: string
  /** s3rver itself, which answers UploadPartCopy 501 Not Implemented (as GCS's XML API does). */
  upstream: string
  bucket: string
  /** Options for the originals store (s3rver accepts any signature made with its fixed keys). */
  options: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string; forcePathStyle: true }
  stop(): Promise<void>
  /** Writes `bytes` at `key` behind the store's back (a test corrupting an object). */
  put(key: string, bytes: Buffer): Promise<void>
  /** The requests the front forwarded or answered so far, in order. */
  requests(): S3Request[]
}

/** s3rver on a free loopback port over `directory`, with `bucket` made (the tests' and the bench's). */
export async function runS3rver(directory: string, bucket: string): Promise<{ server: S3rver; endpoint: string }> {
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket }],
  })
  const { port } = await server.run()
  return { server, endpoint: `http://127.0.0.1:${port}` }
}

export async function startS3Server(
  t: TestContext | { after(fn: () => Promise<void>): void },
  bucket = 'filegate-originals',
): Promise<S3Server> {
  const directory = await mkdtemp(join(tmpdir(), 'fg-s3rver-'))
  const { server, endpoint: upstream } = await runS3rver(directory, bucket)
  const front = await startPartCopyFront(upstream)
  const endpoint = front.endpoint
  let stopped = false
  const stop = async () => {
    if (stopped) return
    stopped = true
    await front.close()
    await server.close()
  }
  const raw = new S3Client({
    endpoint: upstream,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  })
  t.after(async () => {
    raw.destroy()
    await stop()
    await rm(directory, { recursive: true, force: true })
  })
  return {
    endpoint,
    upstream,
    bucket,
    options: { endpoint, region: 'us-east-1', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', forcePathStyle: true },
    stop,
    async put(key, bytes) {
      await raw.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes }))
    },
    requests: front.requests,
  }
}
