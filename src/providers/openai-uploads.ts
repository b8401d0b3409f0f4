/**
 * OpenAI's own API takes a file of at most 512 MB in one `POST /files`; a larger one (to 8 GB) goes
 * through its Uploads API (platform.openai.com/docs/api-reference/uploads): `POST /uploads`
 * `{bytes, filename, mime_type, purpose}`, then parts of at most 64 MB (`POST /uploads/{id}/parts`,
 * multipart field `data`), then `POST /uploads/{id}/complete` `{part_ids, md5}`, which answers the
 * Upload with its `file`. This wire is the shared files client with that path for large files read
 * from disk (the spool): each part is streamed from its range of the file, never held whole.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import type { Readable } from 'node:stream'
import { type Dispatcher, request } from 'undici'
import type { WireKind } from './adapter.js'
import { badResponse, parseErrorBody } from './errors.js'
import { FilesClient, openAiFile, type ProviderDialect } from './files-client.js'
import type { ProviderFile, UploadInput } from './types.js'
import { closeAgent, readJson, transportError, upstreamError, wireAgent } from './wire-http.js'

const MB = 1024 * 1024

export interface UploadsApiLimits {
  /** Above this, a file goes through the Uploads API ("Individual files can be up to 512 MB"). */
  singleRequestMaxBytes: number
  /** "Each Part can be at most 64 MB". */
  partBytes: number
}

export const openAiUploadsLimits: UploadsApiLimits = { singleRequestMaxBytes: 512 * MB, partBytes: 64 * MB }

/** The native OpenAI wire: files up to 512 MB in one request, larger ones (from disk) in parts. */
export function openAiUploadsWire(dialect: ProviderDialect, limits = openAiUploadsLimits): WireKind {
  return {
    hasRetrieve: dialect.hasRetrieve,
    create(config, options) {
      const files = new FilesClient({
        provider: config.name,
        baseUrl: config.baseUrl,
        apiKey: config.apiKey,
        dialect,
        limitBytes: options.limitBytes,
        idleTimeoutMs: options.idleTimeoutMs,
        connections: options.connections,
      })
      const agent = wireAgent(options.idleTimeoutMs, options.connections)
      const who = { provider: config.name, apiKey: config.apiKey, limitBytes: options.limitBytes }
      const call = async (method: Dispatcher.HttpMethod, path: string, body: unknown, signal: AbortSignal) => {
        const multipart = body instanceof PartBody ? body : undefined
        const headers: Record<string, string> = {
          accept: 'application/json',
          ...(config.apiKey ? { authorization: `Bearer ${config.apiKey}` } : {}),
          'content-type': multipart ? multipart.contentType : 'application/json',
          ...(multipart ? { 'content-length': String(multipart.contentLength) } : {}),
        }
        let res: Dispatcher.ResponseData
        try {
          res = await request(`${config.baseUrl}${path}`, {
            dispatcher: agent,
            method,
            headers,
            body: multipart ? (multipart.body() as unknown as Readable) : JSON.stringify(body ?? {}),
            signal,
          })
        } catch (err) {
          throw transportError(err, signal, config.name, options.idleTimeoutMs)
        }
        if (res.statusCode < 200 || res.statusCode >= 300) {
          throw await upstreamError(res, 'upload', who, parseErrorBody, dialect.classifyError)
        }
        return (await readJson(res, config.name, options.idleTimeoutMs)) as Record<string, unknown>
      }
      return {
        upload(input, signal) {
          const { source } = input
          if (source.kind !== 'file' || source.bytes <= limits.singleRequestMaxBytes) return files.upload(input, signal)
          return uploadInParts(call, { ...input, source }, limits.partBytes, signal, config.name)
        },
        retrieve: (id, signal) => files.retrieve(id, signal),
        delete: (id, signal) => files.delete(id, signal),
        listAll: (opts, run) => files.listAll(opts, run),
        content: (id, signal) => files.content(id, signal),
        async close(graceMs = 5_000) {
          await Promise.all([files.close(graceMs), closeAgent(agent, graceMs)])
        },
      }
    },
  }
}

type Call = (
  method: Dispatcher.HttpMethod,
  path: string,
  body: unknown,
  signal: AbortSignal,
) => Promise<Record<string, unknown>>

/** Create, the parts in order (the md5 computed as they are read), complete; a failure cancels the Upload. */
async function uploadInParts(
  call: Call,
  input: UploadInput & { source: { kind: 'file'; path: string; bytes: number } },
  partBytes: number,
  signal: AbortSignal,
  provider: string,
): Promise<ProviderFile> {
  const { source } = input
  const upload = await call(
    'POST',
    '/uploads',
    { bytes: source.bytes, filename: input.filename, mime_type: input.mimeType, purpose: input.purpose },
    signal,
  )
  if (typeof upload.id !== 'string') throw badResponse(provider, 'upload without id')
  const uploadPath = `/uploads/${encodeURIComponent(upload.id)}`
  try {
    const md5 = createHash('md5')
    const partIds: string[] = []
    for (let start = 0; start < source.bytes; start += partBytes) {
      const end = Math.min(source.bytes, start + partBytes)
      const part = await call('POST', `${uploadPath}/parts`, new PartBody(source.path, start, end, md5), signal)
      if (typeof part.id !== 'string') throw badResponse(provider, 'upload part without id')
      partIds.push(part.id)
    }
    const done = await call('POST', `${uploadPath}/complete`, { part_ids: partIds, md5: md5.digest('hex') }, signal)
    const file =
      typeof done.file === 'object' && done.file !== null
        ? openAiFile(done.file as Record<string, unknown>)
        : 'completed upload without file'
    if (typeof file === 'string') throw badResponse(provider, file)
    return file
  } catch (err) {
    // Nothing of a cancelled Upload stays at OpenAI; a failed cancel leaves it to expire there (one hour).
    await call('POST', `${uploadPath}/cancel`, {}, AbortSignal.timeout(10_000)).catch(() => {})
    throw err
  }
}

/** One part as a multipart body (field `data`), streamed from its range of the file, its bytes hashed in order. */
class PartBody {
  readonly contentType: string
  readonly contentLength: number
  readonly #head: Buffer
  readonly #tail: Buffer

  constructor(
    private readonly path: string,
    private readonly start: number,
    private readonly end: number,
    private readonly md5: ReturnType<typeof createHash>,
  ) {
    const boundary = `----filegate${randomBytes(16).toString('hex')}`
    this.contentType = `multipart/form-data; boundary=${boundary}`
    this.#head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="data"; filename="part"\r\n` +
        'Content-Type: application/octet-stream\r\n\r\n',
    )
    this.#tail = Buffer.from(`\r\n--${boundary}--\r\n`)
    this.contentLength = this.#head.length + (end - start) + this.#tail.length
  }

  async *body(): AsyncGenerator<Buffer> {
    yield this.#head
    for await (const chunk of createReadStream(this.path, { start: this.start, end: this.end - 1 })) {
      this.md5.update(chunk as Buffer)
      yield chunk as Buffer
    }
    yield this.#tail
  }
}
