/**
 * Fake provider files APIs on loopback, real node:http servers following the documented shapes:
 * Kimi (platform.moonshot.cn/docs/api/files, platform.kimi.ai/docs/api/files-upload, base /v1),
 * GLM (docs.bigmodel.cn/api-reference/文件-api/上传文件 and the error codes at
 * docs.bigmodel.cn/cn/api/api-code, base /api/paas/v4) and OpenAI
 * (platform.openai.com/docs/api-reference/files, base /v1). Each behaviour cites its page.
 * Multipart bodies are parsed as they stream in (busboy): bytes are counted and hashed, never
 * held whole. Switches inject failures per operation; records let tests assert what arrived.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Readable } from 'node:stream'
import { Busboy } from '@fastify/busboy'

export type FakeKind = 'kimi' | 'glm' | 'openai'
export type QuotaMode = boolean | 'file-count' | 'balance' | 'usage-limit' | 'plan-expired'
export type FakeOp = 'upload' | 'list' | 'retrieve' | 'delete' | 'content'
/**
 * A file object that breaks the documented shape, as a broken proxy or a provider bug might send:
 * the id a non-empty string, `bytes` an integer (OpenAI's file object,
 * platform.openai.com/docs/api-reference/files/object; Kimi's, platform.moonshot.ai/docs/api/files;
 * GLM's, docs.bigmodel.cn 上传文件 response fields), the reply a JSON object.
 */
export type MalformedReply =
  | 'id-nul'
  | 'id-too-long'
  | 'no-id'
  | 'bytes-negative'
  | 'bytes-not-a-number'
  | 'not-an-object'

export interface FakeFile {
  id: string
  object: 'file'
  bytes: number
  created_at: number
  filename: string
  purpose: string
  /** Kimi only: GLM's file object has no status (docs.bigmodel.cn 上传文件, response fields). */
  status?: string
  status_details: string
  /**
   * OpenAI only: "The Unix timestamp (in seconds) for when the file will expire" (the file object,
   * platform.openai.com/docs/api-reference/files/object); null when it is kept until deleted.
   */
  expires_at?: number | null
  /** Served by /content: the first bytes of the upload, or a stream a test controls. */
  content?: string | (() => Readable)
  /**
   * The Content-Type the content endpoint labels the bytes with. The files APIs return "the file
   * content" with no documented type (platform.openai.com/docs/api-reference/files/retrieve-contents,
   * platform.moonshot.ai/docs/api/files), so a test may make it anything, e.g. text/html.
   */
  contentType?: string
  mimeType?: string
}

export interface FakeUpload {
  id: string
  filename: string
  purpose: string
  bytes: number
  sha256: string
  /** The `expires_after[seconds]` the upload carried (OpenAI), when it carried one. */
  expiresAfterSeconds?: number
}

export interface FakeRequest {
  op: FakeOp | 'unknown'
  method: string
  path: string
  /** ms since epoch, when the request arrived */
  at: number
}

export interface FakeProvider {
  readonly kind: FakeKind
  readonly baseUrl: string
  readonly apiKey: string | undefined
  /** Delay before answering. */
  latencyMs: number
  /** Accept and never answer (until cleared, or the server closes). */
  hang: boolean
  /** Restricts `latencyMs` and `hang` to these operations; null = all. */
  ops: FakeOp[] | null
  /**
   * true: Kimi 429 exceeded_current_quota_error, GLM 429 code 1113, OpenAI 429 insufficient_quota;
   * 'file-count': the 400 file-count message; 'balance': Kimi 403 insufficient balance;
   * 'usage-limit' / 'plan-expired': GLM 1308 / 1309.
   */
  quotaExceeded: QuotaMode
  /** Content filter: 400 with this message (true = a default one). */
  rejectContent: boolean | string
  /** Live file cap (Kimi documents 1,000). */
  maxFiles: number
  maxFileBytes: number
  /** Next n requests of `op` (all ops when omitted) answer `status`. */
  failNext(n: number, status?: number, op?: FakeOp | FakeOp[]): void
  /** Next n requests answer 429 with Retry-After and the provider's retryable body. */
  rateLimitNext(n: number, retryAfterSeconds?: number, op?: FakeOp | FakeOp[]): void
  deleteFailNext(n: number, status?: number): void
  /**
   * The next n answers of `op` (upload by default; list, retrieve) carry a file object malformed as
   * `how`. An upload still makes its copy, as the provider would have: under the malformed id for
   * the id cases (so a delete by that id removes it), under its own id otherwise.
   */
  malformedNext(n: number, how: MalformedReply, op?: FakeOp | FakeOp[]): void
  /** Next n requests of `op` answer this documented error, in the provider's error shape. */
  errorNext(
    n: number,
    error: { status: number; code?: string; type?: string; message: string },
    op?: FakeOp | FakeOp[],
  ): void
  readonly uploads: FakeUpload[]
  readonly deletes: string[]
  readonly requests: Record<FakeOp | 'unknown', number>
  readonly log: FakeRequest[]
  readonly files: Map<string, FakeFile>
  /** Most requests of each operation in progress at once since the last reset. */
  readonly maxInFlight: Record<FakeOp | 'unknown', number>
  addFile(file: Partial<FakeFile> & { filename: string }): FakeFile
  /**
   * Drops a file behind filegate's back, as a provider does that purges files on its own: Gemini
   * deletes every file after 48 hours (ai.google.dev/gemini-api/docs/files), and a Kimi or GLM
   * account purged or a key moved to another account loses them all. Retrieve then answers 404
   * and the listing leaves it out, as for any unknown id. False when there was no such file.
   */
  forget(id: string): boolean
  /**
   * Called with each list request's `after` cursor (undefined for the first page) before the page
   * is made (and awaited), so that a test can change things between the pages of a walk, as other
   * clients do.
   */
  onList: ((after: string | undefined) => void | Promise<void>) | undefined
  reset(): void
  close(): Promise<void>
}

