/**
 * "The store alone": the bench runner writes a file straight to an S3 server through
 * @aws-sdk/client-s3 in the steps filegate's S3 originals store takes (src/originals/s3-store.ts),
 * with no filegate in between: a multipart upload of 5 MiB parts to a staging key, one part sent
 * while the next is read, HeadObject of the content-addressed key, CopyObject to it, DeleteObject of
 * the staging key. What the store itself can take on this machine: the bound under any S3 figure.
 * In place (the path of a body streamed through with its hash declared): the multipart upload goes
 * straight to the content-addressed key, HeadObject first, and no copy follows.
 *
 * API: https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPart.html,
 * https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html
 */
import { randomUUID } from 'node:crypto'
import { type FileHandle, open } from 'node:fs/promises'
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3'
import type { LargeTarget } from './large-upload.js'

// S3's smallest part (all but the last), the size filegate's store sends:
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html
const partBytes = 5 * 1024 * 1024

export interface S3Endpoint {
  endpoint: string
  bucket: string
  /** Key prefix without slashes: staging keys go under `<prefix>/.staging/`, objects under `<prefix>/<tenant>/`. */
  prefix: string
  accessKeyId: string
  secretAccessKey: string
}

/** Reads up to `buffer.length` bytes at `position`; fewer only at the end of the file. */
async function readPart(file: FileHandle, buffer: Buffer, position: number): Promise<number> {
  let filled = 0
  while (filled < buffer.length) {
    const { bytesRead } = await file.read(buffer, filled, buffer.length - filled, position + filled)
    if (bytesRead === 0) break
    filled += bytesRead
  }
  return filled
}

/** The S3 client as filegate's store configures it (path-style, checksums only where the API requires them). */
function storeClient(s3: S3Endpoint): S3Client {
  return new S3Client({
    region: 'us-east-1',
    endpoint: s3.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })
}

/**
 * Sends `path` to `Key` as a multipart upload through two part buffers that take turns: the next
 * part is read from disk while the previous one is on the wire. Aborted on any failure.
 */
async function multipartFromFile(client: S3Client, Bucket: string, Key: string, path: string): Promise<void> {
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket, Key }))
  const buffers = [Buffer.allocUnsafe(partBytes), Buffer.allocUnsafe(partBytes)]
  const parts: CompletedPart[] = []
  let inFlight: Promise<unknown> | undefined
  const file = await open(path, 'r')
  try {
    for (let PartNumber = 1; ; PartNumber++) {
      // This buffer's previous part (two back) was awaited before the last one was sent.
      const buffer = buffers[PartNumber % 2] as Buffer
      const filled = await readPart(file, buffer, (PartNumber - 1) * partBytes)
      await inFlight
      if (filled === 0) break
      const Body = buffer.subarray(0, filled)
      inFlight = client
        .send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber, Body, ContentLength: filled }))
        .then((out) => parts.push({ PartNumber, ETag: out.ETag }))
      inFlight.catch(() => {}) // awaited on the next turn or below; this only keeps it from being unhandled
      if (filled < partBytes) break
    }
    await inFlight
    await client.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: parts } }))
  } catch (err) {
    await inFlight?.catch(() => {})
    await client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId })).catch(() => {})
    throw err
  } finally {
    await file.close()
  }
}

/**
 * The store alone as a large-upload target: each send stages the file, copies it to its content
 * address and deletes the staging object, timed from the first request to the last answer. Its CPU
 * is the bench runner's own (the SDK client runs here). `close()` releases the client's sockets.
 */
export function storeAloneTarget(s3: S3Endpoint, inPlace = false): LargeTarget & { close(): void } {
  const client = storeClient(s3)
  const Bucket = s3.bucket
  const refuseExisting = async (target: string) => {
    const exists = await client.send(new HeadObjectCommand({ Bucket, Key: target })).then(
      () => true,
      (err: { $metadata?: { httpStatusCode?: number } }) => {
        if (err.$metadata?.httpStatusCode === 404) return false
        throw err
      },
    )
    if (exists) throw new Error(`store alone: ${target} exists already; every run must send new content`)
  }
  return {
    name: inPlace ? 'store alone in place' : 'store alone',
    pids: [process.pid],
    async send(file, sha256) {
      const started = process.hrtime.bigint()
      const target = `${s3.prefix}/store-alone/${sha256}`
      if (inPlace) {
        await refuseExisting(target)
        await multipartFromFile(client, Bucket, target, file)
        return Number(process.hrtime.bigint() - started) / 1e9
      }
      const staging = `${s3.prefix}/.staging/${randomUUID()}`
      await multipartFromFile(client, Bucket, staging, file)
      await refuseExisting(target)
      await client.send(new CopyObjectCommand({ Bucket, Key: target, CopySource: `${Bucket}/${encodeURI(staging)}` }))
      await client.send(new DeleteObjectCommand({ Bucket, Key: staging }))
      return Number(process.hrtime.bigint() - started) / 1e9
    },
    close: () => client.destroy(),
  }
}
