/**
 * Originals in an S3-compatible bucket (`ORIGINALS_URL=s3://bucket/prefix`): AWS S3, MinIO,
 * Cloudflare R2, Supabase Storage's S3 endpoint. Objects are `<prefix>/<tenant>/<sha256>`; a body is
 * streamed to `<prefix>/.staging/<uuid>` (one PutObject, or a multipart upload of 5 MiB parts, S3's
 * minimum, those after the first sent as they fill, each kept in a local file until the bucket has
 * it: see putStreamed), and on commit copied server-side to its content address (CopyObject: the
 * bytes do not come back through filegate). A multipart body whose hash was declared before it goes
 * straight to its content address instead, completed only by the commit (stagedInPlace). A finished
 * resumable upload's original is assembled from its segments by the bucket itself (UploadPartCopy:
 * see assemble), its bytes not sent again.
 *
 * S3 API reference: https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html,
 * https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html,
 * https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html
 */
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { open, rm } from 'node:fs/promises'
import { PassThrough, Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3'
import { fileBatchBytes, returnBatch, takeBatch, writeAll } from '../file-batches.js'
import { checkSegmentKey, checkSegmentPrefix } from '../staging/segments.js'
import {
  checkKey,
  checkTenant,
  isContentKey,
  type OriginalKey,
  OriginalMissingError,
  type OriginalsStore,
  type SegmentSource,
  type StagedOriginal,
  type StagingObject,
  type StoredObject,
  stagedContentError,
} from './store.js'
import { StagingCount, verifyingStream } from './verify.js'

/** Where and how to reach the S3-compatible service (S3_ENDPOINT, S3_REGION, S3_*_KEY…, S3_FORCE_PATH_STYLE). */
export interface S3Connection {
  endpoint?: string | undefined
  region: string
  accessKeyId?: string | undefined
  secretAccessKey?: string | undefined
  forcePathStyle: boolean
  /**
   * How long a request's connection may stay silent (no byte either way), or a connect take, before
   * the store counts as hung and the request fails; 0 = no bound.
   */
  idleTimeoutMs?: number | undefined
}

export interface S3Options extends S3Connection {
  bucket: string
  /** Key prefix, without leading or trailing slash; may be empty. */
  prefix: string
  /** A path for a part file (in a private directory, unique, not existing yet); unset = parts in memory. */
  partFile?: (() => Promise<string>) | undefined
}

// Two part reserves per staged upload (the part filling, the part before it until the bucket has
// it): in files, a few chunks of memory; in memory (no part directory) 10 MiB. 5 MiB is S3's smallest
// part (all but the last): https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html
const partBytes = 5 * 1024 * 1024
/** What a part's streamed request body holds before the upload's body waits for it (a chunk or two). */
const streamedBodyBytes = 64 * 1024
const stagingIdPattern = /^[0-9a-f-]{36}$/
const partAttempts = 3
const partRetryDelayMs = 100
/** S3's largest part and most parts (qfacts above): a larger segment is copied in ranges. */
const maxPartBytes = 5 * 1024 ** 3
const maxParts = 10_000
/** Part copies under way at once for one assembly (each is the bucket's work, not filegate's). */
const partCopyConcurrency = 4

/**
 * A dropped connection, a 5xx, or S3's SlowDown: worth sending the part again. Not a store that
 * stayed silent past the idle bound (the SDK's TimeoutError): it is hung, and another attempt would
 * make the upload wait that long again before its answer.
 */
const isTransient = (err: unknown) => {
  const e = err as { code?: string; name?: string; $metadata?: { httpStatusCode?: number } }
  const status = e.$metadata?.httpStatusCode
  if (status !== undefined) return status >= 500 || status === 429
  return ['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'RequestTimeout'].includes(e.code ?? e.name ?? '')
}

const silentLogger = { debug() {}, info() {}, warn() {}, error() {} }

const isNotFound = (err: unknown) => {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } }
  return e.$metadata?.httpStatusCode === 404 || e.name === 'NotFound' || e.name === 'NoSuchKey'
}

/**
 * A part's reserve, its bytes kept until the bucket has the part: filled by `write`, sent (again) as
 * `body()`, then emptied by `reset` for a later part.
 */
