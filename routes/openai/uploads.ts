/**
 * OpenAI Uploads on the facade (/providers/{provider}/v1/uploads), as the API reference documents
 * them (platform.openai.com/docs/api-reference/uploads: create, add part, complete, cancel) and the
 * official SDKs call them (`uploads.create`, `uploads.parts.create`, `uploads.complete`,
 * `uploads.cancel`; Python's `upload_file_chunked`), for every provider kind: the parts are staged
 * by filegate and the finished file goes to the provider as any upload does. `GET /uploads/{id}`
 * (this product's own) lists the parts received. Ids are `upload_<hex>` and `part_<hex>`.
 */
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import type { Config } from '../../src/config.js'
import { sanitizeFilename } from '../../src/domain/filename.js'
import { openAiUploadMaxBytes, partMaxBytes, type ResumableState, type SegmentRow } from '../../src/domain/resumable.js'
import { AppError, errors } from '../../src/errors.js'
import { skipBodyValidation } from '../intake.js'
import { SafeText } from '../schemas.js'
import { toOpenAiFile } from './index.js'

const UploadSchema = Type.Object(
  {
    id: Type.String({ description: 'upload_<hex>' }),
    object: Type.Literal('upload'),
    bytes: Type.Integer({ description: 'The intended number of bytes' }),
    created_at: Type.Integer({ description: 'Unix seconds' }),
    expires_at: Type.Integer({
      description: 'Unix seconds: one hour after creation, or RESUMABLE_TTL_SECONDS if shorter',
    }),
    filename: Type.String(),
    purpose: Type.String(),
    status: Type.Union(['pending', 'completed', 'cancelled', 'expired'].map((s) => Type.Literal(s))),
    file: Type.Union([Type.Ref('OpenAiFile'), Type.Null()], { description: 'The File once completed' }),
    parts: Type.Optional(
      Type.Array(Type.Object({ id: Type.String(), bytes: Type.Integer() }), {
        description: 'GET only (this product): the parts received, oldest first',
      }),
    ),
  },
  { $id: 'OpenAiUpload' },
)

const PartSchema = Type.Object(
  {
    id: Type.String({ description: 'part_<hex>' }),
    object: Type.Literal('upload.part'),
    created_at: Type.Integer(),
    upload_id: Type.String(),
  },
  { $id: 'OpenAiUploadPart' },
)

const ProviderParams = Type.Object({ provider: SafeText(32) })
const UploadParams = Type.Object({ provider: SafeText(32), upload_id: SafeText(64, 'upload_<hex>') })
const errorsOf = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, Type.Ref('OpenAiError')]))

/** `upload_<hex>` ↔ the row's uuid; a malformed id matches no upload. */
const uuidOf = (id: string, prefix: string) => {
  const hex = id.startsWith(prefix) ? id.slice(prefix.length) : ''
  if (!/^[0-9a-f]{32}$/.test(hex)) return '00000000-0000-0000-0000-000000000000'
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}
const idOf = (uuid: string, prefix: string) => `${prefix}${uuid.replaceAll('-', '')}`
const unix = (ts: string) => Math.floor(Date.parse(ts) / 1000)

const openAiStatus = {
  receiving: 'pending',
  processing: 'pending',
  completed: 'completed',
  cancelled: 'cancelled',
} as const

/** The OpenAI Upload object of an upload (a failed one only ever fails at its expiry: `expired`). */
function toOpenAiUpload({ upload, file }: ResumableState, parts?: SegmentRow[]) {
  return {
    id: idOf(upload.id, 'upload_'),
    object: 'upload' as const,
    bytes: Number(upload.bytes),
    created_at: unix(upload.created_at),
    expires_at: unix(upload.expires_at),
    filename: upload.filename,
    purpose: upload.purpose ?? '',
    status: Object.hasOwn(openAiStatus, upload.status)
      ? openAiStatus[upload.status as keyof typeof openAiStatus]
      : ('expired' as const),
    file: file ? toOpenAiFile(file) : null,
    ...(parts ? { parts: parts.map((p) => ({ id: idOf(p.id, 'part_'), bytes: Number(p.bytes) })) } : {}),
  }
}

