/**
 * Google Gemini's Files API wire (ai.google.dev/api/files, ai.google.dev/gemini-api/docs/files):
 * the key in `x-goog-api-key`; uploads over the resumable protocol; `GET`/`DELETE
 * /v1beta/files/{id}`; `GET /v1beta/files?pageSize&pageToken` → `{files, nextPageToken}`; errors as
 * google.rpc.Status `{"error":{"code","message","status"}}` (ai.google.dev/gemini-api/docs/troubleshooting).
 * It does no retrying of its own except resuming a failed upload chunk (below); the adapter runs
 * every call through the shared resilience policy.
 *
 * Uploads (the Files guide's REST example; the protocol is Google's resumable upload):
 *   1. `POST /upload/v1beta/files` with `X-Goog-Upload-Protocol: resumable`, `X-Goog-Upload-Command:
 *      start`, `X-Goog-Upload-Header-Content-Length` (when the size is known) and `-Content-Type`,
 *      body `{"file":{"display_name"}}` → the session URL in `x-goog-upload-url`.
 *   2. The body in 8 MiB chunks to the session URL: `X-Goog-Upload-Command: upload` with
 *      `X-Goog-Upload-Offset`, the last one `upload, finalize`, answered with `{"file": File}`.
 *   3. A chunk that fails (5xx, 429, a broken connection) is not sent again from its start, nor the
 *      file from zero: `X-Goog-Upload-Command: query` asks how many bytes the session holds
 *      (`x-goog-upload-size-received`), and the rest of the chunk is sent from there.
 * At most one chunk is in memory (a spooled file is read into it with positioned reads, no stream
 * buffers between): it is what makes step 3 possible for every source. A file or an
 * in-memory buffer can also be read again from any offset, so when the resumes within one attempt
 * run out, the adapter's next attempt (same session, kept in UploadProgress) resumes from the
 * offset the server reports. A streamed body cannot be rewound: it gets one attempt (the one-shot
 * rule), inside which a failed chunk is still resumed from the chunk held in memory; bytes before
 * that chunk were confirmed by the server, so nothing already sent is ever needed again. If the
 * server reports fewer bytes than the chunk's start (it lost confirmed data), a streamed upload
 * fails; a file or buffer upload goes on from there on its next attempt.
 */
import { type FileHandle, open } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Agent, Dispatcher } from 'undici'
import { request } from 'undici'
import type { WireKind, WireOptions } from './adapter.js'
import {
  badResponse,
  type ErrorDialect,
  isProviderError,
  misconfigured,
  ProviderError,
  quotaExceeded,
  rateLimited,
  sanitizeMessage,
} from './errors.js'
import type {
  ProviderConfig,
  ProviderContent,
  ProviderFile,
  ProviderOp,
  ProviderWire,
  UploadInput,
  UploadProgress,
} from './types.js'
import {
  closeAgent,
  ERROR_BODY_CAP,
  type ErrorBodyFields,
  providerFileProblem,
  readJson,
  transportError,
  upstreamError,
  wireAgent,
} from './wire-http.js'

/** The chunk size of the resumable upload: 8 MiB, a multiple of the 256 KiB granularity Google asks for. */
export const GEMINI_CHUNK_BYTES = 8 * 1024 * 1024

const MIME = /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/i

/** filegate's one purpose for Gemini files (Gemini has none; see gemini-facts.ts). */
export const GEMINI_PURPOSE = 'file'

/**
 * Gemini's statuses (ai.google.dev/gemini-api/docs/troubleshooting): 429 RESOURCE_EXHAUSTED is a
 * rate limit ("wait, retry with backoff"), 500 INTERNAL / 503 UNAVAILABLE / 504 DEADLINE_EXCEEDED are
 * transient (the shared 5xx default); 400 INVALID_ARGUMENT about the key and 400 FAILED_PRECONDITION
 * (billing, region) and 403 PERMISSION_DENIED are the operator's to fix. The docs name no error for
 * the project's 20 GB being full; a RESOURCE_EXHAUSTED that names storage is taken to be it, which
 * waiting does not cure: PROVIDER_QUOTA_EXCEEDED (filegate counts GEMINI_MAX_TOTAL_BYTES itself first).
 */
