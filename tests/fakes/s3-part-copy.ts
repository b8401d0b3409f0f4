/**
 * An HTTP front for s3rver adding the part of the S3 API it lacks and the originals store uses:
 * - UploadPartCopy (`PUT /{bucket}/{key}?partNumber=&uploadId=` with `x-amz-copy-source`, optionally
 *   `x-amz-copy-source-range` and `x-amz-copy-source-if-match`), answered with `CopyPartResult`; a
 *   source whose ETag is not the one named is 412 PreconditionFailed, one that is missing 404 NoSuchKey
 *   (https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html). The bucket does the
 *   copy: the bytes go from s3rver to s3rver, not through the caller.
 * - CopyObject's `x-amz-copy-source-if-match` (412 PreconditionFailed when the source's ETag is not
 *   the one named: https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html), which s3rver
 *   ignores.
 * - CompleteMultipartUpload's rule that every part but the last is at least 5 MiB, else 400
 *   EntityTooSmall (https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html,
 *   https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html), which s3rver does not check.
 * Every other request is forwarded as it came (its signature names this front's host, which s3rver
 * checks as received). Each request is noted (method, key, query, body bytes), so that a test can
 * ask what reached the bucket.
 */
import { createServer, type IncomingMessage, request, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { GetObjectCommand, HeadObjectCommand, S3Client, UploadPartCommand } from '@aws-sdk/client-s3'

export interface S3Request {
  method: string
  /** The object key, without the bucket. */
  key: string
  query: URLSearchParams
  /** The request body's length (Content-Length), 0 without one. */
  bytes: number
  /** `x-amz-copy-source` (a CopyObject or an UploadPartCopy: no body of its own). */
  copySource: string | undefined
}

const minPartBytes = 5 * 1024 * 1024

const xmlError = (res: ServerResponse, status: number, code: string, message: string) => {
  res.writeHead(status, { 'content-type': 'application/xml' })
  res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`)
}

const unquoted = (etag: string | undefined) => etag?.replaceAll('"', '')

async function bodyOf(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/** The front on a free loopback port before s3rver at `upstream`; closed by `close()`. */
export async function startPartCopyFront(upstream: string) {
  const target = new URL(upstream)
  const s3 = new S3Client({
    endpoint: upstream,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })
  const requests: S3Request[] = []
  /** The size of each part the bucket took, by `<uploadId>:<partNumber>`. */
  const partSizes = new Map<string, number>()
  const sockets = new Set<Socket>()

  const forward = (req: IncomingMessage, res: ServerResponse, body?: Buffer, onAnswer?: (status: number) => void) => {
    const { expect: _expect, ...headers } = req.headers
    const out = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers },
      (answer) => {
        onAnswer?.(answer.statusCode ?? 0)
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      },
    )
    out.on('error', () => res.destroy())
    req.on('close', () => {
      if (!req.complete) out.destroy()
    })
    if (body) out.end(body)
    else req.pipe(out)
  }

  /** Whether the copy source of `req` has the ETag its If-Match names (true without one). */
  async function sourceMatches(req: IncomingMessage): Promise<boolean> {
    const ifMatch = req.headers['x-amz-copy-source-if-match'] as string | undefined
    if (ifMatch === undefined) return true
    const source = decodeURIComponent(String(req.headers['x-amz-copy-source'])).replace(/^\//, '')
    const [bucket = '', ...rest] = source.split('/')
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: rest.join('/') }))
    return unquoted(ifMatch) === unquoted(head.ETag)
  }

  async function copyObject(req: IncomingMessage, res: ServerResponse) {
    if (!(await sourceMatches(req))) {
      await bodyOf(req)
      return xmlError(res, 412, 'PreconditionFailed', 'At least one of the preconditions you specified did not hold')
    }
    forward(req, res)
  }

  async function uploadPartCopy(req: IncomingMessage, res: ServerResponse, bucket: string, key: string) {
    const url = new URL(req.url ?? '/', 'http://front')
    const UploadId = url.searchParams.get('uploadId') as string
    const PartNumber = Number(url.searchParams.get('partNumber'))
    const source = decodeURIComponent(String(req.headers['x-amz-copy-source'])).replace(/^\//, '')
    const [sourceBucket = '', ...rest] = source.split('/')
    const sourceKey = rest.join('/')
    const range = req.headers['x-amz-copy-source-range'] as string | undefined
    await bodyOf(req)
    try {
      if (!(await sourceMatches(req))) {
        return xmlError(res, 412, 'PreconditionFailed', 'At least one of the preconditions you specified did not hold')
      }
      const got = await s3.send(
        new GetObjectCommand({ Bucket: sourceBucket, Key: sourceKey, ...(range ? { Range: range } : {}) }),
      )
      const bytes = Buffer.from((await got.Body?.transformToByteArray()) ?? [])
      const part = await s3.send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: key,
          UploadId,
          PartNumber,
          Body: bytes,
          ContentLength: bytes.length,
        }),
      )
      partSizes.set(`${UploadId}:${PartNumber}`, bytes.length)
      res.writeHead(200, { 'content-type': 'application/xml' })
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?><CopyPartResult><LastModified>${new Date().toISOString()}</LastModified>` +
          `<ETag>${part.ETag}</ETag></CopyPartResult>`,
      )
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode ?? 500
      xmlError(res, status, status === 404 ? 'NoSuchKey' : 'InternalError', (err as Error).message)
    }
  }

  async function completeMultipartUpload(req: IncomingMessage, res: ServerResponse, uploadId: string) {
    const body = await bodyOf(req)
    const numbers = [...body.toString('utf8').matchAll(/<PartNumber>(\d+)<\/PartNumber>/g)].map((m) => Number(m[1]))
    const last = Math.max(...numbers)
    const small = numbers.find((n) => n !== last && (partSizes.get(`${uploadId}:${n}`) ?? minPartBytes) < minPartBytes)
    if (small !== undefined) {
      return xmlError(res, 400, 'EntityTooSmall', `Part ${small} is smaller than the minimum allowed size`)
    }
    forward(req, res, body)
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://front')
    const [, bucket = '', ...rest] = decodeURIComponent(url.pathname).split('/')
    const key = rest.join('/')
    const copySource = req.headers['x-amz-copy-source'] as string | undefined
    requests.push({
      method: req.method ?? 'GET',
      key,
      query: url.searchParams,
      bytes: Number(req.headers['content-length'] ?? 0),
      copySource,
    })
    const uploadId = url.searchParams.get('uploadId')
    const partNumber = url.searchParams.get('partNumber')
    const fail = (err: unknown) => xmlError(res, 500, 'InternalError', (err as Error).message)
    if (req.method === 'PUT' && uploadId && partNumber && copySource) {
      uploadPartCopy(req, res, bucket, key).catch(fail)
    } else if (req.method === 'PUT' && copySource) {
      copyObject(req, res).catch(fail)
    } else if (req.method === 'POST' && uploadId) {
      completeMultipartUpload(req, res, uploadId).catch(fail)
    } else if (req.method === 'PUT' && uploadId && partNumber) {
      const bytes = Number(req.headers['content-length'] ?? 0)
      forward(req, res, undefined, (status) => {
        if (status === 200) partSizes.set(`${uploadId}:${partNumber}`, bytes)
      })
    } else {
      forward(req, res)
    }
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    /** Every request so far, in the order they arrived. */
    requests: () => [...requests],
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      s3.destroy()
    },
  }
}