const openAiUploadsRoutes: FastifyPluginAsyncTypebox<{ config: Config }> = async (app, opts) => {
  app.addSchema(UploadSchema)
  app.addSchema(PartSchema)

  const providerOf = (name: string) => {
    if (!opts.config.providers.some((p) => p.name === name)) throw errors.notFound(`No provider "${name}"`)
    return name
  }
  /** The caller's OpenAI Upload at this provider: another tenant's, a tus upload or another provider's is 404. */
  const stateOf = async (request: FastifyRequest<{ Params: { provider: string; upload_id: string } }>) => {
    const { provider, upload_id } = request.params
    const state = await app.resumable.get(request.auth.tenant, uuidOf(upload_id, 'upload_'))
    if (state.upload.protocol !== 'openai' || state.upload.provider !== providerOf(provider)) {
      throw errors.notFound(`No upload ${upload_id}`)
    }
    return state
  }

  app.post(
    '/providers/:provider/v1/uploads',
    {
      schema: {
        tags: ['openai'],
        operationId: 'openaiCreateUpload',
        summary: 'OpenAI-compatible Upload create: an Upload to add parts to (at most 8 GB, and the provider limit)',
        security: [{ bearerAuth: [] }],
        params: ProviderParams,
        body: Type.Object({
          bytes: Type.Integer({ minimum: 1 }),
          filename: Type.String({ minLength: 1, maxLength: 1024 }),
          mime_type: Type.String({ minLength: 1, maxLength: 255 }),
          purpose: Type.String({ minLength: 1, maxLength: 64 }),
          // The file's expiry, as files.create takes it (API reference, Uploads: create).
          expires_after: Type.Optional(
            Type.Object({
              anchor: Type.Literal('created_at'),
              seconds: Type.Integer({ minimum: 3600, maximum: 2_592_000 }),
            }),
          ),
        }),
        response: { 200: Type.Ref(UploadSchema), ...errorsOf(400, 401, 403, 404, 413, 415, 429, 503, 507) },
      },
      config: { scope: 'files:write' },
    },
    async (request) => {
      const { body } = request
      if (body.bytes > openAiUploadMaxBytes) throw errors.fileTooLarge('OpenAI Uploads', openAiUploadMaxBytes)
      const upload = await app.resumable.create({
        tenant: request.auth.tenant,
        allowed: request.auth.providers,
        protocol: 'openai',
        provider: providerOf(request.params.provider),
        purpose: body.purpose,
        bytes: body.bytes,
        meta: {
          filename: sanitizeFilename(body.filename),
          mimeType: body.mime_type,
          metadata: {},
          expiresInSeconds: body.expires_after?.seconds,
        },
        sha256: undefined,
      })
      return toOpenAiUpload({ upload, file: null })
    },
  )

  app.post(
    '/providers/:provider/v1/uploads/:upload_id/parts',
    {
      schema: {
        tags: ['openai'],
        operationId: 'openaiAddUploadPart',
        summary: 'OpenAI-compatible Upload part (multipart field `data`, at most 64 MB); parts are independent',
        security: [{ bearerAuth: [] }],
        consumes: ['multipart/form-data'],
        params: UploadParams,
        body: Type.Object({ data: Type.String({ format: 'binary' }) }),
        response: { 200: Type.Ref(PartSchema), ...errorsOf(400, 401, 403, 404, 409, 410, 413, 429, 503) },
      },
      validatorCompiler: skipBodyValidation,
      config: { scope: 'files:write' },
    },
    async (request, reply) => {
      const { upload } = await stateOf(request)
      try {
        const part = await app.resumable.addPart(request.auth.tenant, upload.id, await partBody(request))
        return {
          id: idOf(part.id, 'part_'),
          object: 'upload.part' as const,
          created_at: unix(part.created_at),
          upload_id: idOf(upload.id, 'upload_'),
        }
      } catch (err) {
        // The rest of the body will not be read: the connection is closed after the answer.
        reply.header('connection', 'close')
        request.raw.unpipe()
        throw err
      }
    },
  )

  app.post(
    '/providers/:provider/v1/uploads/:upload_id/complete',
    {
      schema: {
        tags: ['openai'],
        operationId: 'openaiCompleteUpload',
        summary: 'OpenAI-compatible Upload complete: the parts in the order given become one File; idempotent',
        description:
          'The parts must add up to `bytes`; `md5`, when given, must match them (else 400, the Upload stays pending). ' +
          'Concurrent and retried completes make one provider upload and answer the same File; a live duplicate ' +
          'of the content answers as the File.',
        security: [{ bearerAuth: [] }],
        params: UploadParams,
        body: Type.Object({
          part_ids: Type.Array(SafeText(64), { minItems: 1, maxItems: 10_000 }),
          md5: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{32}$' })),
        }),
        response: {
          200: Type.Ref(UploadSchema),
          ...errorsOf(400, 401, 403, 404, 409, 410, 413, 415, 422, 429, 502, 503, 504, 507),
        },
      },
      config: { scope: 'files:write' },
    },
    async (request) => {
      const { upload } = await stateOf(request)
      const partIds = request.body.part_ids.map((id) => uuidOf(id, 'part_'))
      const state = await app.resumable.complete(request.auth.tenant, upload.id, { partIds, md5: request.body.md5 })
      return toOpenAiUpload(state)
    },
  )

  app.post(
    '/providers/:provider/v1/uploads/:upload_id/cancel',
    {
      schema: {
        tags: ['openai'],
        operationId: 'openaiCancelUpload',
        summary: 'OpenAI-compatible Upload cancel: no more parts; the staged parts are removed',
        security: [{ bearerAuth: [] }],
        params: UploadParams,
        response: { 200: Type.Ref(UploadSchema), ...errorsOf(401, 403, 404, 409, 410, 429, 503) },
      },
      config: { scope: 'files:write' },
    },
    async (request) => {
      const { upload } = await stateOf(request)
      return toOpenAiUpload({ upload: await app.resumable.cancel(request.auth.tenant, upload.id, false), file: null })
    },
  )

  app.get(
    '/providers/:provider/v1/uploads/:upload_id',
    {
      schema: {
        tags: ['openai'],
        operationId: 'openaiRetrieveUpload',
        summary: "The Upload and the parts received (this product's own; OpenAI documents no retrieve)",
        security: [{ bearerAuth: [] }],
        params: UploadParams,
        response: { 200: Type.Ref(UploadSchema), ...errorsOf(401, 403, 404, 429, 503) },
      },
      config: { scope: 'files:write' },
    },
    async (request) => {
      const state = await stateOf(request)
      return toOpenAiUpload(state, state.upload.segments ?? [])
    },
  )
}

/** The one file part, `data`, of a part's multipart body, as it streams. */
async function partBody(request: FastifyRequest): Promise<AsyncIterable<Buffer>> {
  if (!request.isMultipart()) throw errors.validationFailed('Send the part as multipart/form-data with a field "data"')
  // One byte past the part limit, so that the domain's own count refuses it first (413).
  const file = await request.file({ limits: { fileSize: partMaxBytes + 1, files: 1, fields: 0, parts: 1 } })
  if (file?.fieldname !== 'data') {
    file?.file.resume()
    throw new AppError('MISSING_FILE', { detail: 'Send the part as a multipart field named "data"' })
  }
  return file.file
}

export default openAiUploadsRoutes