export const geminiErrors: ErrorDialect = (e) => {
  if (e.status === 429 || e.type === 'RESOURCE_EXHAUSTED') {
    return /storage|project.{0,40}(quota|limit|full)/i.test(e.message) ? quotaExceeded(e) : rateLimited(e)
  }
  if (e.status === 400 && e.type === 'FAILED_PRECONDITION')
    return misconfigured(e, 'refuses this project (billing or region)')
  if (e.status === 400 && /api key/i.test(e.message)) return misconfigured(e)
  return undefined
}

type Source = UploadInput['source']

/** Where a chunk's bytes come from: `fill` fills `into` and answers how many it put there. */
interface ChunkSource {
  /** Fewer than `into.length` only at the end of the source. */
  fill(into: Buffer): Promise<number>
  /** Whether nothing follows (asked only when the size is unknown and a chunk came out full). */
  atEnd(): Promise<boolean>
  close(): Promise<void>
}

/**
 * A spooled file, read with positioned reads straight into the chunk buffer: no read-stream buffers
 * in between, so a Gemini upload makes no garbage on the reading side at all.
 */
function fileChunks(path: string, offset: number): ChunkSource {
  let handle: Promise<FileHandle> | undefined
  let position = offset
  const opened = () => {
    handle ??= open(path, 'r')
    return handle
  }
  return {
    async fill(into) {
      const fh = await opened()
      let filled = 0
      while (filled < into.length) {
        const { bytesRead } = await fh.read(into, filled, into.length - filled, position)
        if (bytesRead === 0) break
        filled += bytesRead
        position += bytesRead
      }
      return filled
    },
    // A file source's size is known, so this is not asked of it; answered all the same.
    atEnd: async () => (await (await opened()).stat()).size <= position,
    async close() {
      if (handle) await (await handle).close()
    },
  }
}

/** An in-memory buffer or a one-shot stream, piece by piece, a piece that does not fit carried over. */
function pieceChunks(pieces: AsyncIterable<Buffer>): ChunkSource {
  const iterator = pieces[Symbol.asyncIterator]()
  let carry: Buffer | undefined
  let done = false
  const piece = async (): Promise<Buffer | undefined> => {
    if (carry) {
      const next = carry
      carry = undefined
      return next
    }
    if (done) return undefined
    const next = await iterator.next()
    if (next.done) {
      done = true
      return undefined
    }
    return next.value
  }
  return {
    async fill(into) {
      let filled = 0
      while (filled < into.length) {
        const next = await piece()
        if (next === undefined) break
        const take = Math.min(next.length, into.length - filled)
        next.copy(into, filled, 0, take)
        filled += take
        if (take < next.length) carry = next.subarray(take)
      }
      return filled
    },
    // Look one piece ahead; it is kept for the next chunk.
    async atEnd() {
      const next = await piece()
      if (next === undefined) return true
      carry = next
      return false
    },
    async close() {
      await iterator.return?.()
    },
  }
}

/** The source's bytes from `offset` on: a file or buffer from anywhere, a stream only from its start. */
function chunkSource(source: Source, offset: number): ChunkSource {
  if (source.kind === 'file') return fileChunks(source.path, offset)
  if (source.kind === 'buffer') {
    const rest = source.buffer.subarray(offset)
    return pieceChunks(
      (async function* () {
        yield rest
      })(),
    )
  }
  if (offset !== 0) throw new Error('a streamed body cannot be resumed past its start')
  return pieceChunks(source.stream)
}

/** Reads a source into chunks of at most GEMINI_CHUNK_BYTES, one buffer reused for all of them. */
class ChunkReader {
  readonly #source: ChunkSource
  readonly #total: number | undefined
  readonly #buffer: Buffer
  #read: number

  constructor(source: ChunkSource, startOffset: number, total: number | undefined) {
    this.#source = source
    this.#total = total
    this.#read = startOffset
    const size =
      total === undefined ? GEMINI_CHUNK_BYTES : Math.min(GEMINI_CHUNK_BYTES, Math.max(0, total - startOffset))
    this.#buffer = Buffer.allocUnsafe(size)
  }

