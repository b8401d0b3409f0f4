/**
 * The upload intake both HTTP faces share (/v1/files and the OpenAI facade): reads a multipart
 * upload as it streams and only parses: the text fields in each face's names, the one file part,
 * its name and type, and the limits on framing. How the file is taken (streamed through or
 * spooled, under which provider's limit) is the domain's choice (src/domain/reception.ts): text
 * fields before the file part shape it; fields after it are still honoured.
 */

import type { Readable } from 'node:stream'
import type { MultipartFile, MultipartValue } from '@fastify/multipart'
import { TypeBoxValidatorCompiler } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { sanitizeFilename } from '../src/domain/filename.js'
import type { FileMeta, FileService, UploadResult } from '../src/domain/files.js'
import type { UploadForm, UploadReception } from '../src/domain/reception.js'
import { clientBodyError } from '../src/domain/spool.js'
import { AppError, asAppError } from '../src/errors.js'
import { maxExpiresInSeconds } from '../src/schemas.js'
import { onFramingRefused, refusedFraming } from './body-framing.js'

const maxMetadataBytes = 4096
/** Nesting deeper than this is refused: metadata is labels, not documents. */
const maxMetadataDepth = 16

/** The TTL a form may ask for, in seconds, and the field name an error names. */
export interface ExpiresRange {
  field: string
  min: number
  max: number
}

/** filegate's own `expires_in` form field: the one TTL bound every route shares (src/schemas.ts). */
export const filegateExpires: ExpiresRange = { field: 'expires_in', min: 1, max: maxExpiresInSeconds }
/**
 * OpenAI: "Must be between 3600 (1 hour) and 2592000 (30 days)" (API reference, Files: create): the
 * facade's dialect, narrower than the shared bound.
 */
export const openAiExpires: ExpiresRange = { field: 'expires_after[seconds]', min: 3600, max: 2_592_000 }
interface Fields {
  provider?: string
  purpose?: string
  expires_in?: string
  metadata?: string
  /** OpenAI's expires_after[anchor]: only `created_at` exists. */
  expires_anchor?: string
}

/** Form field name → filegate field, per API dialect. */
export type FieldNames = Readonly<Record<string, keyof Fields>>

export const filegateFields: FieldNames = {
  provider: 'provider',
  purpose: 'purpose',
  expires_in: 'expires_in',
  metadata: 'metadata',
}

/** OpenAI's files API: `expires_after[anchor]=created_at` + `expires_after[seconds]` is the per-file TTL. */
export const openAiFields: FieldNames = {
  purpose: 'purpose',
  'expires_after[anchor]': 'expires_anchor',
  'expires_after[seconds]': 'expires_in',
}

export interface UploadFormOptions {
  fieldNames: FieldNames
  /** A provider fixed by the route (the OpenAI facade's path): known before the file part. */
  provider?: string
  /** The TTL range of the dialect; filegate's own when absent. */
  expires?: ExpiresRange
}

function readField(fields: Fields, part: MultipartValue, names: FieldNames): void {
  const name = Object.hasOwn(names, part.fieldname) ? names[part.fieldname] : undefined
  if (!name) {
    throw new AppError('VALIDATION_FAILED', {
      detail: `Unknown field "${part.fieldname.slice(0, 64)}"; expected file, ${Object.keys(names).join(', ')}`,
    })
  }
  if (part.valueTruncated) throw new AppError('VALIDATION_FAILED', { detail: `Field ${part.fieldname} is too long` })
  if (fields[name] !== undefined) {
    throw new AppError('VALIDATION_FAILED', { detail: `Field ${part.fieldname} given twice` })
  }
  fields[name] = String(part.value)
}

