/**
 * A fake Anthropic Files API on loopback: a real node:http server following the documented shapes.
 *
 * - Create, list, metadata, content, delete: https://docs.claude.com/en/api/files-create,
 *   /files-list (limit 1–1000, default 20; before_id / after_id → {data, first_id, last_id,
 *   has_more}), /files-metadata, /files-content, /files-delete (→ {id, type: "file_deleted"}).
 *   The file object: {id, type: "file", filename, mime_type, size_bytes, created_at (RFC 3339),
 *   downloadable}. Uploaded files are not downloadable: "You can only download files that were
 *   created by skills or the code execution tool" (the Files API guide,
 *   https://docs.claude.com/en/docs/build-with-claude/files).
 * - Headers: `x-api-key`, `anthropic-version: 2023-06-01`, and the beta header
 *   `anthropic-beta: files-api-2025-04-14` the Files API pages still require.
 * - Errors: https://docs.claude.com/en/api/errors — {"type":"error","error":{"type","message"},
 *   "request_id"}: 400 invalid_request_error, 401 authentication_error, 403 permission_error,
 *   404 not_found_error, 413 request_too_large (Files API requests over 500 MB), 429
 *   rate_limit_error (with retry-after), 500 api_error, 529 overloaded_error.
 * Multipart bodies are hashed as they stream (busboy), never held whole.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Busboy } from '@fastify/busboy'
import { serveOnLoopback } from './loopback.js'
import { FailureQueue, passSwitches, type Switches } from './switches.js'

export type AnthropicOp = 'upload' | 'list' | 'retrieve' | 'content' | 'delete'

export interface AnthropicFile {
  id: string
  type: 'file'
  filename: string
  mime_type: string
  size_bytes: number
  created_at: string
  downloadable: boolean
}

export interface FakeAnthropic extends Switches<AnthropicOp> {
  readonly baseUrl: string
  readonly apiKey: string
  /**
   * The organization's file storage is full. The docs state the limit but not the error; the fake
   * answers 403 permission_error with a storage message (an assumption, written down in
   * docs/providers.md when the adapter lands).
   */
  storageFull: boolean
  /** "Maximum file size: 500 MB" (the Files API guide). */
  maxFileBytes: number
  failNext(n: number, status?: number, op?: AnthropicOp): void
  rateLimitNext(n: number, retryAfterSeconds?: number, op?: AnthropicOp): void
  readonly files: Map<string, AnthropicFile & { sha256: string }>
  readonly uploads: Array<{ id: string; bytes: number; sha256: string }>
  readonly deletes: string[]
  readonly requests: Record<AnthropicOp | 'unknown', number>
  /** Headers of the last request, to check the version and beta headers arrived. */
  lastHeaders: IncomingMessage['headers']
  addFile(file: Partial<AnthropicFile> & { filename: string }): AnthropicFile
  close(): Promise<void>
}

const errorType: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  529: 'overloaded_error',
}