  /** The next chunk (a view of the shared buffer, valid until the next call) and whether it is the last. */
  async next(): Promise<{ chunk: Buffer; last: boolean }> {
    const filled = await this.#source.fill(this.#buffer)
    this.#read += filled
    const last =
      this.#total !== undefined
        ? this.#read >= this.#total || filled < this.#buffer.length
        : filled < this.#buffer.length || (await this.#source.atEnd())
    return { chunk: this.#buffer.subarray(0, filled), last }
  }

  close(): Promise<void> {
    return this.#source.close()
  }
}

export interface GeminiClientOptions extends WireOptions {
  provider: string
  baseUrl: string
  apiKey: string | undefined
}

interface CallOptions {
  headers?: Record<string, string>
  body?: string | Buffer
  query?: Record<string, string>
  signal: AbortSignal
}

export class GeminiClient implements ProviderWire {
  readonly #o: GeminiClientOptions
  readonly #agent: Agent

  constructor(options: GeminiClientOptions) {
    this.#o = options
    this.#agent = wireAgent(options.idleTimeoutMs, options.connections)
  }

  async upload(input: UploadInput, signal: AbortSignal, progress: UploadProgress): Promise<ProviderFile> {
    const { source } = input
    let offset = 0
    if (progress.sessionUrl !== undefined) {
      // An earlier attempt started this session: go on from what the server holds (a session the
      // server no longer knows is started again from zero).
      try {
        offset = await this.#query(progress.sessionUrl, signal)
      } catch (err) {
        if (!isProviderError(err) || !err.notFound) throw err
        delete progress.sessionUrl
      }
    }
    progress.sessionUrl ??= await this.#start(input, signal)
    progress.confirmedBytes = offset
    const sessionUrl = progress.sessionUrl
    const reader = new ChunkReader(chunkSource(source, offset), offset, source.bytes)
    try {
      for (;;) {
        const { chunk, last } = await reader.next()
        const file = await this.#sendChunk(sessionUrl, chunk, offset, last, signal)
        offset += chunk.length
        progress.confirmedBytes = offset
        if (file) return file
        if (last) throw badResponse(this.#o.provider, 'the final chunk was not answered with a file')
      }
    } finally {
      // Ends the source: a file stream is closed; a streamed body given up on is destroyed, as the
      // multipart body of the other wires does (its sender sees the upload fail).
      await reader.close().catch(() => {})
    }
  }

  retrieve(id: string, signal: AbortSignal): Promise<ProviderFile> {
    return this.#call('retrieve', 'GET', this.#fileUrl(id), { signal }).then(async (res) =>
      this.#file(await readJson(res, this.#o.provider, this.#o.idleTimeoutMs)),
    )
  }

  async delete(id: string, signal: AbortSignal): Promise<void> {
    const res = await this.#call('delete', 'DELETE', this.#fileUrl(id), { signal })
    await res.body.dump({ limit: ERROR_BODY_CAP })
  }

