/**
 * One OpenAI-style files client (platform.openai.com/docs/api-reference/files) over undici, which
 * Kimi, GLM, OpenAI (native and compatible) and Anthropic all follow with differences the dialect
 * describes: headers, form fields, the file object, list cursors and errors.
 * One keep-alive Agent per provider. Bodies are streamed both ways; only JSON answers and error
 * bodies (capped) are read into memory. It does no retrying: that is resilience.ts's job.
 */
import type { Readable } from 'node:stream'
import type { Agent, Dispatcher } from 'undici'
import { request } from 'undici'
import { badResponse, type ErrorDialect, listIncomplete, parseErrorBody } from './errors.js'
import { buildMultipartBody, type FormFields } from './multipart-body.js'
import type { ProviderContent, ProviderFile, ProviderOp, UploadInput } from './types.js'
import {
  closeAgent,
  ERROR_BODY_CAP,
  providerFileProblem,
  readJson,
  transportError,
  upstreamError,
  wireAgent,
} from './wire-http.js'

/**
 * How one provider's files API differs from OpenAI's: what the shared client asks before each
 * request and after each answer. The optional members default to OpenAI's shapes.
 */
export interface ProviderDialect {
  /** False when the provider returns every file in one page (Kimi). */
  readonly paginated: boolean
  /** False when there is no `GET /files/{id}` (GLM): retrieve is done by listing. */
  readonly hasRetrieve: boolean
  /** Query for one list page. */
  listQuery(opts: ListOptions): Record<string, string>
  readonly classifyError: ErrorDialect
  /** The headers that authenticate (and version) every call; default `Authorization: Bearer <key>`. */
  authHeaders?(apiKey: string): Record<string, string>
  /** The form fields before the file part of an upload; default `purpose`. */
  formFields?(input: UploadInput): FormFields
  /** The provider's file object as filegate's; a string says what is wrong with it. Default: OpenAI's. */
  parseFile?(raw: Record<string, unknown>): ProviderFile | string
}

export interface ListOptions {
  purpose?: string
  after?: string
  limit?: number
}

export interface ListPage {
  data: ProviderFile[]
  hasMore: boolean
  /** The cursor for the next page (`last_id`, else the last item's id). */
  nextAfter: string | undefined
}

export interface FilesClientOptions {
  provider: string
  baseUrl: string
  apiKey: string | undefined
  dialect: ProviderDialect
  /** The provider's per-file cap, reported as `limit_bytes` on FILE_TOO_LARGE. */
  limitBytes: number
  /** undici idle timeouts: bound a stall even after an attempt returned a streamed body. */
  idleTimeoutMs: number
  connections?: number
}

/** Walks of a list that ended early started again before the listing fails (listAll). */
const walkRestarts = 3

/** Wraps one page fetch, e.g. with retries and the circuit breaker. */
export type PageRunner = <T>(fn: (signal: AbortSignal | undefined) => Promise<T>) => Promise<T>

export class FilesClient {
  readonly provider: string
  readonly #options: FilesClientOptions
  readonly #agent: Agent

  constructor(options: FilesClientOptions) {
    this.provider = options.provider
    this.#options = options
    this.#agent = wireAgent(options.idleTimeoutMs, options.connections ?? 32)
  }