export function parseMeta(
  fields: Fields,
  filename: string,
  mimeType: string,
  expires: ExpiresRange = filegateExpires,
): FileMeta {
  let metadata: Record<string, unknown> = {}
  if (fields.metadata !== undefined) {
    if (Buffer.byteLength(fields.metadata) > maxMetadataBytes) {
      throw new AppError('VALIDATION_FAILED', { detail: `metadata is larger than ${maxMetadataBytes} bytes` })
    }
    let parsed: unknown
    try {
      parsed = JSON.parse(fields.metadata)
    } catch {
      throw new AppError('VALIDATION_FAILED', { detail: 'metadata must be a JSON object' })
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new AppError('VALIDATION_FAILED', { detail: 'metadata must be a JSON object' })
    }
    checkMetadataValues(parsed)
    metadata = parsed as Record<string, unknown>
  }
  if (fields.expires_anchor !== undefined && fields.expires_anchor !== 'created_at') {
    throw new AppError('VALIDATION_FAILED', { detail: 'expires_after[anchor] must be created_at' })
  }
  let expiresInSeconds: number | undefined
  if (fields.expires_in !== undefined) {
    const n = Number(fields.expires_in)
    if (!/^\d+$/.test(fields.expires_in.trim()) || !Number.isSafeInteger(n) || n < expires.min || n > expires.max) {
      throw new AppError('VALIDATION_FAILED', {
        detail: `${expires.field} must be whole seconds from ${expires.min} to ${expires.max}`,
      })
    }
    expiresInSeconds = n
  }
  return { filename, mimeType: mimeType || 'application/octet-stream', metadata, expiresInSeconds }
}

/**
 * One pass over the parsed metadata (an explicit stack, no recursion): nesting is bounded and no
 * key or string holds a NUL, which Postgres jsonb cannot store (\u0000 is refused as 22P05).
 */
function checkMetadataValues(root: object): void {
  const stack: Array<{ value: unknown; depth: number }> = [{ value: root, depth: 1 }]
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const { value, depth } = item
    if (typeof value === 'string') {
      if (value.includes('\u0000')) throw new AppError('VALIDATION_FAILED', { detail: 'metadata must not contain NUL' })
      continue
    }
    if (value === null || typeof value !== 'object') continue
    if (depth > maxMetadataDepth) {
      throw new AppError('VALIDATION_FAILED', { detail: `metadata nests deeper than ${maxMetadataDepth} levels` })
    }
    for (const [key, child] of Object.entries(value)) {
      stack.push({ value: key, depth }, { value: child, depth: depth + 1 })
    }
  }
}

/** The refusal of a body's framing, once it happens: its error, and a promise that rejects with it. */
class FramingRefusal {
  error: AppError | undefined
  #reject: (err: AppError) => void = () => {}
  readonly promise = new Promise<never>((_resolve, reject) => {
    this.#reject = reject
  })
  constructor() {
    this.promise.catch(() => {})
  }
  refuse(err: AppError): void {
    this.error = err
    this.#reject(err)
  }
}

/**
 * The parts as @fastify/multipart yields them, its parser's failures turned into the client's 400;
 * a refusal of the body's framing ends the iteration with its error at once.
 */
async function* framedParts<T>(parts: AsyncIterable<T>, refusal: FramingRefusal): AsyncGenerator<T> {
  const iterator = parts[Symbol.asyncIterator]()
  try {
    for (;;) {
      let next: IteratorResult<T>
      try {
        next = await Promise.race([iterator.next(), refusal.promise])
      } catch (err) {
        throw clientBodyError(err)
      }
      if (next.done) return
      yield next.value
    }
  } finally {
    // After a refusal the parser is cut off and its pending read settles only when the connection
    // closes: waiting for it here would hold the answer until then.
    if (refusal.error) iterator.return?.().catch(() => {})
    else await iterator.return?.()
  }
}