const BASE_PATH: Record<FakeKind, string> = { kimi: '/v1', glm: '/api/paas/v4', openai: '/v1' }
const MB = 1024 * 1024
const MAX_FILE_BYTES: Record<FakeKind, number> = { kimi: 100 * MB, glm: 20 * MB, openai: 512 * MB }
const CONTENT_PREFIX = 64 * 1024

interface PurposeDoc {
  maxBytes?: number
  maxFiles?: number
  extensions?: readonly string[]
  /** What GET /files/{id}/content serves for this purpose. */
  content: 'extracted' | 'raw' | 'none'
}

/**
 * The purposes each fake accepts, as documented. Kimi: file-extract, image, video
 * (platform.moonshot.cn/docs/api/files) and batch (platform.kimi.ai/docs/api/files-upload); only
 * file-extract has content (the extracted text as JSON). GLM: docs.bigmodel.cn 上传文件 (sizes, counts
 * and formats per purpose) and 获取文件内容 ("只支持 batch 与 file-extract": batch files come back as the
 * bytes, file-extract as the extracted text, docs.bigmodel.cn/cn/guide/tools/file-extract).
 */
const GLM_OFFICE = ['pdf', 'docx', 'doc', 'xls', 'xlsx', 'txt', 'png', 'jpg', 'jpeg', 'csv']
const PURPOSES: Record<Exclude<FakeKind, 'openai'>, Record<string, PurposeDoc>> = {
  kimi: {
    'file-extract': { content: 'extracted' },
    image: { content: 'none' },
    video: { content: 'none' },
    batch: { content: 'none' },
  },
  glm: {
    batch: { maxBytes: 100 * MB, maxFiles: 1000, extensions: ['jsonl'], content: 'raw' },
    'file-extract': {
      maxBytes: 50 * MB,
      maxFiles: 100,
      extensions: ['pdf', 'docx', 'doc', 'xls', 'xlsx', 'ppt', 'pptx', 'png', 'jpg', 'jpeg', 'csv'],
      content: 'extracted',
    },
    'code-interpreter': { maxBytes: 20 * MB, maxFiles: 100, extensions: GLM_OFFICE, content: 'none' },
    agent: { maxBytes: 20 * MB, maxFiles: 1000, extensions: GLM_OFFICE, content: 'none' },
    'voice-clone-input': { extensions: ['mp3', 'wav'], content: 'none' },
  },
}

/**
 * The OpenAI purposes whose files its content endpoint serves. OpenAI's reference documents the
 * endpoint for any file id; its answers per purpose, as developers report them
 * (community.openai.com/t/file-uploads-error-why-can-t-i-download-files-with-purpose-user-data/1357013):
 * batch and vision files come back as uploaded, any other purpose is a 400 "Not allowed to download
 * files of purpose: <purpose>".
 */
const OPENAI_DOWNLOADABLE = new Set(['batch', 'vision'])

const extensionOf = (filename: string) => {
  const dot = filename.lastIndexOf('.')
  return dot > 0 ? filename.slice(dot + 1).toLowerCase() : ''
}

interface Injection {
  remaining: number
  ops: FakeOp[] | null
  status: number
  retryAfterSeconds?: number
  spec?: ErrorSpec
}

/** The file object as `how` breaks it (see MalformedReply). */
function malform(view: Record<string, unknown>, how: MalformedReply): unknown {
  switch (how) {
    case 'id-nul':
      return { ...view, id: `${String(view.id)}\u0000` }
    case 'id-too-long':
      return { ...view, id: `${String(view.id)}${'x'.repeat(300)}` }
    case 'no-id': {
      const { id: _dropped, ...rest } = view
      return rest
    }
    case 'bytes-negative':
      return { ...view, bytes: -1 }
    case 'bytes-not-a-number':
      return { ...view, bytes: 'many' }
    case 'not-an-object':
      return 'ok'
  }
}

/** The id a malformed upload reply names for its copy (the fake keeps the copy under it). */
function malformedId(id: string, how: MalformedReply): string {
  const broken = malform({ id }, how) as { id?: unknown } | string
  return typeof broken === 'object' && typeof broken.id === 'string' ? broken.id : id
}

interface ErrorSpec {
  status: number
  /** Kimi/OpenAI `type` */
  type: string
  /** GLM business code, OpenAI code */
  code: string | null
  message: string
}

function errorBody(kind: FakeKind, e: ErrorSpec): unknown {
  if (kind === 'kimi') return { error: { type: e.type, message: e.message } }
  if (kind === 'glm') return { error: { code: e.code ?? String(e.status), message: e.message } }
  return { error: { message: e.message, type: e.type, param: null, code: e.code } }
}

