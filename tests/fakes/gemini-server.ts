/**
 * A fake Gemini Files API on loopback: a real node:http server following the documented shapes.
 *
 * - Files API guide: https://ai.google.dev/gemini-api/docs/files (2 GB a file, 20 GB a project,
 *   files kept 48 hours, `state` PROCESSING → ACTIVE | FAILED, delete, list).
 * - API reference: https://ai.google.dev/api/files (media.upload, files.get, files.list with
 *   pageSize (default 10, at most 100) and pageToken → {files, nextPageToken}, files.delete → {}; the
 *   File resource: name "files/<id>", displayName, mimeType, sizeBytes (an int64 as a string),
 *   createTime, updateTime, expirationTime, sha256Hash (base64), uri, state, source, error).
 * - The resumable upload protocol the guide's REST example uses: a `start` request
 *   (X-Goog-Upload-Protocol: resumable, X-Goog-Upload-Command: start,
 *   X-Goog-Upload-Header-Content-Length / -Content-Type, JSON {"file":{"display_name"}}) answered with
 *   the session URL in `x-goog-upload-url`; then `upload` chunks with `X-Goog-Upload-Offset`, the
 *   last one `upload, finalize`, answered with {"file": File}; `query` reports
 *   `x-goog-upload-size-received` so a client resumes an interrupted chunk from there.
 * - Errors: https://ai.google.dev/gemini-api/docs/troubleshooting (the google.rpc.Status body
 *   {"error":{"code","message","status"}}: 400 INVALID_ARGUMENT, 403 PERMISSION_DENIED, 404 NOT_FOUND,
 *   429 RESOURCE_EXHAUSTED, 500 INTERNAL, 503 UNAVAILABLE).
 * The key comes in `x-goog-api-key` (or `?key=`). Bodies are hashed as they stream, never held.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { serveOnLoopback } from './loopback.js'
import { FailureQueue, passSwitches, type Switches } from './switches.js'

export type GeminiOp = 'start' | 'chunk' | 'query' | 'get' | 'list' | 'delete'
export type GeminiState = 'PROCESSING' | 'ACTIVE' | 'FAILED'

export interface GeminiFile {
  name: string
  displayName: string
  mimeType: string
  sizeBytes: string
  createTime: string
  updateTime: string
  expirationTime: string
  sha256Hash: string
  uri: string
  state: GeminiState
  source: 'UPLOADED'
  error?: { code: number; message: string }
}

interface Session {
  id: string
  displayName: string
  mimeType: string
  /** null: the start request left the size out (the finalizing chunk tells it). */
  declaredBytes: number | null
  received: number
  /** Every byte that arrived in chunks, kept or dropped (an interrupted chunk's tail). */
  wire: number
  hash: ReturnType<typeof createHash>
  finalized: boolean
}

export interface FakeGemini extends Switches<GeminiOp> {
  readonly baseUrl: string
  readonly apiKey: string
  /** The project's storage is full: `start` answers 429 RESOURCE_EXHAUSTED. */
  quotaExceeded: boolean
  /** GETs of a new file that still answer PROCESSING before it turns ACTIVE (0: ACTIVE at once). */
  processingPolls: number
  /** New files end FAILED after processing, with this message. */
  failProcessing: string | null
  maxFileBytes: number
  /** How long a new file is kept: its `expirationTime` is this far from its creation (the guide: 48 hours). */
  keepMs: number
  /** Next n requests of `op` answer `status` in the google.rpc.Status shape. */
  failNext(n: number, status?: number, op?: GeminiOp): void
  /** Next n requests of `op` answer 429 RESOURCE_EXHAUSTED with Retry-After. */
  rateLimitNext(n: number, retryAfterSeconds?: number, op?: GeminiOp): void
  /** The next chunk request stores its first `bytes` bytes, then answers 503 UNAVAILABLE. */
  interruptNextChunkAfter(bytes: number): void
  readonly files: Map<string, GeminiFile>
  /** Completed uploads: what arrived, hashed as it streamed. */
  readonly uploads: Array<{ name: string; bytes: number; sha256: string; chunks: number; wireBytes: number }>
  readonly requests: Record<GeminiOp | 'unknown', number>
  readonly deletes: string[]
  /** Chunk offsets as the client sent them, per session. */
  readonly offsets: Map<string, number[]>
  addFile(file: Partial<GeminiFile> & { displayName: string }): GeminiFile
  close(): Promise<void>
}