const mimePattern = /^[a-z0-9!#$&^_.+-]{1,64}\/[a-z0-9!#$&^_.+-]{1,128}$/i

/** The form as far as it was read, for the domain: fields parsed on demand, so a field after the file part counts. */
function formOf(fields: Fields, filename: string, mimeType: string, expires: ExpiresRange | undefined): UploadForm {
  return {
    provider: fields.provider,
    purpose: fields.purpose,
    filename,
    meta: () => parseMeta(fields, filename, mimeType, expires),
  }
}

/** The one file part, checked: exactly one, named "file"; its filename sanitised and its type kept if well-formed. */
function acceptFilePart(file: MultipartFile, fileParts: number): { filename: string; mimeType: string } {
  if (fileParts > 1 || file.fieldname !== 'file') {
    file.file.resume()
    throw fileParts > 1
      ? new AppError('TOO_MANY_FILES', { detail: 'Send exactly one file part, named "file"' })
      : new AppError('VALIDATION_FAILED', { detail: `The file part must be named "file", not "${file.fieldname}"` })
  }
  const mimeType = mimePattern.test(file.mimetype) ? file.mimetype.toLowerCase() : 'application/octet-stream'
  return { filename: sanitizeFilename(file.filename), mimeType }
}

/** Reads one upload body end to end into `reception`; the spool file is gone when it returns. */
export async function receiveUpload(
  request: FastifyRequest,
  reception: UploadReception,
  options: UploadFormOptions = { fieldNames: filegateFields },
): Promise<UploadResult> {
  if (!request.isMultipart()) {
    throw new AppError('VALIDATION_FAILED', { detail: 'Content-Type must be multipart/form-data' })
  }
  if (!/;\s*boundary=/i.test(request.headers['content-type'] ?? '')) {
    throw new AppError('VALIDATION_FAILED', { detail: 'Content-Type multipart/form-data needs a boundary parameter' })
  }
  const fields: Fields = options.provider === undefined ? {} : { provider: options.provider }
  let file: { filename: string; mimeType: string } | undefined
  let fileParts = 0
  // A body framed in tiny chunks is refused: the parser gets nothing more, and the file part being
  // taken (spooled or streamed through) fails with the same 400.
  let taking: Readable | undefined
  const refusal = new FramingRefusal()
  const stopWatching = onFramingRefused(request.raw, (err) => {
    request.raw.unpipe()
    request.raw.pause()
    taking?.destroy(err)
    refusal.refuse(err)
  })
  // @fastify/multipart defaults fileSize to the app's bodyLimit (64 KiB) and then truncates the
  // file stream silently; the domain's counters enforce the provider limits, so busboy must only
  // stop past the largest of them (one byte more, so the counter sees limit + 1 and refuses first).
  const parts = request.parts({ limits: { fileSize: reception.largestFileBytes + 1 } })
  try {
    for await (const part of framedParts(parts, refusal)) {
      if (part.type === 'field') {
        readField(fields, part, options.fieldNames)
        continue
      }
      fileParts++
      file = acceptFilePart(part as MultipartFile, fileParts)
      const stream = (part as MultipartFile).file
      taking = stream
      await reception.takeFile(formOf(fields, file.filename, file.mimeType, options.expires), stream)
      taking = undefined
      stream.resume() // a dedup answer did not read the body: discard what is left
    }
    if (fileParts === 0 || !file) throw new AppError('MISSING_FILE', { detail: 'Send one file part named "file"' })
    return await reception.finish(formOf(fields, file.filename, file.mimeType, options.expires))
  } finally {
    stopWatching()
    await reception.dispose()
  }
}

/** The multipart body is read by the handler as it streams; the route's other parts are validated as usual. */
export const skipBodyValidation = (route: { httpPart?: string }) =>
  route.httpPart === 'body' ? () => true : TypeBoxValidatorCompiler(route as never)

/**
 * One upload request end to end, for every route that takes one (/v1/files and the OpenAI facade):
 * counts it as active, counts a refusal by its catalogue code (multipart limits surface as Fastify
 * errors such as FST_FILES_LIMIT), and closes the connection after an error, since the rest of the
 * body is not read.
 */
export async function handleUpload(
  request: FastifyRequest,
  reply: FastifyReply,
  service: FileService,
  declaredSha256: string | undefined,
  options?: UploadFormOptions,
): Promise<UploadResult> {
  const reception = service.receive({
    tenant: request.auth.tenant,
    providers: request.auth.providers,
    declaredSha256,
    contentLength: Number(request.headers['content-length']) || undefined,
  })
  try {
    return await service.trackActive(() => receiveUpload(request, reception, options))
  } catch (err) {
    service.recordRefusal(asAppError(err))
    reply.header('connection', 'close')
    // A body refused for its framing is read no further: the connection goes as soon as the answer is out.
    if (refusedFraming(request.raw)) reply.raw.once('finish', () => request.raw.socket?.destroy())
    // Nothing more of this body will be used: stop feeding the multipart parser (it would go on
    // parsing whatever the client keeps sending, part by part, until the connection closes).
    request.raw.unpipe()
    throw err
  }
}