  async upload(input: UploadInput, signal?: AbortSignal): Promise<ProviderFile> {
    const multipart = buildMultipartBody(input, this.#options.dialect.formFields?.(input))
    const headers: Record<string, string> = { 'content-type': multipart.contentType }
    if (multipart.contentLength !== undefined) headers['content-length'] = String(multipart.contentLength)
    try {
      const res = await this.#call('upload', 'POST', '/files', { headers, body: multipart.body, signal })
      return this.#file(await readJson(res, this.provider, this.#options.idleTimeoutMs), 'upload')
    } finally {
      // On failure undici may not have pulled the body at all: end the generator (a file source
      // is opened lazily inside it, so nothing is left open).
      multipart.body.return().catch(() => {})
    }
  }

  async retrieve(id: string, signal?: AbortSignal): Promise<ProviderFile> {
    const res = await this.#call('retrieve', 'GET', `/files/${encodeURIComponent(id)}`, { signal })
    return this.#file(await readJson(res, this.provider, this.#options.idleTimeoutMs))
  }

  async delete(id: string, signal?: AbortSignal): Promise<void> {
    const res = await this.#call('delete', 'DELETE', `/files/${encodeURIComponent(id)}`, { signal })
    await res.body.dump({ limit: ERROR_BODY_CAP })
  }

  async list(opts: ListOptions = {}, signal?: AbortSignal): Promise<ListPage> {
    const res = await this.#call('list', 'GET', '/files', { query: this.#options.dialect.listQuery(opts), signal })
    const body = (await readJson(res, this.provider, this.#options.idleTimeoutMs)) as {
      data?: unknown
      has_more?: unknown
      last_id?: unknown
    }
    if (typeof body !== 'object' || body === null || !Array.isArray(body.data)) {
      throw badResponse(this.provider, 'list without data')
    }
    const data = body.data.map((item) => this.#file(item))
    const lastId = typeof body.last_id === 'string' ? body.last_id : data.at(-1)?.id
    return { data, hasMore: body.has_more === true, nextAfter: lastId }
  }

  /**
   * Every file once, page by page (`after` = the previous page's last id, while `has_more`). A walk
   * that ends on an empty page after `has_more` may have lost its cursor: the file it names was
   * deleted between the pages, and a provider may answer an unknown cursor with an empty page
   * (GLM documents nothing either way). Not seeing a file is then no proof that it is gone: the
   * walk starts again, and the end is believed only when two walks in a row end at the same cursor
   * (its file is still there). After `walkRestarts` more walks the listing fails: nothing concluded.
   */
  async *listAll(opts: { purpose?: string; pageSize?: number } = {}, run?: PageRunner): AsyncGenerator<ProviderFile> {
    const seen = new Set<string>()
    let previousEnd: string | undefined
    for (let walk = 0; ; walk++) {
      const end = yield* this.#walk(opts, seen, run)
      if (end === undefined || end === previousEnd) return
      if (walk >= walkRestarts) throw listIncomplete(this.provider, walk + 1)
      previousEnd = end
    }
  }

  /** One walk from the first page: yields the files not seen yet; answers the cursor of an early end. */
  async *#walk(
    opts: { purpose?: string; pageSize?: number },
    seen: Set<string>,
    run: PageRunner | undefined,
  ): AsyncGenerator<ProviderFile, string | undefined> {
    const fetchPage = (after: string | undefined) => {
      const query: ListOptions = { ...opts, ...(after !== undefined ? { after } : {}) }
      if (opts.pageSize !== undefined) query.limit = opts.pageSize
      return run ? run((signal) => this.list(query, signal)) : this.list(query)
    }
    let after: string | undefined
    for (;;) {
      const page = await fetchPage(after)
      for (const file of page.data) {
        if (seen.has(file.id)) continue
        seen.add(file.id)
        yield file
      }
      // An empty page where the one before promised more: the walk may have lost its cursor.
      if (page.data.length === 0 && after !== undefined) return after
      if (!this.#options.dialect.paginated || !page.hasMore || page.data.length === 0) return undefined
      // A cursor that does not move would loop for ever.
      if (page.nextAfter === undefined || page.nextAfter === after) return undefined
      after = page.nextAfter
    }
  }

  /** The body is handed over unread; the caller must consume or destroy it. */
  async content(id: string, signal?: AbortSignal): Promise<ProviderContent> {
    const res = await this.#call('content', 'GET', `/files/${encodeURIComponent(id)}/content`, { signal })
    const type = res.headers['content-type']
    const length = Number(res.headers['content-length'])
    return {
      body: res.body as Readable,
      contentType: (Array.isArray(type) ? type[0] : type) ?? 'application/octet-stream',
      ...(Number.isFinite(length) && res.headers['content-length'] !== undefined ? { contentLength: length } : {}),
    }
  }

  /**
   * Lets requests in flight finish, then destroys what is left after `graceMs` (an unread
   * content body, a hung upstream) so shutdown cannot hang on a provider.
   */
  async close(graceMs = 5_000): Promise<void> {
    await closeAgent(this.#agent, graceMs)
  }

  async #call(
    op: ProviderOp,
    method: Dispatcher.HttpMethod,
    path: string,
    opts: {
      headers?: Record<string, string>
      body?: AsyncIterable<Buffer>
      query?: Record<string, string>
      signal: AbortSignal | undefined
    },
  ): Promise<Dispatcher.ResponseData> {
    const url = new URL(`${this.#options.baseUrl}${path}`)
    for (const [k, v] of Object.entries(opts.query ?? {})) url.searchParams.set(k, v)
    const { apiKey, dialect } = this.#options
    const auth = apiKey ? (dialect.authHeaders?.(apiKey) ?? { authorization: `Bearer ${apiKey}` }) : {}
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers, ...auth }
    let res: Dispatcher.ResponseData
    try {
      res = await request(url, {
        dispatcher: this.#agent,
        method,
        headers,
        // undici writes an async iterable body chunk by chunk with backpressure (client-h1
        // writeIterable); its request() types list only Readable, hence the cast.
        ...(opts.body ? { body: opts.body as unknown as Readable } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
      })
    } catch (err) {
      throw transportError(err, opts.signal, this.provider, this.#options.idleTimeoutMs)
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return res
    throw await upstreamError(res, op, this.#options, parseErrorBody, this.#options.dialect.classifyError)
  }

  /**
   * The provider's file object, checked: the dialect reads its shape, then the id, size and times
   * must be sane whatever the dialect. An upload answered with a broken one may still have made a
   * copy: the error names the id the reply gave it, so that the copy can be deleted.
   */
  #file(raw: unknown, op?: 'upload'): ProviderFile {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
      throw badResponse(this.provider, 'file is not an object')
    }
    const fields = raw as Record<string, unknown>
    const parsed = (this.#options.dialect.parseFile ?? openAiFile)(fields)
    const problem = typeof parsed === 'string' ? parsed : providerFileProblem(parsed)
    if (problem === undefined) return parsed as ProviderFile
    const copyId = op === 'upload' && typeof fields.id === 'string' && fields.id !== '' ? fields.id : undefined
    throw badResponse(this.provider, problem, copyId)
  }
}

/** Unix seconds per the docs; a millisecond value is scaled down rather than trusted. */
const unixSeconds = (value: number) => (value > 1e12 ? Math.floor(value / 1000) : value)

/**
 * OpenAI's file object (platform.openai.com/docs/api-reference/files/object): `{id, bytes,
 * created_at, expires_at, filename, purpose, status}`, which Kimi and GLM follow.
 */
export function openAiFile(f: Record<string, unknown>): ProviderFile | string {
  if (typeof f.id !== 'string' || f.id === '') return 'file without id'
  const wrongType = (['bytes', 'created_at'] as const).find((k) => f[k] != null && typeof f[k] !== 'number')
  if (wrongType) return `${wrongType} is not a number`
  const notText = (['filename', 'purpose', 'status'] as const).find((k) => f[k] != null && typeof f[k] !== 'string')
  if (notText) return `${notText} is not a string`
  const file: ProviderFile = {
    id: f.id,
    bytes: Number(f.bytes ?? 0),
    createdAt: unixSeconds(Number(f.created_at ?? 0)),
    filename: typeof f.filename === 'string' ? f.filename : '',
    purpose: typeof f.purpose === 'string' ? f.purpose : '',
  }
  if (typeof f.status === 'string') file.status = f.status
  // "The Unix timestamp (in seconds) for when the file will expire"; absent or null = kept.
  if (typeof f.expires_at === 'number' && f.expires_at > 0) file.expiresAt = unixSeconds(f.expires_at)
  return file
}