interface Part {
  readonly filled: number
  write(chunk: Uint8Array): Promise<void>
  /**
   * The whole reserve as a request body (once every write to it has landed). A stream body's file
   * is open before it is returned (no lazy open that a removal could fail later); its failure is
   * reported to `onError`, and the caller destroys it (closing the file) once its request settled.
   */
  body(onError: (err: Error) => void): Promise<{ Body: Buffer | Readable; ContentLength: number }>
  /** Empties the reserve for the next part (once every write to it has landed). */
  reset(): Promise<void>
  close(): Promise<void>
}

/** An object to copy from (`bucket/key`, URL-encoded) at the version that was read (its ETag). */
interface CopySource {
  CopySource: string
  CopySourceIfMatch: string
}

/** A multipart upload with all its parts in the bucket, not completed yet: no object exists until `complete`. */
interface DeferredUpload {
  complete(): Promise<void>
  abort(): Promise<void>
}

/** A part's `UploadPart` request whose body is written as the part fills (see streamPart). */
interface StreamedPart {
  /** The part as the bucket took it; undefined when it is to be sent again from its reserve. */
  readonly result: Promise<CompletedPart | undefined>
  write(chunk: Uint8Array): Promise<void>
  /** The part is full: the request body ends. */
  end(): void
  /** Stops the request unless it has ended already, and waits until it has. */
  cancel(): Promise<void>
}

function memoryPart(): Part {
  const buffer = Buffer.allocUnsafe(partBytes)
  let filled = 0
  return {
    get filled() {
      return filled
    },
    async write(chunk) {
      buffer.set(chunk, filled)
      filled += chunk.byteLength
    },
    async body() {
      return { Body: buffer.subarray(0, filled), ContentLength: filled }
    },
    async reset() {
      filled = 0
    },
    async close() {},
  }
}

/**
 * A part in a 0600 file at `path`, removed on close. Pieces are copied into one of two batch buffers
 * and written from there, a batch while the other fills (src/file-batches.ts says why): the file
 * takes one write per 256 KiB, and the body's own chunk never waits on the thread pool.
 */
async function filePart(path: string): Promise<Part> {
  const file = await open(path, 'wx+', 0o600)
  let filled = 0
  let [batch, spare] = [takeBatch(), takeBatch()]
  let batchBytes = 0
  /** The spare batch's write, if one is under way (it holds the spare until it lands). */
  let writing: Promise<void> | undefined
  /** The last `write` call: a caller that failed elsewhere may close the part while it is under way. */
  let lastWrite: Promise<void> = Promise.resolve()
  /** Starts writing the filling batch and takes the spare to fill (once the spare's own write landed). */
  const flush = async () => {
    await writing
    const started = writeAll(file, [batch.subarray(0, batchBytes)], batchBytes, filled - batchBytes)
    started.catch(() => {}) // awaited by the next flush or `landed`; this only keeps it from being unhandled
    writing = started
    ;[batch, spare] = [spare, batch]
    batchBytes = 0
  }
  /** Every byte written so far is in the file. */
  const landed = async () => {
    if (batchBytes > 0) await flush()
    await writing
    writing = undefined
  }
  return {
    get filled() {
      return filled
    },
    write(chunk) {
      lastWrite = (async () => {
        for (let offset = 0; offset < chunk.byteLength; ) {
          const n = Math.min(chunk.byteLength - offset, fileBatchBytes - batchBytes)
          batch.set(chunk.subarray(offset, offset + n), batchBytes)
          batchBytes += n
          filled += n
          offset += n
          if (batchBytes === fileBatchBytes) await flush()
        }
      })()
      return lastWrite
    },
    async body(onError) {
      await landed()
      if (filled === 0) return { Body: Buffer.alloc(0), ContentLength: 0 }
      // Its own handle, opened here (a failure is this call's): destroying the stream closes it,
      // and the part's handle stays the writer's.
      const Body = (await open(path, 'r')).createReadStream({ start: 0, end: filled - 1 })
      Body.on('error', onError)
      return { Body, ContentLength: filled }
    },
    async reset() {
      // The part the bucket has: what is still in the batch need not reach the file, nor a write that failed.
      await writing?.catch(() => {})
      writing = undefined
      batchBytes = 0
      filled = 0
    },
    async close() {
      await lastWrite.catch(() => {})
      await writing?.catch(() => {})
      await file.close().catch(() => {})
      // No write uses the buffers any more: they can serve the next file.
      returnBatch(batch)
      returnBatch(spare)
      await rm(path, { force: true })
    },
  }
}