const asList = (op: FakeOp | FakeOp[] | undefined) => (op === undefined ? null : Array.isArray(op) ? op : [op])

export async function startFakeProvider(opts: { kind: FakeKind; apiKey?: string }): Promise<FakeProvider> {
  const { kind, apiKey } = opts
  const basePath = BASE_PATH[kind]
  const sockets = new Set<Socket>()
  const injections: Injection[] = []
  const malformations: Array<{ remaining: number; how: MalformedReply; ops: FakeOp[] }> = []
  /** The malformation queued for `op`, counted down; undefined when none. */
  const takeMalformation = (op: FakeOp): MalformedReply | undefined => {
    const found = malformations.find((m) => m.remaining > 0 && m.ops.includes(op))
    if (found) found.remaining--
    return found?.how
  }
  let seq = 0

  const emptyCounts = (): Record<FakeOp | 'unknown', number> => ({
    upload: 0,
    list: 0,
    retrieve: 0,
    delete: 0,
    content: 0,
    unknown: 0,
  })

  const state = {
    latencyMs: 0,
    hang: false,
    ops: null as FakeOp[] | null,
    quotaExceeded: false as QuotaMode,
    rejectContent: false as boolean | string,
    maxFiles: kind === 'kimi' ? 1000 : Number.POSITIVE_INFINITY,
    maxFileBytes: MAX_FILE_BYTES[kind],
  }
  const hooks: { onList: FakeProvider['onList'] } = { onList: undefined }
  const records = {
    uploads: [] as FakeUpload[],
    deletes: [] as string[],
    requests: emptyCounts(),
    log: [] as FakeRequest[],
    files: new Map<string, FakeFile>(),
    maxInFlight: emptyCounts(),
  }
  const inFlight = emptyCounts()

  const newId = () => {
    const suffix = `${Date.now().toString(36)}${(seq++).toString(36)}${randomBytes(4).toString('hex')}`
    return kind === 'kimi' ? `cv${suffix}` : `file-${suffix}`
  }

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    const text = JSON.stringify(body)
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(text)),
      ...headers,
    })
    res.end(text)
  }
  const fail = (res: ServerResponse, e: ErrorSpec, headers?: Record<string, string>) =>
    send(res, e.status, errorBody(kind, e), headers)

  const route = (method: string, path: string): { op: FakeOp | 'unknown'; id?: string } => {
    if (!path.startsWith(`${basePath}/files`)) return { op: 'unknown' }
    const rest = path.slice(basePath.length + '/files'.length)
    if (rest === '' || rest === '/') return { op: method === 'POST' ? 'upload' : method === 'GET' ? 'list' : 'unknown' }
    const m = /^\/([^/]+)(\/content)?$/.exec(rest)
    if (!m?.[1]) return { op: 'unknown' }
    const id = decodeURIComponent(m[1])
    if (m[2]) return method === 'GET' ? { op: 'content', id } : { op: 'unknown' }
    if (method === 'DELETE') return { op: 'delete', id }
    // GLM documents no retrieve: the path does not exist there.
    if (method === 'GET' && kind !== 'glm') return { op: 'retrieve', id }
    return { op: 'unknown' }
  }

  const drain = (req: IncomingMessage) =>
    new Promise<void>((resolve) => {
      if (req.readableEnded) return resolve()
      req.on('end', resolve)
      req.on('error', () => resolve())
      req.on('close', () => resolve())
      req.resume()
    })

  interface ParsedUpload {
    purpose: string | undefined
    /** OpenAI's `expires_after` as form fields: expires_after[anchor], expires_after[seconds]. */
    expiresAfter: { anchor?: string; seconds?: string }
    file: { filename: string; mimeType: string; bytes: number; sha256: string; prefix: Buffer } | undefined
  }

  const parseUpload = (req: IncomingMessage) =>
    new Promise<ParsedUpload>((resolve, reject) => {
      const result: ParsedUpload = { purpose: undefined, expiresAfter: {}, file: undefined }
      let bb: ReturnType<typeof Busboy>
      try {
        bb = Busboy({ headers: req.headers as { 'content-type': string }, limits: { files: 1, fields: 8 } })
      } catch (err) {
        reject(err)
        return
      }
      let pendingFile: Promise<void> = Promise.resolve()
      bb.on('field', (name, value) => {
        if (name === 'purpose') result.purpose = value
        if (name === 'expires_after[anchor]') result.expiresAfter.anchor = value
        if (name === 'expires_after[seconds]') result.expiresAfter.seconds = value
      })
      bb.on('file', (name, stream, filename, _encoding, mimeType) => {
        if (name !== 'file') {
          stream.resume()
          return
        }
        const hash = createHash('sha256')
        let bytes = 0
        const prefix: Buffer[] = []
        let prefixLength = 0
        pendingFile = new Promise<void>((done) => {
          stream.on('data', (chunk: Buffer) => {
            bytes += chunk.length
            hash.update(chunk)
            if (prefixLength < CONTENT_PREFIX) {
              prefix.push(chunk.subarray(0, CONTENT_PREFIX - prefixLength))
              prefixLength += Math.min(chunk.length, CONTENT_PREFIX - prefixLength)
            }
          })
          stream.on('end', () => {
            result.file = { filename, mimeType, bytes, sha256: hash.digest('hex'), prefix: Buffer.concat(prefix) }
            done()
          })
        })
      })
      bb.on('finish', () => {
        pendingFile.then(() => resolve(result), reject)
      })
      bb.on('error', reject)
      req.on('aborted', () => reject(new Error('client aborted')))
      req.pipe(bb)
    })

  // 401s: Kimi invalid_authentication_error (platform.moonshot.ai/docs/api/errors), GLM 1000/1001
  // (docs.bigmodel.cn/cn/api/api-code), OpenAI invalid_api_key (platform.openai.com/docs/guides/error-codes).
  const authError = (req: IncomingMessage): ErrorSpec | undefined => {
    if (!apiKey) return undefined
    const header = req.headers.authorization ?? ''
    const presented = header.startsWith('Bearer ') ? header.slice(7) : ''
    if (presented === apiKey) return undefined
    // Real providers echo (part of) the key presented; this fake echoes all of it, so a test can
    // show that nothing of it reaches our error messages.
    const message = presented ? `Incorrect API key provided: ${presented}` : 'Authorization header is missing'
    if (kind === 'kimi') return { status: 401, type: 'invalid_authentication_error', code: null, message }
    if (kind === 'glm') return { status: 401, type: '', code: presented ? '1000' : '1001', message }
    return { status: 401, type: 'invalid_request_error', code: 'invalid_api_key', message }
  }

  const takeInjection = (op: FakeOp | 'unknown'): Injection | undefined => {
    if (op === 'unknown') return undefined
    const found = injections.find((i) => i.remaining > 0 && (i.ops === null || i.ops.includes(op)))
    if (found) found.remaining--
    return found
  }

  // Transient 429s: Kimi rate_limit_reached_error, GLM 1302 "concurrency too high", OpenAI
  // rate_limit_exceeded (the same three error pages).
  const rateLimitSpec = (): ErrorSpec => {
    if (kind === 'kimi') {
      return {
        status: 429,
        type: 'rate_limit_reached_error',
        code: null,
        message: 'Your account reached max request rate, please try again later',
      }
    }
    if (kind === 'glm') return { status: 429, type: '', code: '1302', message: 'High concurrency, please slow down' }
    return { status: 429, type: 'requests', code: 'rate_limit_exceeded', message: 'Rate limit reached for requests' }
  }

  // 5xx bodies: GLM's code table lists 500 "internal error"; the others document only the status.
  const serverErrorSpec = (status: number): ErrorSpec => ({
    status,
    type: 'server_error',
    code: kind === 'glm' ? '500' : null,
    message: 'internal error, secret stack frame at /srv/provider/app.py:42',
  })

  const notFoundSpec = (id: string): ErrorSpec => ({
    status: 404,
    type: kind === 'kimi' ? 'resource_not_found_error' : 'invalid_request_error',
    code: kind === 'glm' ? '404' : null,
    message: `No such File object: ${id}`,
  })

  // GLM's file object is {id, object, bytes, created_at, filename, purpose}: no status
  // (docs.bigmodel.cn 上传文件, response). Kimi adds status and status_details (files-list).
  const view = (f: FakeFile) => ({
    id: f.id,
    object: 'file',
    bytes: f.bytes,
    created_at: f.created_at,
    filename: f.filename,
    purpose: f.purpose,
    ...(kind !== 'glm' && f.status !== undefined ? { status: f.status } : {}),
    ...(kind === 'kimi' ? { status_details: f.status_details } : {}),
    ...(kind === 'openai' ? { expires_at: f.expires_at ?? null } : {}),
  })

  /**
   * OpenAI's `expires_after` (platform.openai.com/docs/api-reference/files/create): anchor
   * `created_at`, seconds "between 3600 (1 hour) and 2592000 (30 days)"; without it "files with
   * purpose=batch expire after 30 days and all other files are persisted until they are manually
   * deleted". The unix expiry, null for none, or the 400 a bad policy gets (invalid_request_error,
   * param expires_after, as the error-codes guide shapes a bad parameter).
   */
  const expiresAt = (purpose: string, policy: ParsedUpload['expiresAfter']): number | null | ErrorSpec => {
    if (kind !== 'openai') return null
    const now = Math.floor(Date.now() / 1000)
    if (policy.anchor === undefined && policy.seconds === undefined) {
      return purpose === 'batch' ? now + 2_592_000 : null
    }
    const seconds = Number(policy.seconds)
    if (policy.anchor !== 'created_at' || !Number.isInteger(seconds) || seconds < 3600 || seconds > 2_592_000) {
      return {
        status: 400,
        type: 'invalid_request_error',
        code: 'invalid_value',
        message: 'expires_after: anchor must be created_at and seconds between 3600 and 2592000',
      }
    }
    return now + seconds
  }

  /** Refusals of the purpose itself, before the bytes count (each provider's upload reference). */
  const purposeRefusal = (
    purpose: string,
    file: { filename: string; bytes: number },
  ): { spec: ErrorSpec } | undefined => {
    if (kind === 'openai') return undefined
    const doc = Object.hasOwn(PURPOSES[kind], purpose) ? PURPOSES[kind][purpose] : undefined
    if (!doc) {
      return {
        spec: { status: 400, type: 'invalid_request_error', code: '1214', message: `invalid purpose: ${purpose}` },
      }
    }
    if (kind !== 'glm') return undefined
    // Formats, size and count per purpose (上传文件). The answer to a refused format is not
    // documented; 1214 is the code table's "invalid ${field} parameter".
    if (doc.extensions && !doc.extensions.includes(extensionOf(file.filename))) {
      return { spec: { status: 400, type: '', code: '1214', message: `file format not supported for ${purpose}` } }
    }
    if (doc.maxBytes !== undefined && file.bytes > doc.maxBytes) {
      return {
        spec: { status: 435, type: '', code: '435', message: `File size exceeds ${Math.round(doc.maxBytes / MB)}MB` },
      }
    }
    const held = [...records.files.values()].filter((f) => f.purpose === purpose).length
    if (doc.maxFiles !== undefined && held >= doc.maxFiles) {
      return {
        spec: {
          status: 400,
          type: '',
          code: '1214',
          message: `The number of files exceeded the max file count ${doc.maxFiles} for ${purpose}`,
        },
      }
    }
    return undefined
  }

  /** The documented answers of an account out of money or allowance. */
  const quotaSpec = (mode: QuotaMode): ErrorSpec | undefined => {
    if (kind === 'glm') {
      // docs.bigmodel.cn/cn/api/api-code: 1113 in arrears; 1308 usage limit reached, resets at
      // next_flush_time; 1309 GLM Coding Plan expired. HTTP 429 (docs.z.ai/api-reference/api-code).
      if (mode === 'usage-limit') {
        return {
          status: 429,
          type: '',
          code: '1308',
          message: 'Usage limit reached for 5 hour. Your limit will reset at 2026-11-27 18:00:00',
        }
      }
      if (mode === 'plan-expired') {
        return { status: 429, type: '', code: '1309', message: 'Your GLM Coding Plan package has expired' }
      }
      if (mode === true)
        return { status: 429, type: '', code: '1113', message: 'Your account is in arrears, please recharge' }
      return undefined
    }
    if (kind === 'kimi') {
      // kimi.com/help/kimi-api/api-error-codes: "403 Forbidden (insufficient balance)".
      if (mode === 'balance') {
        return {
          status: 403,
          type: 'exceeded_current_quota_error',
          code: null,
          message: 'Your account is suspended due to insufficient balance, please recharge your account',
        }
      }
      if (mode === true) {
        return {
          status: 429,
          type: 'exceeded_current_quota_error',
          code: null,
          message: 'Your account exceeded current quota, please check your plan and billing details',
        }
      }
      return undefined
    }
    // platform.openai.com/docs/guides/error-codes: 429 insufficient_quota.
    if (mode === true) {
      return {
        status: 429,
        type: 'insufficient_quota',
        code: 'insufficient_quota',
        message: 'You exceeded your current quota',
      }
    }
    return undefined
  }

  const handleUpload = async (req: IncomingMessage, res: ServerResponse) => {
    let parsed: ParsedUpload
    try {
      parsed = await parseUpload(req)
    } catch {
      await drain(req)
      return fail(res, { status: 400, type: 'invalid_request_error', code: '1210', message: 'Invalid multipart body' })
    }
    const { file, purpose } = parsed
    if (!file)
      return fail(res, { status: 400, type: 'invalid_request_error', code: '1214', message: 'file is required' })
    if (!purpose) {
      return fail(res, { status: 400, type: 'invalid_request_error', code: '1214', message: 'purpose is required' })
    }
    if (file.bytes === 0) {
      return fail(res, {
        status: 400,
        type: 'invalid_request_error',
        code: '1214',
        message: 'File size is zero, please confirm and re-upload the file',
      })
    }
    const refused = purposeRefusal(purpose, file)
    if (refused) return fail(res, refused.spec)
    const expiry = expiresAt(purpose, parsed.expiresAfter)
    if (typeof expiry === 'object' && expiry !== null) return fail(res, expiry)
    if (file.bytes > state.maxFileBytes) {
      const mb = Math.round(state.maxFileBytes / MB)
      if (kind === 'glm') return fail(res, { status: 435, type: '', code: '435', message: `File size exceeds ${mb}MB` })
      return fail(res, {
        status: 400,
        type: 'invalid_request_error',
        code: null,
        message: `File size is too large, max file size is ${mb}MB, please confirm and re-upload the file`,
      })
    }
    const quota = quotaSpec(state.quotaExceeded)
    if (quota) return fail(res, quota)
    if (state.quotaExceeded === 'file-count' || records.files.size >= state.maxFiles) {
      const cap = Number.isFinite(state.maxFiles) ? state.maxFiles : 1000
      return fail(res, {
        status: 400,
        type: 'invalid_request_error',
        code: '1210',
        message: `The number of files you have uploaded exceeded the max file count ${cap}, please delete previous uploaded files`,
      })
    }
    if (state.rejectContent) {
      const message = typeof state.rejectContent === 'string' ? state.rejectContent : 'file content is not allowed'
      return fail(res, {
        status: 400,
        type: kind === 'kimi' ? 'content_filter' : 'invalid_request_error',
        code: kind === 'glm' ? '1301' : 'content_policy_violation',
        message,
      })
    }
    const id = newId()
    const stored: FakeFile = {
      id,
      object: 'file',
      bytes: file.bytes,
      created_at: Math.floor(Date.now() / 1000),
      filename: file.filename,
      purpose,
      // Kimi's current files-upload page shows status "ready" (older examples "ok"); OpenAI "processed".
      ...(kind === 'kimi' ? { status: 'ready' } : kind === 'openai' ? { status: 'processed' } : {}),
      status_details: '',
      mimeType: file.mimeType,
      ...(contentKind(purpose) !== 'none' ? { content: file.prefix.toString('utf8') } : {}),
    }
    if (kind === 'openai') stored.expires_at = expiry as number | null
    const malformed = takeMalformation('upload')
    const reply = malformed ? malform(view(stored), malformed) : view(stored)
    // The copy is made either way; a malformed id is the only name the reply gives it.
    if (malformed) stored.id = malformedId(id, malformed)
    records.files.set(stored.id, stored)
    const seconds = parsed.expiresAfter.seconds
    records.uploads.push({
      id: stored.id,
      filename: file.filename,
      purpose,
      bytes: file.bytes,
      sha256: file.sha256,
      ...(seconds !== undefined ? { expiresAfterSeconds: Number(seconds) } : {}),
    })
    send(res, 200, reply)
  }

  /** A page's file objects; a malformation queued for list breaks the first (or a made-up one). */
  const listData = (files: FakeFile[]): unknown[] => {
    const data: unknown[] = files.map(view)
    const how = takeMalformation('list')
    if (how) data[0] = malform((data[0] as Record<string, unknown>) ?? view(placeholderFile()), how)
    return data
  }
  const placeholderFile = (): FakeFile => ({
    id: newId(),
    object: 'file',
    bytes: 1,
    created_at: Math.floor(Date.now() / 1000),
    filename: 'placeholder.txt',
    purpose: 'file-extract',
    status_details: '',
  })

  // Kimi: every file at once, no cursor (platform.kimi.ai/docs/api/files-list). GLM: `purpose`,
  // `after`, `limit` 1-100 (docs.bigmodel.cn 文件列表). OpenAI: `limit` 1-10,000, default 10,000, `order`.
  const handleList = async (url: URL, res: ServerResponse) => {
    await hooks.onList?.(url.searchParams.get('after') ?? undefined)
    let all = [...records.files.values()]
    if (kind === 'kimi') return send(res, 200, { object: 'list', data: listData(all) })
    const purpose = url.searchParams.get('purpose')
    if (purpose) all = all.filter((f) => f.purpose === purpose)
    if (kind === 'openai' && url.searchParams.get('order') !== 'asc') all.reverse()
    const after = url.searchParams.get('after')
    if (after) {
      // A cursor naming a file deleted meanwhile: GLM's 文件列表 page (docs.bigmodel.cn) documents
      // nothing either way, and this fake answers an empty page (has_more false), the worst case.
      const index = all.findIndex((f) => f.id === after)
      all = index === -1 ? [] : all.slice(index + 1)
    }
    const maxLimit = kind === 'glm' ? 100 : 10000
    const limit = Number(url.searchParams.get('limit') ?? (kind === 'glm' ? 20 : 10000))
    if (!Number.isInteger(limit) || limit < 1 || limit > maxLimit) {
      return fail(res, {
        status: 400,
        type: 'invalid_request_error',
        code: '1214',
        message: `limit must be 1 to ${maxLimit}`,
      })
    }
    const page = all.slice(0, limit)
    const body: Record<string, unknown> = { object: 'list', data: listData(page), has_more: all.length > limit }
    if (kind === 'openai') {
      body.first_id = page[0]?.id ?? null
      body.last_id = page.at(-1)?.id ?? null
    }
    send(res, 200, body)
  }

  const contentKind = (purpose: string): PurposeDoc['content'] => {
    if (kind === 'openai') return OPENAI_DOWNLOADABLE.has(purpose) ? 'raw' : 'none'
    return Object.hasOwn(PURPOSES[kind], purpose) ? (PURPOSES[kind][purpose] as PurposeDoc).content : 'none'
  }

  const handleContent = (id: string, res: ServerResponse) => {
    const file = records.files.get(id)
    if (!file) return fail(res, notFoundSpec(id))
    // A purpose OpenAI does not serve: its own refusal (OPENAI_DOWNLOADABLE).
    if (kind === 'openai' && contentKind(file.purpose) === 'none') {
      return fail(res, {
        status: 400,
        type: 'invalid_request_error',
        code: null,
        message: `Not allowed to download files of purpose: ${file.purpose}`,
      })
    }
    // A purpose without documented content: what the providers answer is not documented; a 400
    // refusal is what Kimi sends for an image (filegate must not ask at all).
    if (contentKind(file.purpose) === 'none' || !file.content) {
      return fail(res, {
        status: 400,
        type: 'invalid_request_error',
        code: '1214',
        message: `content is not available for files of purpose ${file.purpose}`,
      })
    }
    if (typeof file.content === 'function') {
      res.writeHead(200, { 'content-type': file.contentType ?? 'text/plain; charset=utf-8' })
      file.content().pipe(res)
      return
    }
    // OpenAI, and GLM batch files ("返回文件字节流", 获取文件内容): the bytes as uploaded.
    if (contentKind(file.purpose) === 'raw') {
      const raw = Buffer.from(file.content)
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(raw.length) })
      res.end(raw)
      return
    }
    // file-extract (Kimi files page, GLM file-extract guide): a JSON text with the extracted content.
    send(res, 200, {
      content: file.content,
      file_type: file.mimeType ?? 'text/plain',
      filename: file.filename,
      title: '',
      type: 'file',
    })
  }

  /**
   * OpenAI's Uploads API (platform.openai.com/docs/api-reference/uploads): create
   * `{bytes, filename, mime_type, purpose}` → the Upload (`status: "pending"`); add part (multipart
   * field `data`, at most 64 MB) → `{id, object: "upload.part", created_at, upload_id}`; complete
   * `{part_ids, md5?}`: "The number of bytes uploaded upon completion must match the number of bytes
   * initially specified" → the Upload `completed` with its `file`; cancel → `cancelled`. Parts are
   * kept in memory: the tests send small files with a small part size.
   */
  const uploadsApi = new Map<
    string,
    { bytes: number; filename: string; purpose: string; status: string; parts: Map<string, Buffer>; created: number }
  >()
  const uploadObject = (id: string, file: FakeFile | null = null) => {
    const u = uploadsApi.get(id) as NonNullable<ReturnType<typeof uploadsApi.get>>
    return {
      id,
      object: 'upload',
      bytes: u.bytes,
      created_at: u.created,
      expires_at: u.created + 3600,
      filename: u.filename,
      purpose: u.purpose,
      status: u.status,
      file: file ? view(file) : null,
    }
  }
  const readBody = async (req: IncomingMessage) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    return Buffer.concat(chunks)
  }
  const readPart = (req: IncomingMessage) =>
    new Promise<Buffer | undefined>((resolve, reject) => {
      const bb = Busboy({ headers: req.headers as { 'content-type': string } })
      let data: Buffer | undefined
      bb.on('file', (name, stream) => {
        const chunks: Buffer[] = []
        stream.on('data', (c: Buffer) => chunks.push(c))
        stream.on('end', () => {
          if (name === 'data') data = Buffer.concat(chunks)
        })
      })
      bb.on('finish', () => resolve(data))
      bb.on('error', reject)
      req.pipe(bb)
    })
  const invalid = (message: string): ErrorSpec => ({ status: 400, type: 'invalid_request_error', code: null, message })
  const handleUploadsApi = async (req: IncomingMessage, res: ServerResponse, path: string) => {
    records.log.push({ op: 'unknown', method: req.method ?? 'POST', path, at: Date.now() })
    const m = /^\/v1\/uploads(?:\/([^/]+)(?:\/(parts|complete|cancel))?)?$/.exec(path)
    if (!m || req.method !== 'POST') return fail(res, notFoundSpec(path))
    const [, id, action] = m
    if (!id) {
      const body = JSON.parse((await readBody(req)).toString('utf8') || '{}')
      const uploadId = `upload_${randomBytes(12).toString('hex')}`
      uploadsApi.set(uploadId, {
        bytes: body.bytes,
        filename: body.filename,
        purpose: body.purpose,
        status: 'pending',
        parts: new Map(),
        created: Math.floor(Date.now() / 1000),
      })
      return send(res, 200, uploadObject(uploadId))
    }
    const upload = uploadsApi.get(id)
    if (!upload) {
      await drain(req)
      return fail(res, notFoundSpec(id))
    }
    if (action === 'parts') {
      const data = await readPart(req)
      if (!data) return fail(res, invalid('data is required'))
      if (data.length > 64 * MB) return fail(res, invalid('Each Part can be at most 64 MB'))
      const partId = `part_${randomBytes(12).toString('hex')}`
      upload.parts.set(partId, data)
      return send(res, 200, { id: partId, object: 'upload.part', created_at: upload.created, upload_id: id })
    }
    const body = JSON.parse((await readBody(req)).toString('utf8') || '{}')
    if (action === 'cancel') {
      upload.status = 'cancelled'
      return send(res, 200, uploadObject(id))
    }
    const parts = (body.part_ids as string[]).map((p) => upload.parts.get(p))
    if (parts.some((p) => !p)) return fail(res, invalid('unknown part id'))
    const whole = Buffer.concat(parts as Buffer[])
    if (whole.length !== upload.bytes) return fail(res, invalid('The number of bytes uploaded does not match'))
    if (body.md5 && createHash('md5').update(whole).digest('hex') !== body.md5)
      return fail(res, invalid('md5 mismatch'))
    const fileId = newId()
    const stored: FakeFile = {
      id: fileId,
      object: 'file',
      bytes: whole.length,
      created_at: Math.floor(Date.now() / 1000),
      filename: upload.filename,
      purpose: upload.purpose,
      status: 'processed',
      status_details: '',
      expires_at: null,
    }
    records.files.set(fileId, stored)
    records.uploads.push({
      id: fileId,
      filename: upload.filename,
      purpose: upload.purpose,
      bytes: whole.length,
      sha256: createHash('sha256').update(whole).digest('hex'),
    })
    upload.status = 'completed'
    return send(res, 200, uploadObject(id, stored))
  }

  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://fake')
    if (kind === 'openai' && url.pathname.startsWith('/v1/uploads')) return handleUploadsApi(req, res, url.pathname)
    const { op, id } = route(req.method ?? 'GET', url.pathname)
    records.requests[op]++
    inFlight[op]++
    records.maxInFlight[op] = Math.max(records.maxInFlight[op], inFlight[op])
    res.on('close', () => inFlight[op]--)
    records.log.push({ op, method: req.method ?? 'GET', path: url.pathname, at: Date.now() })
    const targeted = op !== 'unknown' && (state.ops === null || state.ops.includes(op))

    if (state.latencyMs > 0 && targeted) await new Promise((r) => setTimeout(r, state.latencyMs))
    if (state.hang && targeted) {
      req.resume()
      return
    }
    const auth = authError(req)
    const injected = auth ? undefined : takeInjection(op)
    // Read the whole body before answering early, so the client sees the answer and not a reset.
    if (op !== 'upload' || auth || injected) await drain(req)
    if (auth) return fail(res, auth)
    if (injected) {
      if (injected.spec) return fail(res, injected.spec)
      if (injected.status === 429) {
        return fail(res, rateLimitSpec(), {
          ...(injected.retryAfterSeconds !== undefined ? { 'retry-after': String(injected.retryAfterSeconds) } : {}),
        })
      }
      return fail(res, serverErrorSpec(injected.status))
    }

    switch (op) {
      case 'upload':
        return handleUpload(req, res)
      case 'list':
        return handleList(url, res)
      case 'retrieve': {
        const file = id ? records.files.get(id) : undefined
        if (!file) return fail(res, notFoundSpec(id ?? ''))
        const how = takeMalformation('retrieve')
        return send(res, 200, how ? malform(view(file), how) : view(file))
      }
      case 'delete': {
        const file = id ? records.files.get(id) : undefined
        if (!file || !id) return fail(res, notFoundSpec(id ?? ''))
        records.files.delete(id)
        records.deletes.push(id)
        return send(res, 200, { id, object: 'file', deleted: true })
      }
      case 'content':
        return handleContent(id ?? '', res)
      default:
        return fail(res, { status: 404, type: 'resource_not_found_error', code: '404', message: 'Not found' })
    }
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo

  const fake: FakeProvider = {
    kind,
    baseUrl: `http://127.0.0.1:${port}${basePath}`,
    apiKey,
    get latencyMs() {
      return state.latencyMs
    },
    set latencyMs(v) {
      state.latencyMs = v
    },
    get hang() {
      return state.hang
    },
    set hang(v) {
      state.hang = v
    },
    get ops() {
      return state.ops
    },
    set ops(v) {
      state.ops = v
    },
    get quotaExceeded() {
      return state.quotaExceeded
    },
    set quotaExceeded(v) {
      state.quotaExceeded = v
    },
    get rejectContent() {
      return state.rejectContent
    },
    set rejectContent(v) {
      state.rejectContent = v
    },
    get maxFiles() {
      return state.maxFiles
    },
    set maxFiles(v) {
      state.maxFiles = v
    },
    get maxFileBytes() {
      return state.maxFileBytes
    },
    set maxFileBytes(v) {
      state.maxFileBytes = v
    },
    failNext(n, status = 500, op) {
      injections.push({ remaining: n, ops: asList(op), status })
    },
    rateLimitNext(n, retryAfterSeconds, op) {
      injections.push({
        remaining: n,
        ops: asList(op),
        status: 429,
        ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
      })
    },
    deleteFailNext(n, status = 500) {
      injections.push({ remaining: n, ops: ['delete'], status })
    },
    malformedNext(n, how, op = 'upload') {
      malformations.push({ remaining: n, how, ops: asList(op) ?? [] })
    },
    errorNext(n, error, op) {
      const spec: ErrorSpec = {
        status: error.status,
        type: error.type ?? '',
        code: error.code ?? null,
        message: error.message,
      }
      injections.push({ remaining: n, ops: asList(op), status: error.status, spec })
    },
    uploads: records.uploads,
    deletes: records.deletes,
    requests: records.requests,
    log: records.log,
    files: records.files,
    maxInFlight: records.maxInFlight,
    addFile(file) {
      const id = file.id ?? newId()
      const stored: FakeFile = {
        object: 'file',
        bytes: 1,
        created_at: Math.floor(Date.now() / 1000),
        purpose: kind === 'openai' ? 'user_data' : kind === 'glm' ? 'agent' : 'file-extract',
        ...(kind === 'kimi' ? { status: 'ready' } : kind === 'openai' ? { status: 'processed' } : {}),
        status_details: '',
        ...file,
        id,
      }
      records.files.set(id, stored)
      return stored
    },
    forget(id) {
      return records.files.delete(id)
    },
    get onList() {
      return hooks.onList
    },
    set onList(v) {
      hooks.onList = v
    },
    reset() {
      hooks.onList = undefined
      Object.assign(state, {
        latencyMs: 0,
        hang: false,
        ops: null,
        quotaExceeded: false,
        rejectContent: false,
        maxFiles: kind === 'kimi' ? 1000 : Number.POSITIVE_INFINITY,
        maxFileBytes: MAX_FILE_BYTES[kind],
      })
      injections.length = 0
      malformations.length = 0
      Object.assign(records.maxInFlight, inFlight)
      records.uploads.length = 0
      records.deletes.length = 0
      records.log.length = 0
      records.files.clear()
      Object.assign(records.requests, emptyCounts())
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const socket of sockets) socket.destroy()
      })
    },
  }
  return fake
}