const MB = 1024 * 1024
const storageStatus: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  503: 'UNAVAILABLE',
}
/** The guide: "Files are stored for 48 hours." */
const keepMs = 48 * 3600 * 1000

export async function startFakeGemini(options: { apiKey?: string } = {}): Promise<FakeGemini> {
  const apiKey = options.apiKey ?? `gemini-${randomBytes(6).toString('hex')}`
  const sessions = new Map<string, Session>()
  const files = new Map<string, GeminiFile>()
  const polls = new Map<string, number>()
  const uploads: FakeGemini['uploads'] = []
  const deletes: string[] = []
  const offsets = new Map<string, number[]>()
  const requests: FakeGemini['requests'] = { start: 0, chunk: 0, query: 0, get: 0, list: 0, delete: 0, unknown: 0 }
  const failures = new FailureQueue<GeminiOp>()
  let interruptAfter: number | null = null
  let baseUrl = ''

  const error = (res: ServerResponse, code: number, message: string, headers: Record<string, string> = {}) => {
    res.writeHead(code, { 'content-type': 'application/json; charset=UTF-8', ...headers })
    res.end(JSON.stringify({ error: { code, message, status: storageStatus[code] ?? 'UNKNOWN' } }))
  }
  const json = (res: ServerResponse, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(200, { 'content-type': 'application/json; charset=UTF-8', ...headers })
    res.end(JSON.stringify(body))
  }

  function newFile(s: {
    id: string
    displayName: string
    mimeType: string
    bytes: number
    sha256: Buffer
  }): GeminiFile {
    const now = new Date()
    return {
      name: `files/${s.id}`,
      displayName: s.displayName,
      mimeType: s.mimeType,
      sizeBytes: String(s.bytes),
      createTime: now.toISOString(),
      updateTime: now.toISOString(),
      expirationTime: new Date(now.getTime() + fake.keepMs).toISOString(),
      sha256Hash: s.sha256.toString('base64'),
      uri: `${baseUrl}/v1beta/files/${s.id}`,
      state: fake.processingPolls > 0 ? 'PROCESSING' : fake.failProcessing ? 'FAILED' : 'ACTIVE',
      source: 'UPLOADED',
      ...(fake.processingPolls === 0 && fake.failProcessing
        ? { error: { code: 400, message: fake.failProcessing } }
        : {}),
    }
  }

  /** A GET moves a PROCESSING file along: after `processingPolls` reads it is ACTIVE (or FAILED). */
  function observe(file: GeminiFile): GeminiFile {
    if (file.state !== 'PROCESSING') return file
    const seen = (polls.get(file.name) ?? 0) + 1
    polls.set(file.name, seen)
    if (seen > fake.processingPolls) {
      file.state = fake.failProcessing ? 'FAILED' : 'ACTIVE'
      if (fake.failProcessing) file.error = { code: 400, message: fake.failProcessing }
      file.updateTime = new Date().toISOString()
    }
    return file
  }

  async function readChunk(req: IncomingMessage, session: Session, limit: number | null): Promise<boolean> {
    // Streams the chunk into the session's hash. With `limit`, only that many bytes are kept: the rest
    // is read and dropped (not cut off mid-send), as a server that failed part-way through would.
    let room = limit ?? Number.POSITIVE_INFINITY
    for await (const data of req as AsyncIterable<Buffer>) {
      session.wire += data.length
      const part = data.subarray(0, Math.min(data.length, room))
      session.hash.update(part)
      session.received += part.length
      room -= part.length
    }
    return limit === null || room > 0
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://fake')
    const command = String(req.headers['x-goog-upload-command'] ?? '')
      .split(',')
      .map((c) => c.trim())
    const sessionMatch = /^\/upload\/v1beta\/files\/sessions\/([a-f0-9]+)$/.exec(url.pathname)
    const fileMatch = /^\/v1beta\/files\/([a-z0-9-]+)$/.exec(url.pathname)
    const op: GeminiOp | 'unknown' =
      req.method === 'POST' && url.pathname === '/upload/v1beta/files'
        ? 'start'
        : sessionMatch && command.includes('query')
          ? 'query'
          : sessionMatch
            ? 'chunk'
            : req.method === 'GET' && url.pathname === '/v1beta/files'
              ? 'list'
              : fileMatch && req.method === 'GET'
                ? 'get'
                : fileMatch && req.method === 'DELETE'
                  ? 'delete'
                  : 'unknown'
    requests[op]++
    if (op === 'unknown') return error(res, 404, `Method not found: ${req.method} ${url.pathname}`)
    if (!(await passSwitches(fake, op))) return
    // The upload session URL carries its own authority, as Google's does; every other call needs the key.
    if (op !== 'chunk' && op !== 'query') {
      const given = req.headers['x-goog-api-key'] ?? url.searchParams.get('key')
      if (given !== apiKey) {
        req.resume()
        return error(res, 400, 'API key not valid. Please pass a valid API key.')
      }
    }
    const failure = failures.take(op)
    if (failure) {
      req.resume()
      return error(
        res,
        failure.status,
        failure.status === 429
          ? 'Resource has been exhausted (e.g. check quota).'
          : 'The service is currently unavailable.',
        failure.retryAfter !== undefined ? { 'retry-after': String(failure.retryAfter) } : {},
      )
    }

    switch (op) {
      case 'start': {
        let body = ''
        for await (const chunk of req as AsyncIterable<Buffer>) body += chunk.toString('utf8')
        if (req.headers['x-goog-upload-protocol'] !== 'resumable' || !command.includes('start')) {
          return error(res, 400, 'Invalid upload protocol: expected resumable start')
        }
        // The size may be left out when the client does not know it yet (a body streamed through):
        // Google's resumable protocol takes it then from the finalizing chunk
        // (https://cloud.google.com/storage/docs/performing-resumable-uploads#chunked-upload: the
        // total size may be unknown until the last chunk).
        const lengthHeader = req.headers['x-goog-upload-header-content-length']
        const declaredBytes = lengthHeader === undefined ? null : Number(lengthHeader)
        if (declaredBytes !== null && (!Number.isSafeInteger(declaredBytes) || declaredBytes < 0)) {
          return error(res, 400, 'X-Goog-Upload-Header-Content-Length is not a size')
        }
        if (declaredBytes !== null && declaredBytes > fake.maxFileBytes)
          return error(res, 400, `File size exceeds the limit of ${fake.maxFileBytes}`)
        if (fake.quotaExceeded) return error(res, 429, 'Storage quota for the project has been exhausted.')
        let displayName = ''
        try {
          displayName = String(
            (JSON.parse(body || '{}') as { file?: { display_name?: string } }).file?.display_name ?? '',
          )
        } catch {
          return error(res, 400, 'Invalid JSON payload received.')
        }
        const id = randomBytes(8).toString('hex')
        sessions.set(id, {
          id,
          displayName,
          mimeType: String(req.headers['x-goog-upload-header-content-type'] ?? 'application/octet-stream'),
          declaredBytes,
          received: 0,
          wire: 0,
          hash: createHash('sha256'),
          finalized: false,
        })
        offsets.set(id, [])
        res.writeHead(200, {
          'x-goog-upload-url': `${baseUrl}/upload/v1beta/files/sessions/${id}`,
          'x-goog-upload-status': 'active',
          'x-goog-upload-chunk-granularity': String(256 * 1024),
        })
        return res.end()
      }
      case 'query': {
        const session = sessions.get(sessionMatch?.[1] ?? '')
        if (!session) return error(res, 404, 'Upload session not found')
        res.writeHead(200, {
          'x-goog-upload-status': session.finalized ? 'final' : 'active',
          'x-goog-upload-size-received': String(session.received),
        })
        return res.end()
      }
      case 'chunk': {
        const session = sessions.get(sessionMatch?.[1] ?? '')
        if (!session || session.finalized) {
          req.resume()
          return error(res, 404, 'Upload session not found')
        }
        const offset = Number(req.headers['x-goog-upload-offset'])
        offsets.get(session.id)?.push(offset)
        if (!command.includes('upload') || offset !== session.received) {
          req.resume()
          return error(res, 400, `Invalid upload offset ${offset}: ${session.received} bytes received so far`)
        }
        const limit = interruptAfter
        interruptAfter = null
        if (!(await readChunk(req, session, limit))) return error(res, 503, 'The service is currently unavailable.')
        if (session.received > (session.declaredBytes ?? fake.maxFileBytes)) {
          return error(res, 400, 'Received more bytes than X-Goog-Upload-Header-Content-Length declared')
        }
        if (!command.includes('finalize')) {
          res.writeHead(200, {
            'x-goog-upload-status': 'active',
            'x-goog-upload-size-received': String(session.received),
          })
          return res.end()
        }
        if (session.declaredBytes !== null && session.received !== session.declaredBytes) {
          return error(res, 400, `Finalized at ${session.received} bytes, ${session.declaredBytes} declared`)
        }
        session.finalized = true
        const digest = session.hash.digest()
        const file = newFile({ ...session, bytes: session.received, sha256: digest })
        files.set(file.name, file)
        uploads.push({
          name: file.name,
          bytes: session.received,
          sha256: digest.toString('hex'),
          chunks: offsets.get(session.id)?.length ?? 0,
          wireBytes: session.wire,
        })
        return json(res, { file }, { 'x-goog-upload-status': 'final' })
      }
      case 'get': {
        const file = files.get(`files/${fileMatch?.[1]}`)
        if (!file) return error(res, 404, `File files/${fileMatch?.[1]} does not exist.`)
        return json(res, observe(file))
      }
      case 'delete': {
        const name = `files/${fileMatch?.[1]}`
        if (!files.delete(name)) return error(res, 404, `File ${name} does not exist.`)
        deletes.push(name)
        return json(res, {})
      }
      case 'list': {
        const pageSize = Math.min(100, Math.max(1, Number(url.searchParams.get('pageSize') ?? 10) || 10))
        const all = [...files.values()]
        const start = Number(url.searchParams.get('pageToken') ?? 0) || 0
        const page = all.slice(start, start + pageSize)
        const next = start + pageSize < all.length ? { nextPageToken: String(start + pageSize) } : {}
        return json(res, { files: page, ...next })
      }
    }
  }

  const loopback = await serveOnLoopback(handle, (res, err) => error(res, 500, `fake failure: ${err.message}`))
  baseUrl = loopback.origin

  const fake: FakeGemini = {
    baseUrl,
    apiKey,
    latencyMs: 0,
    hang: false,
    ops: null,
    quotaExceeded: false,
    processingPolls: 0,
    failProcessing: null,
    // The guide: "The maximum size per file is 2 GB."
    maxFileBytes: 2048 * MB,
    keepMs,
    failNext(n, status = 503, op) {
      failures.add(n, status, op)
    },
    rateLimitNext(n, retryAfterSeconds = 1, op) {
      failures.add(n, 429, op, retryAfterSeconds)
    },
    interruptNextChunkAfter(bytes) {
      interruptAfter = bytes
    },
    files,
    uploads,
    requests,
    deletes,
    offsets,
    addFile(partial) {
      const id = randomBytes(8).toString('hex')
      const file = {
        ...newFile({
          id,
          displayName: partial.displayName,
          mimeType: 'application/pdf',
          bytes: 0,
          sha256: Buffer.alloc(32),
        }),
        state: 'ACTIVE' as const,
        ...partial,
      }
      files.set(file.name, file)
      return file
    },
    close: () => loopback.close(),
  }
  return fake
}