export function createS3OriginalsStore(options: S3Options): OriginalsStore {
  const clientWith = (idleTimeoutMs: number | undefined) =>
    new S3Client({
      region: options.region,
      forcePathStyle: options.forcePathStyle,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      // Without explicit keys the SDK's default chain applies (IAM role, web identity, profile).
      ...(options.accessKeyId && options.secretAccessKey
        ? { credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey } }
        : {}),
      // The SDK's default (WHEN_SUPPORTED) sends a streamed body as aws-chunked with a trailing CRC32,
      // which not every S3-compatible store decodes (it would store the framing). Integrity does not
      // rest on it: each object's SHA-256 is checked on commit and on every read (verify.ts).
      // https://docs.aws.amazon.com/sdkref/latest/guide/feature-dataintegrity.html
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // Without a logger the SDK still writes one line to the console for every failed request whose
      // body is a stream. Here those failures are expected (a short last part's request is stopped) or
      // handled (the part is sent again from its reserve), and a final one reaches the caller.
      logger: silentLogger,
      // The SDK's default sends `Expect: 100-continue` with every body of 2 MiB or more, and
      // @smithy/node-http-handler then gives each such request a fresh connection and holds the body
      // until the server's 100 Continue: a connect and a round trip at the start of every streamed
      // part, while the upload's body waits. Without it parts go on the client's keep-alive
      // connections at once. A store that refuses the request (credentials, bucket) has refused
      // CreateMultipartUpload before any part is sent; a part refused mid-body is sent again from its
      // reserve and its error reaches the caller.
      expectContinueHeader: false,
      ...(idleTimeoutMs ? { requestHandler: { socketTimeout: idleTimeoutMs, connectionTimeout: idleTimeoutMs } } : {}),
    })
  // A store that accepts a connection and then answers nothing (a hung server, a network that drops
  // packets) fails a request after idleTimeoutMs of silence, so the upload is answered 503
  // ORIGINALS_UNAVAILABLE within its own deadline instead of waiting until the client gives up, and
  // the connection is freed. A request given up on may still reach the store later, so the bound is
  // only for requests whose late effect is harmless: reads, and writes to staging keys and to
  // multipart uploads not yet completed. The requests that put or remove a content object (the
  // commit's copy or completion, an original's delete) go on `unbounded`, which waits for the
  // store's answer: given up on, one could land after the request that followed it (an object a
  // failed upload committed late, never known to any row; a delete that removes the object a new
  // upload of the same content just wrote). So does a part streamed as the upload's body arrives,
  // whose silences are the client's or the provider's pace, not the store's: it bounds only its
  // own waits on the store (streamPart).
  const idleTimeoutMs = options.idleTimeoutMs
  const client = clientWith(idleTimeoutMs)
  const unbounded = idleTimeoutMs ? clientWith(undefined) : client
  const Bucket = options.bucket
  const base = options.prefix ? `${options.prefix}/` : ''
  const stagingBase = `${base}.staging/`
  const segmentsBase = `${base}.resumable/`
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

  /**
   * A part's reserve as a request body, owned by the request that sends it. The SDK pipes a stream
   * body without listening for its errors and leaves it as it is when the request fails before
   * reading it: a failed read stops the request here (`abortSignal`), and `release` destroys the
   * stream once the request settled, however it did.
   */
  async function reserveBody(part: Part) {
    const stop = new AbortController()
    const body = await part.body((err) => stop.abort(err))
    const release = () => {
      if (body.Body instanceof Readable) body.Body.destroy()
    }
    return { body, abortSignal: stop.signal, release }
  }

  /**
   * A request whose body is a part's reserve, sent again from the reserve (a fresh stream each
   * attempt) when it fails on the way: a body that is a stream is one the SDK will not retry itself,
   * so a dropped connection (a kept-alive one the store closed as it was reused, a reset mid-body) or
   * a 5xx/SlowDown is retried here, a few times with backoff.
   */
  async function sendFromReserve<T>(
    part: Part,
    send: (reserve: Awaited<ReturnType<typeof reserveBody>>) => Promise<T>,
  ) {
    for (let attempt = 1; ; attempt++) {
      const reserve = await reserveBody(part)
      try {
        return await send(reserve)
      } catch (err) {
        if (attempt >= partAttempts || !isTransient(err)) throw err
      } finally {
        reserve.release()
      }
      await sleep(partRetryDelayMs * 2 ** (attempt - 1))
    }
  }

  /** One part sent from its reserve. API: https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPart.html */
  async function sendPart(Key: string, UploadId: string, PartNumber: number, part: Part): Promise<CompletedPart> {
    return sendFromReserve(part, async (reserve) => {
      const out = await client.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber, ...reserve.body }), {
        abortSignal: reserve.abortSignal,
      })
      return { PartNumber, ETag: out.ETag }
    })
  }

  /**
   * A part's `UploadPart`, opened as the part begins, its body written with the chunks the upload's
   * body delivers. It promises a whole part (`Content-Length` of 5 MiB), so it completes once the part
   * is full; a short last part's request is cancelled. `write` waits while the request body holds
   * `streamedBodyBytes`, until it drains or the request ends: a dead request never holds the upload's
   * body. A failure worth a resend (isTransient) leaves `result` undefined (so does a cancel): the part
   * is then sent again from its reserve; any other failure is thrown by the next `write`.
   *
   * The SDK adds `Expect: 100-continue` to a body of 2 MiB or more; @smithy/node-http-handler then
   * opens a fresh connection and pipes the body only after the server's 100 Continue, or never when
   * the server answers (or the connection fails) first, which the race against the request's end
   * covers. A failed request is stopped (its socket destroyed) and its body discarded. The SDK never
   * retries a stream body (it cannot be read twice): sendPart's retries do.
   */
  function streamPart(Key: string, UploadId: string, PartNumber: number): StreamedPart {
    const Body = new PassThrough({ highWaterMark: streamedBodyBytes })
    const stop = new AbortController()
    let open = true
    let cancelled = false
    let failure: { error: unknown } | undefined
    /** Stops the request if the store stays silent idleTimeoutMs from now; returns how to call that off. */
    const boundStoreWait = () => {
      if (!idleTimeoutMs) return () => {}
      const timer = setTimeout(() => {
        const error = Object.assign(new Error(`the store took nothing and answered nothing for ${idleTimeoutMs} ms`), {
          name: 'TimeoutError',
        })
        failure ??= { error }
        stop.abort(error)
      }, idleTimeoutMs)
      return () => clearTimeout(timer)
    }
    const sent = unbounded.send(
      new UploadPartCommand({ Bucket, Key, UploadId, PartNumber, Body, ContentLength: partBytes }),
      { abortSignal: stop.signal },
    )
    const settled = sent.then(
      () => {
        open = false
      },
      (error: unknown) => {
        open = false
        failure = { error }
        stop.abort()
        Body.destroy()
      },
    )
    const result = sent.then(
      (out): CompletedPart => ({ PartNumber, ETag: out.ETag }),
      (error: unknown) => {
        if (cancelled || isTransient(error)) return undefined
        throw error
      },
    )
    result.catch(() => {}) // awaited once the part is whole; this only keeps it from being unhandled
    return {
      result,
      async write(chunk) {
        if (open && !Body.write(chunk)) {
          // Waiting for the store to take what it was given: its silence, not the body's pace.
          const calledOff = boundStoreWait()
          try {
            await Promise.race([once(Body, 'drain'), settled])
          } finally {
            calledOff()
          }
        }
        if (failure && !isTransient(failure.error)) throw failure.error
      },
      end() {
        if (open) {
          Body.end()
          // The whole part is given: from now on only the store's answer is awaited.
          void settled.finally(boundStoreWait())
        }
      },
      async cancel() {
        if (open) {
          cancelled = true
          stop.abort()
          Body.destroy()
        }
        await settled
      },
    }
  }

  /**
   * Streams `body` to `Key`. A body within one part (5 MiB) is a single PutObject from its reserve: the
   * multipart upload is created only once a byte beyond the first part arrives, and part 1 is then
   * sent from its reserve. Every later part is sent as it fills, from the chunks the body delivers
   * (streamPart), and kept in its reserve until the bucket has it: a part whose request failed in a way
   * worth a resend is sent again from there (sendPart), and so is a short last part, whose request
   * promised a whole part and is cancelled. A part begins with its first byte, so a body of whole parts
   * leaves no empty part. At most two parts are in flight, the part filling and the one before it until
   * the bucket has answered, and the two reserves take turns. The reserves are local files when
   * `partFile` is given (an upload then holds a few chunks of memory whatever its size: S3 parts are at
   * least 5 MiB, and eight concurrent uploads' parts in memory would break the service's memory
   * budget), else buffers. On any failure the multipart upload is aborted.
   *
   * With a `multipartKey` other than `Key`, a body longer than one part goes to `multipartKey` and its
   * upload is left uncompleted: the caller completes it (the object appears, whole, only then) or
   * aborts it. A body within one part is still one PutObject to `Key`.
   */
  async function putStreamed(
    Key: string,
    body: AsyncIterable<Uint8Array>,
    multipartKey = Key,
  ): Promise<DeferredUpload | undefined> {
    const makePart = async () => (options.partFile ? filePart(await options.partFile()) : memoryPart())
    let filling = await makePart()
    let sending = await makePart().catch(async (err) => {
      await filling.close()
      throw err
    })
    let uploadId: string | undefined
    let partNumber = 1
    /** The filling part's own request (parts 2 on). */
    let streaming: StreamedPart | undefined
    /** The part before the filling one, until the bucket has it. */
    let inFlight: Promise<unknown> | undefined
    const parts: CompletedPart[] = []
    /** Part `PartNumber`, whole, once the bucket has it: as it was streamed, else sent from its reserve. */
    const complete = async (UploadId: string, PartNumber: number, part: Part, streamed?: StreamedPart) => {
      // The part before is done (awaited first), so every part before this one is in `parts`.
      parts.push((await streamed?.result) ?? (await sendPart(multipartKey, UploadId, PartNumber, part)))
    }
    /** The filled part goes on its way (once the one before it is done) and the next part begins. */
    const nextPart = async () => {
      await inFlight
      uploadId ??= (await client.send(new CreateMultipartUploadCommand({ Bucket, Key: multipartKey })))
        .UploadId as string
      inFlight = complete(uploadId, partNumber, filling, streaming)
      inFlight.catch(() => {}) // awaited by the next part or the end; this only keeps it from being unhandled
      ;[filling, sending] = [sending, filling]
      await filling.reset()
      partNumber++
      streaming = streamPart(multipartKey, uploadId, partNumber)
    }
    try {
      for await (const chunk of body) {
        for (let offset = 0; offset < chunk.byteLength; ) {
          if (filling.filled === partBytes) await nextPart()
          const piece = chunk.subarray(offset, offset + Math.min(partBytes - filling.filled, chunk.byteLength - offset))
          // The reserve and the streamed request take the piece at once: it is held no longer than
          // the slower of the two needs it.
          await Promise.all([filling.write(piece), streaming?.write(piece)])
          offset += piece.byteLength
          if (filling.filled === partBytes) streaming?.end()
        }
      }
      if (uploadId === undefined) {
        // API: https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html
        await sendFromReserve(filling, (reserve) =>
          client.send(new PutObjectCommand({ Bucket, Key, ...reserve.body }), { abortSignal: reserve.abortSignal }),
        )
        return undefined
      }
      if (filling.filled < partBytes) await streaming?.cancel()
      await inFlight
      await complete(uploadId, partNumber, filling, streaming)
      const upload = { Bucket, Key: multipartKey, UploadId: uploadId }
      const deferred: DeferredUpload = {
        complete: async () => {
          // Completing at the content address (the caller's commit) is a content write: `unbounded`.
          await (multipartKey === Key ? client : unbounded).send(
            new CompleteMultipartUploadCommand({ ...upload, MultipartUpload: { Parts: parts } }),
          )
        },
        abort: async () => {
          await client.send(new AbortMultipartUploadCommand(upload))
        },
      }
      if (multipartKey !== Key) return deferred
      await deferred.complete()
      return undefined
    } catch (err) {
      await streaming?.cancel()
      await inFlight?.catch(() => {})
      if (uploadId) {
        await client
          .send(new AbortMultipartUploadCommand({ Bucket, Key: multipartKey, UploadId: uploadId }))
          .catch(() => {})
      }
      throw err
    } finally {
      await streaming?.cancel()
      await inFlight?.catch(() => {})
      await Promise.all([filling.close(), sending.close()])
    }
  }

  /**
   * A body whose hash was declared before it (X-Content-SHA256) and longer than one part is uploaded
   * straight to its content address and left uncompleted, so nothing is visible there until the
   * commit completes it (no server-side copy: the bucket assembles the parts where they belong). A
   * commit of any other content aborts it, as does a discard. A bucket lifecycle rule aborting
   * incomplete multipart uploads clears what a crash leaves (docs/originals.md).
   * API: https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html
   */
  function stagedInPlace(target: string, declared: { sha256: string }, bytes: number, upload: DeferredUpload) {
    const abort = () => upload.abort().catch(() => {})
    const staged: StagedOriginal = {
      bytes,
      discard: abort,
      async commit(content) {
        const refused = stagedContentError(bytes, content, declared)
        if (refused) {
          await abort()
          throw refused
        }
        try {
          if ((await head(target)) !== null) {
            await abort()
            return 'existing'
          }
          await upload.complete()
          return 'created'
        } catch (err) {
          // As in a staged copy's commit: a racing writer of the same content settles it either way.
          await abort()
          if (await settlesAs(target, bytes)) return 'existing'
          throw err
        }
      },
    }
    return staged
  }

  async function stage(
    tenant: string,
    body: Readable | AsyncIterable<Uint8Array>,
    declared?: { sha256: string },
  ): Promise<StagedOriginal> {
    checkTenant(tenant)
    const Key = `${stagingBase}${randomUUID()}`
    const target = declared ? objectKey({ tenant, sha256: declared.sha256 }) : undefined
    const count = new StagingCount()
    const deferred = await putStreamed(Key, count.pass(body), target)
    if (deferred && target && declared) return stagedInPlace(target, declared, count.bytes, deferred)
    const discard = async () => {
      await client.send(new DeleteObjectCommand({ Bucket, Key }))
    }
    return {
      bytes: count.bytes,
      discard,
      async commit(content) {
        try {
          const refused = stagedContentError(count.bytes, content, declared)
          if (refused) throw refused
          const target = objectKey({ tenant, sha256: content.sha256 })
          try {
            if ((await head(target)) !== null) return 'existing'
            await unbounded.send(
              new CopyObjectCommand({ Bucket, Key: target, CopySource: `${Bucket}/${encodeURI(Key)}` }),
            )
            return 'created'
          } catch (err) {
            // Content-addressed: a writer racing this one puts identical bytes under the same key, and
            // some stores refuse a read or the second write while the first is under way. The content
            // is there either way once that write has settled.
            if (await settlesAs(target, count.bytes)) return 'existing'
            throw err
          }
        } finally {
          // A staging object left behind is removed by the originals job after its grace.
          await discard().catch(() => {})
        }
      },
    }
  }

  /** Cleared once the store answers a part copy 501 (s3rver, GCS's XML API): assemblies then are copies. */
  let copiesParts = true

  /**
   * A finished resumable upload's original, made by the bucket from its segments: nothing before the
   * commit; then, under the content address, one CopyObject for a single segment, else a multipart
   * upload of one UploadPartCopy per segment (ranges of a segment over 5 GiB), completed once every
   * part is in, aborted on any failure. Each copy names the ETag the completion's read saw
   * (x-amz-copy-source-if-match), so the object is made of exactly the bytes that were hashed.
   * Every part but the last must be 5 MiB or more: otherwise, or past 10,000 parts, undefined (the
   * caller keeps the bytes it reads). A store that does not copy parts (501) gets the segments
   * staged through filegate once, at the commit, and no assembly after.
   * https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html
   */
  function assemble(tenant: string, all: ReadonlyArray<SegmentSource>): StagedOriginal | undefined {
    checkTenant(tenant)
    const segments = all.filter((s) => s.bytes > 0) // an empty part adds nothing
    if (!copiesParts || segments.length === 0 || segments.slice(0, -1).some((s) => s.bytes < partBytes)) {
      return undefined
    }
    const pieces = segments.flatMap((segment, index) => {
      // Equal ranges, so that none of a segment over 5 GiB falls under 5 MiB.
      const count = Math.ceil(segment.bytes / maxPartBytes)
      const size = Math.ceil(segment.bytes / count)
      return Array.from({ length: count }, (_, i) => ({
        index,
        range: count === 1 ? undefined : `bytes=${i * size}-${Math.min(segment.bytes, (i + 1) * size) - 1}`,
      }))
    })
    if (pieces.length > maxParts) return undefined
    const bytes = segments.reduce((sum, s) => sum + s.bytes, 0)
    return {
      bytes,
      // Nothing is staged: the segments are the upload's, removed with it.
      discard: async () => {},
      async commit(content) {
        const refused = stagedContentError(bytes, content)
        if (refused) throw refused
        const versions = segments.map((s) => s.version())
        if (versions.some((v) => v === undefined)) throw new Error('an assembly before its segments were read')
        const sources: CopySource[] = segments.map((s, i) => ({
          CopySource: `${Bucket}/${encodeURI(`${segmentsBase}${checkSegmentKey(s.key)}`)}`,
          CopySourceIfMatch: versions[i] as string,
        }))
        const target = objectKey({ tenant, sha256: content.sha256 })
        try {
          if ((await head(target)) !== null) return 'existing'
          if (pieces.length === 1) {
            await unbounded.send(new CopyObjectCommand({ Bucket, Key: target, ...(sources[0] as CopySource) }))
            return 'created'
          }
          const parts = pieces.map((piece) => ({
            ...(sources[piece.index] as CopySource),
            ...(piece.range ? { CopySourceRange: piece.range } : {}),
          }))
          if (await copyParts(target, parts)) return 'created'
          // The store copies no parts: the segments pass through filegate once, as a staged body.
          const staged = await stage(tenant, segmentBodies(sources), { sha256: content.sha256 })
          return await staged.commit(content)
        } catch (err) {
          if (await settlesAs(target, bytes)) return 'existing'
          throw err
        }
      },
    }
  }

  /**
   * `target` as a multipart upload of one UploadPartCopy per part, a few at once, completed; false
   * (the upload aborted) when the store answers the first part copy 501 Not Implemented.
   */
  async function copyParts(
    target: string,
    sources: ReadonlyArray<CopySource & { CopySourceRange?: string }>,
  ): Promise<boolean> {
    const upload = { Bucket, Key: target }
    const { UploadId } = await client.send(new CreateMultipartUploadCommand(upload))
    const parts: CompletedPart[] = []
    let failed = false
    const copyPart = async (n: number) => {
      const source = sources[n] as CopySource & { CopySourceRange?: string }
      const out = await client.send(new UploadPartCopyCommand({ ...upload, UploadId, PartNumber: n + 1, ...source }))
      parts[n] = { PartNumber: n + 1, ETag: out.CopyPartResult?.ETag }
    }
    let next = 1
    const copyRest = async () => {
      for (let n = next++; n < sources.length && !failed; n = next++) {
        await copyPart(n).catch((err: unknown) => {
          failed = true
          throw err
        })
      }
    }
    try {
      // The first part alone: a store that copies no parts says so before more are asked of it.
      await copyPart(0)
      await Promise.all(Array.from({ length: partCopyConcurrency }, copyRest))
      await unbounded.send(
        new CompleteMultipartUploadCommand({ ...upload, UploadId, MultipartUpload: { Parts: parts } }),
      )
      return true
    } catch (err) {
      await client.send(new AbortMultipartUploadCommand({ ...upload, UploadId })).catch(() => {})
      if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode !== 501) throw err
      copiesParts = false
      return false
    }
  }

  /** The segments' bytes, each the version the completion read (If-Match), for a store that copies no parts. */
  async function* segmentBodies(sources: ReadonlyArray<CopySource>): AsyncGenerator<Uint8Array> {
    for (const source of sources) {
      const Key = decodeURI(source.CopySource.slice(Bucket.length + 1))
      const out = await client.send(new GetObjectCommand({ Bucket, Key, IfMatch: source.CopySourceIfMatch }))
      yield* out.Body as Readable
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
      await unbounded.send(new DeleteObjectCommand({ Bucket, Key: objectKey(key) }))
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
    segments: {
      async put(key, body) {
        const count = new StagingCount()
        await putStreamed(`${segmentsBase}${checkSegmentKey(key)}`, count.pass(body))
        return count.bytes
      },
      async get(key) {
        const out = await client.send(new GetObjectCommand({ Bucket, Key: `${segmentsBase}${checkSegmentKey(key)}` }))
        return { stream: out.Body as Readable, version: out.ETag }
      },
      async removeAll(prefix) {
        const under = `${segmentsBase}${checkSegmentPrefix(prefix)}/`
        for await (const item of listKeys(under)) {
          await client.send(new DeleteObjectCommand({ Bucket, Key: `${under}${item.key}` }))
        }
      },
    },
    assemble,
    async ping() {
      await client.send(new HeadBucketCommand({ Bucket }))
    },
    async close() {
      client.destroy()
      unbounded.destroy()
    },
  }
}