export async function startFakeAnthropic(options: { apiKey?: string } = {}): Promise<FakeAnthropic> {
  const apiKey = options.apiKey ?? `sk-ant-${randomBytes(6).toString('hex')}`
  const files: FakeAnthropic['files'] = new Map()
  const uploads: FakeAnthropic['uploads'] = []
  const deletes: string[] = []
  const requests: FakeAnthropic['requests'] = { upload: 0, list: 0, retrieve: 0, content: 0, delete: 0, unknown: 0 }
  const failures = new FailureQueue<AnthropicOp>()

  const error = (res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, {
      'content-type': 'application/json',
      'request-id': `req_${randomBytes(6).toString('hex')}`,
      ...headers,
    })
    res.end(
      JSON.stringify({
        type: 'error',
        error: { type: errorType[status] ?? 'api_error', message },
        request_id: `req_${randomBytes(6).toString('hex')}`,
      }),
    )
  }
  const json = (res: ServerResponse, body: unknown) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(body))
  }
  const visible = ({ sha256: _sha256, ...file }: AnthropicFile & { sha256: string }): AnthropicFile => file

  function receive(
    req: IncomingMessage,
  ): Promise<{ filename: string; mimeType: string; bytes: number; sha256: string } | string> {
    return new Promise((resolve) => {
      let found: { filename: string; mimeType: string; bytes: number; sha256: string } | undefined
      let busboy: ReturnType<typeof Busboy>
      try {
        busboy = Busboy({ headers: req.headers as { 'content-type': string } })
      } catch {
        req.resume()
        resolve('Expected multipart/form-data with a file part')
        return
      }
      busboy.on(
        'file',
        (field: string, stream: NodeJS.ReadableStream, filename: string, _encoding: string, mimeType: string) => {
          if (field !== 'file') {
            stream.resume()
            return
          }
          const hash = createHash('sha256')
          let bytes = 0
          stream.on('data', (chunk: Buffer) => {
            bytes += chunk.length
            hash.update(chunk)
          })
          stream.on('end', () => {
            found = { filename, mimeType, bytes, sha256: hash.digest('hex') }
          })
        },
      )
      busboy.on('finish', () => resolve(found ?? 'file: Field required'))
      busboy.on('error', () => resolve('Malformed multipart body'))
      req.pipe(busboy)
    })
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://fake')
    const one = /^\/v1\/files\/([A-Za-z0-9_]+)(\/content)?$/.exec(url.pathname)
    const op: AnthropicOp | 'unknown' =
      url.pathname === '/v1/files' && req.method === 'POST'
        ? 'upload'
        : url.pathname === '/v1/files' && req.method === 'GET'
          ? 'list'
          : one?.[2] && req.method === 'GET'
            ? 'content'
            : one && req.method === 'GET'
              ? 'retrieve'
              : one && req.method === 'DELETE'
                ? 'delete'
                : 'unknown'
    requests[op]++
    fake.lastHeaders = req.headers
    if (op === 'unknown') {
      req.resume()
      return error(res, 404, `Not found: ${req.method} ${url.pathname}`)
    }
    if (!(await passSwitches(fake, op))) return
    if (req.headers['x-api-key'] !== apiKey) {
      req.resume()
      return error(res, 401, 'invalid x-api-key')
    }
    if (req.headers['anthropic-version'] !== '2023-06-01') {
      req.resume()
      return error(res, 400, 'anthropic-version: header is required')
    }
    if (!String(req.headers['anthropic-beta'] ?? '').includes('files-api-2025-04-14')) {
      req.resume()
      return error(res, 400, 'The Files API requires the anthropic-beta header files-api-2025-04-14')
    }
    const failure = failures.take(op)
    if (failure) {
      req.resume()
      return error(
        res,
        failure.status,
        failure.status === 429 ? 'Number of requests has exceeded your rate limit' : 'Overloaded',
        failure.retryAfter !== undefined ? { 'retry-after': String(failure.retryAfter) } : {},
      )
    }
    switch (op) {
      case 'upload': {
        const declared = Number(req.headers['content-length'] ?? 0)
        if (declared > fake.maxFileBytes) {
          req.resume()
          return error(res, 413, 'Request exceeds the maximum allowed number of bytes.')
        }
        if (fake.storageFull) {
          req.resume()
          return error(res, 403, 'Your organization has reached its file storage limit.')
        }
        const received = await receive(req)
        if (typeof received === 'string') return error(res, 400, received)
        if (received.bytes > fake.maxFileBytes)
          return error(res, 413, 'Request exceeds the maximum allowed number of bytes.')
        const file = {
          id: `file_011${randomBytes(10).toString('hex')}`,
          type: 'file' as const,
          filename: received.filename,
          mime_type: received.mimeType,
          size_bytes: received.bytes,
          created_at: new Date().toISOString(),
          downloadable: false,
          sha256: received.sha256,
        }
        files.set(file.id, file)
        uploads.push({ id: file.id, bytes: received.bytes, sha256: received.sha256 })
        return json(res, visible(file))
      }
      case 'list': {
        const limit = Number(url.searchParams.get('limit') ?? 20)
        if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
          return error(res, 400, 'limit: must be from 1 to 1000')
        const all = [...files.values()].reverse()
        const afterId = url.searchParams.get('after_id')
        const from = afterId ? all.findIndex((f) => f.id === afterId) + 1 : 0
        const data = all.slice(from, from + limit).map(visible)
        return json(res, {
          data,
          first_id: data[0]?.id ?? null,
          last_id: data.at(-1)?.id ?? null,
          has_more: from + limit < all.length,
        })
      }
      case 'retrieve': {
        const file = files.get(one?.[1] ?? '')
        return file ? json(res, visible(file)) : error(res, 404, `File not found: ${one?.[1]}`)
      }
      case 'content': {
        const file = files.get(one?.[1] ?? '')
        if (!file) return error(res, 404, `File not found: ${one?.[1]}`)
        if (!file.downloadable) return error(res, 400, 'This file is not downloadable')
        res.writeHead(200, { 'content-type': file.mime_type })
        return res.end(`content of ${file.filename}`)
      }
      case 'delete': {
        const id = one?.[1] ?? ''
        if (!files.delete(id)) return error(res, 404, `File not found: ${id}`)
        deletes.push(id)
        return json(res, { id, type: 'file_deleted' })
      }
    }
  }

  const loopback = await serveOnLoopback(handle, (res, err) => error(res, 500, `fake failure: ${err.message}`))
  const baseUrl = `${loopback.origin}/v1`

  const fake: FakeAnthropic = {
    baseUrl,
    apiKey,
    latencyMs: 0,
    hang: false,
    ops: null,
    storageFull: false,
    maxFileBytes: 500 * 1024 * 1024,
    failNext(n, status = 529, op) {
      failures.add(n, status, op)
    },
    rateLimitNext(n, retryAfterSeconds = 1, op) {
      failures.add(n, 429, op, retryAfterSeconds)
    },
    files,
    uploads,
    deletes,
    requests,
    lastHeaders: {},
    addFile(partial) {
      const file = {
        id: `file_011${randomBytes(10).toString('hex')}`,
        type: 'file' as const,
        mime_type: 'application/pdf',
        size_bytes: 0,
        created_at: new Date().toISOString(),
        downloadable: false,
        ...partial,
      }
      files.set(file.id, { ...file, sha256: '' })
      return file
    },
    close: () => loopback.close(),
  }
  return fake
}