  async *listAll(
    opts: { purpose?: string; pageSize?: number },
    run: <T>(fn: (signal: AbortSignal | undefined) => Promise<T>) => Promise<T>,
  ): AsyncGenerator<ProviderFile> {
    // Every Gemini file is of filegate's one purpose; another purpose lists nothing.
    if (opts.purpose !== undefined && opts.purpose !== GEMINI_PURPOSE) return
    let token: string | undefined
    for (;;) {
      const query: Record<string, string> = { pageSize: String(Math.min(opts.pageSize ?? 100, 100)) }
      if (token !== undefined) query.pageToken = token
      const page = await run(async (signal) => {
        const res = await this.#call('list', 'GET', `${this.#o.baseUrl}/v1beta/files`, {
          query,
          signal: signal ?? AbortSignal.timeout(this.#o.idleTimeoutMs),
        })
        return (await readJson(res, this.#o.provider, this.#o.idleTimeoutMs)) as {
          files?: unknown
          nextPageToken?: unknown
        }
      })
      // An empty project answers `{}`: no `files` at all.
      if (page.files !== undefined && !Array.isArray(page.files))
        throw badResponse(this.#o.provider, 'list without files')
      for (const raw of (page.files as unknown[] | undefined) ?? []) yield this.#file(raw)
      const next = typeof page.nextPageToken === 'string' && page.nextPageToken !== '' ? page.nextPageToken : undefined
      // A token that does not move would loop for ever.
      if (next === undefined || next === token) return
      token = next
    }
  }

  /** Gemini serves no download of an uploaded file (the Files guide): refused without a call. */
  async content(_id: string, _signal: AbortSignal): Promise<ProviderContent> {
    throw new ProviderError('CONTENT_UNAVAILABLE', {
      provider: this.#o.provider,
      retryable: false,
      providerFault: false,
      detail: `${this.#o.provider} does not serve the content of uploaded files`,
    })
  }

  async close(graceMs = 5_000): Promise<void> {
    await closeAgent(this.#agent, graceMs)
  }

  #fileUrl(id: string): string {
    return `${this.#o.baseUrl}/v1beta/files/${encodeURIComponent(id)}`
  }

  async #start(input: UploadInput, signal: AbortSignal): Promise<string> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'x-goog-upload-protocol': 'resumable',
      'x-goog-upload-command': 'start',
      // A client's type that is not a plain media type goes as octet-stream, never into a header raw.
      'x-goog-upload-header-content-type': MIME.test(input.mimeType) ? input.mimeType : 'application/octet-stream',
    }
    // A streamed-through body's size is known only at its end: the header is then left out, and
    // the finalizing chunk tells the size.
    if (input.source.bytes !== undefined) headers['x-goog-upload-header-content-length'] = String(input.source.bytes)
    const res = await this.#call('upload', 'POST', `${this.#o.baseUrl}/upload/v1beta/files`, {
      headers,
      body: JSON.stringify({ file: { display_name: input.filename } }),
      signal,
    })
    await res.body.dump({ limit: ERROR_BODY_CAP })
    const url = header(res, 'x-goog-upload-url')
    if (!url) throw badResponse(this.#o.provider, 'no x-goog-upload-url')
    return url
  }

  /** How many bytes the session holds (`X-Goog-Upload-Command: query`). */
  async #query(sessionUrl: string, signal: AbortSignal): Promise<number> {
    const res = await this.#call('upload', 'POST', sessionUrl, {
      headers: { 'x-goog-upload-command': 'query' },
      signal,
    })
    await res.body.dump({ limit: ERROR_BODY_CAP })
    const received = Number(header(res, 'x-goog-upload-size-received'))
    if (!Number.isSafeInteger(received) || received < 0) throw badResponse(this.#o.provider, 'query without a size')
    return received
  }

  /**
   * One chunk at `offset`; the File when it was the last. A failure that a retry could cure is
   * resumed here from the offset the server reports, up to RETRY_MAX_ATTEMPTS - 1 times per chunk.
   */
  async #sendChunk(
    sessionUrl: string,
    chunk: Buffer,
    start: number,
    last: boolean,
    signal: AbortSignal,
  ): Promise<ProviderFile | undefined> {
    let from = 0
    for (let resumes = 0; ; resumes++) {
      try {
        const res = await this.#call('upload', 'POST', sessionUrl, {
          headers: {
            'content-type': 'application/octet-stream',
            'x-goog-upload-command': last ? 'upload, finalize' : 'upload',
            'x-goog-upload-offset': String(start + from),
          },
          body: chunk.subarray(from),
          signal,
        })
        if (!last) {
          await res.body.dump({ limit: ERROR_BODY_CAP })
          return undefined
        }
        const body = (await readJson(res, this.#o.provider, this.#o.idleTimeoutMs)) as { file?: unknown } | null
        return this.#file(body?.file, 'upload')
      } catch (err) {
        if (signal.aborted || !isProviderError(err) || !err.retryable || resumes >= this.#o.retry.maxAttempts - 1)
          throw err
        await sleep(err.upstreamRetryAfterMs ?? this.#o.retry.baseDelayMs, undefined, { signal })
        const received = await this.#query(sessionUrl, signal)
        // Bytes before this chunk were confirmed; fewer now means the server lost them: this
        // attempt cannot go on (a file or buffer is resumed from there by the next attempt).
        if (received < start || received > start + chunk.length) throw err
        from = received - start
        if (from === chunk.length && !last) return undefined
      }
    }
  }

  async #call(
    op: ProviderOp,
    method: Dispatcher.HttpMethod,
    target: string,
    opts: CallOptions,
  ): Promise<Dispatcher.ResponseData> {
    const url = new URL(target)
    for (const [k, v] of Object.entries(opts.query ?? {})) url.searchParams.set(k, v)
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers }
    // The key goes to the configured origin only, never to a session URL that points elsewhere.
    if (this.#o.apiKey && url.origin === new URL(this.#o.baseUrl).origin) headers['x-goog-api-key'] = this.#o.apiKey
    let res: Dispatcher.ResponseData
    try {
      res = await request(url, {
        dispatcher: this.#agent,
        method,
        headers,
        ...(opts.body !== undefined ? { body: opts.body } : {}),
        signal: opts.signal,
      })
    } catch (err) {
      throw transportError(err, opts.signal, this.#o.provider, this.#o.idleTimeoutMs)
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return res
    throw await upstreamError(res, op, this.#o, parseStatus, geminiErrors)
  }

  /** A File resource (ai.google.dev/api/files#File) as filegate's ProviderFile; checked like every wire's. */
  #file(raw: unknown, op?: 'upload'): ProviderFile {
    if (typeof raw !== 'object' || raw === null) throw badResponse(this.#o.provider, 'file is not an object')
    const f = raw as Record<string, unknown>
    const name = typeof f.name === 'string' ? f.name : ''
    // The resource name is "files/<id>": filegate keeps the id, which fits a URL path segment.
    const id = name.startsWith('files/') ? name.slice('files/'.length) : ''
    if (id === '') throw badResponse(this.#o.provider, 'file without a name')
    const seconds = (v: unknown) => {
      const ms = typeof v === 'string' ? Date.parse(v) : Number.NaN
      return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000)
    }
    const file: ProviderFile = {
      id,
      // sizeBytes is an int64, sent as a string.
      bytes: Number(f.sizeBytes ?? 0),
      createdAt: seconds(f.createTime) ?? 0,
      filename: typeof f.displayName === 'string' ? f.displayName : '',
      purpose: GEMINI_PURPOSE,
      expiresAt: seconds(f.expirationTime) ?? null,
    }
    // The same checks as every wire's file object; a broken one names the copy it may stand for.
    const problem = providerFileProblem(file)
    if (problem) throw badResponse(this.#o.provider, problem, op === 'upload' ? id : undefined)
    const state = typeof f.state === 'string' ? states[f.state] : undefined
    if (typeof f.state === 'string') file.status = f.state
    if (state) file.state = state
    const error = f.error as { message?: unknown } | undefined
    if (state === 'failed') {
      file.stateMessage = sanitizeMessage(typeof error?.message === 'string' ? error.message : 'processing failed', [
        this.#o.apiKey,
      ])
    }
    return file
  }
}

const states: Record<string, ProviderFile['state']> = {
  PROCESSING: 'processing',
  ACTIVE: 'active',
  FAILED: 'failed',
}

/** google.rpc.Status: `{"error":{"code":429,"message":"…","status":"RESOURCE_EXHAUSTED"}}`. */
function parseStatus(text: string): ErrorBodyFields {
  try {
    const inner = (JSON.parse(text) as { error?: Record<string, unknown> }).error
    if (typeof inner !== 'object' || inner === null) return text.trim() ? { message: text } : {}
    const out: ErrorBodyFields = {}
    if (typeof inner.code === 'number' || typeof inner.code === 'string') out.code = String(inner.code)
    if (typeof inner.message === 'string') out.message = inner.message
    // google.rpc.Status's `status` (RESOURCE_EXHAUSTED, …) is the error's type.
    if (typeof inner.status === 'string') out.type = inner.status
    return out
  } catch {
    return text.trim() ? { message: text } : {}
  }
}

function header(res: Dispatcher.ResponseData, name: string): string | undefined {
  const value = res.headers[name]
  return Array.isArray(value) ? value[0] : value
}

/** The Gemini kind: its wire has a single-file GET. */
export const geminiWire: WireKind = {
  hasRetrieve: true,
  create: (config: ProviderConfig, options: WireOptions) =>
    new GeminiClient({ ...options, provider: config.name, baseUrl: config.baseUrl, apiKey: config.apiKey }),
}
