/**
 * Drop-in for the official OpenAI SDK (and Kimi's OpenAI-compatible usage): the provider's own
 * files API shape under /providers/{provider}/v1, served by the same domain services as /v1.
 * Ids are the provider's file ids, so they work unchanged in chat calls to the provider;
 * timestamps are unix seconds; errors are OpenAI's `{error: {message, type, param, code}}`.
 * `x-should-retry` says whether the same request may succeed later: openai-node reads it before the
 * status (client.ts shouldRetry), so it comes from the failure's classification, never the status.
 * An exhausted quota answers as OpenAI does: 429 `insufficient_quota` (the SDK's RateLimitError)
 * with `x-should-retry: false`.
 * Shapes follow the OpenAI API reference for Files (create, list, retrieve, delete, content).
 */
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Config } from '../../src/config.js'
import type { FileRow } from '../../src/domain/file-record.js'
import { type AppError, type ErrorCode, errorHeaders, errors } from '../../src/errors.js'
import { sendContent } from '../content-reply.js'
import { handleUpload, openAiExpires, openAiFields, skipBodyValidation } from '../intake.js'
import { SafeText } from '../schemas.js'
import openAiUploadsRoutes from './uploads.js'

const OpenAiFile = Type.Object(
  {
    id: Type.String({ description: "The provider's file id" }),
    object: Type.Literal('file'),
    bytes: Type.Integer(),
    created_at: Type.Integer({ description: 'Unix seconds' }),
    expires_at: Type.Optional(Type.Integer({ description: 'Unix seconds' })),
    filename: Type.String(),
    purpose: Type.String(),
    status: Type.String({ description: 'processed' }),
    status_details: Type.Union([Type.String(), Type.Null()]),
  },
  { $id: 'OpenAiFile' },
)

const OpenAiError = Type.Object(
  {
    error: Type.Object({
      message: Type.String(),
      type: Type.String(),
      param: Type.Union([Type.String(), Type.Null()]),
      code: Type.Union([Type.String(), Type.Null()]),
    }),
  },
  { $id: 'OpenAiError' },
)

const ErrorRef = Type.Ref(OpenAiError)
const FileRef = Type.Ref(OpenAiFile)
const errorResponses = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorRef]))

const ProviderParams = Type.Object({ provider: SafeText(32, 'kimi, glm or a configured provider') })
const FileParams = Type.Object({ provider: SafeText(32), file_id: SafeText(256, "The provider's file id") })

const unix = (ts: string) => Math.floor(Date.parse(ts) / 1000)

/** The OpenAI file object of a row, or of the File an upload answered with (same fields). */
export function toOpenAiFile(
  row: Pick<
    FileRow,
    'id' | 'provider_file_id' | 'bytes' | 'created_at' | 'expires_at' | 'filename' | 'purpose' | 'status' | 'error'
  > & { provider_state?: FileRow['provider_state'] },
) {
  // OpenAI's `uploaded` is a file not processed yet: a provider still processing it (Gemini) says so.
  const processed = row.status === 'completed' && row.provider_state !== 'processing'
  return {
    id: row.provider_file_id ?? row.id,
    object: 'file' as const,
    bytes: Number(row.bytes),
    created_at: unix(row.created_at),
    ...(row.expires_at ? { expires_at: unix(row.expires_at) } : {}),
    filename: row.filename,
    purpose: row.purpose,
    status: processed ? 'processed' : row.status === 'failed' ? 'error' : 'uploaded',
    status_details: row.error,
  }
}

const openAiType = (status: number, quotaExhausted: boolean): string => {
  if (quotaExhausted) return 'insufficient_quota'
  if (status === 401) return 'authentication_error'
  if (status === 403) return 'permission_error'
  if (status === 404) return 'not_found_error'
  if (status === 429) return 'rate_limit_error'
  if (status >= 500) return 'server_error'
  return 'invalid_request_error'
}

const paramOf: Partial<Record<ErrorCode, string>> = {
  MISSING_FILE: 'file',
  TOO_MANY_FILES: 'file',
  EMPTY_FILE: 'file',
  FILE_TOO_LARGE: 'file',
  UNSUPPORTED_FILE_TYPE: 'file',
  UNSUPPORTED_PURPOSE: 'purpose',
  UNKNOWN_PROVIDER: 'provider',
}

/**
 * The OpenAI face of the one error path (src/plugins/errors.ts picks it for paths under
 * /providers/): the error as OpenAI's body, with the headers src/errors.ts decides.
 */
export function sendOpenAiError(request: FastifyRequest, reply: FastifyReply, err: AppError) {
  // OpenAI answers an exhausted quota with 429 insufficient_quota (platform.openai.com/docs/guides/error-codes).
  const status = err.quotaExhausted ? 429 : err.status
  reply
    .code(status)
    .header('content-type', 'application/json; charset=utf-8')
    .header('x-request-id', request.id)
    .header('x-should-retry', err.clientMayRetry ? 'true' : 'false')
    .headers(errorHeaders(err, status))
  return reply.send({
    error: {
      message: err.detail,
      type: openAiType(status, err.quotaExhausted),
      param: paramOf[err.code] ?? null,
      code: err.quotaExhausted ? 'insufficient_quota' : err.code.toLowerCase(),
    },
  })
}

const openAiRoutes: FastifyPluginAsyncTypebox<{ config: Config }> = async (app, opts) => {
  app.addSchema(OpenAiFile)
  app.addSchema(OpenAiError)

  /** The provider named in the path must exist; its files are the caller's files there. */
  const providerOf = (name: string) => {
    if (!opts.config.providers.some((p) => p.name === name)) {
      throw errors.notFound(`No provider "${name}"; try ${opts.config.providers.map((p) => p.name).join(', ')}`)
    }
    return name
  }
  const rowFor = async (request: FastifyRequest, provider: string, fileId: string) => {
    const row = await app.files.getRowByProviderId(request.auth.tenant, providerOf(provider), fileId)
    return row
  }
  const liveRowFor = async (request: FastifyRequest, provider: string, fileId: string) => {
    const row = await rowFor(request, provider, fileId)
    if (row.deleted_at) throw errors.fileNotFound(fileId)
    return row
  }

  app.post(
    '/providers/:provider/v1/files',
    {
      schema: {
        tags: ['openai'],
        operationId: 'openaiCreateFile',
        summary: 'OpenAI-compatible file upload (multipart file + purpose); dedup answers the existing file',
        consumes: ['multipart/form-data'],
        params: ProviderParams,
        body: Type.Object({
          file: Type.String({ format: 'binary' }),
          purpose: Type.String(),
          'expires_after[anchor]': Type.Optional(Type.Literal('created_at')),
          // OpenAI: "between 3600 (1 hour) and 2592000 (30 days)" (API reference, Files: create).
          'expires_after[seconds]': Type.Optional(Type.Integer({ minimum: 3600, maximum: 2_592_000 })),
        }),
        response: { 200: FileRef, ...errorResponses(400, 401, 403, 404, 413, 415, 422, 429, 502, 503, 504, 507) },
      },
      validatorCompiler: skipBodyValidation,
      config: { scope: 'files:write' },
    },
    async (request, reply) => {
      const provider = providerOf(request.params.provider)
      const result = await handleUpload(request, reply, app.files, undefined, {
        fieldNames: openAiFields,
        expires: openAiExpires,
        provider,
      })
      reply.header('x-filegate-file-id', result.file.id)
      reply.header('x-filegate-deduplicated', String(result.deduplicated))
      return toOpenAiFile(result.file)
    },
  )

  app.get(
    '/providers/:provider/v1/files',
    {
      schema: {
        tags: ['openai'],
        operationId: 'openaiListFiles',
        summary: 'OpenAI-compatible file list (cursor: after = a file id)',
        params: ProviderParams,
        querystring: Type.Object({
          after: Type.Optional(SafeText(256)),
          // OpenAI: "Limit can range between 1 and 10,000, and the default is 10,000" (Files: list).
          limit: Type.Integer({ minimum: 1, maximum: 10_000, default: 10_000 }),
          order: Type.Union([Type.Literal('asc'), Type.Literal('desc')], { default: 'desc' }),
          purpose: Type.Optional(SafeText(64)),
        }),
        response: {
          200: Type.Object({
            object: Type.Literal('list'),
            data: Type.Array(FileRef),
            first_id: Type.Union([Type.String(), Type.Null()]),
            last_id: Type.Union([Type.String(), Type.Null()]),
            has_more: Type.Boolean(),
          }),
          ...errorResponses(400, 401, 403, 404, 429, 503),
        },
      },
      config: { scope: 'files:read' },
    },
    async (request) => {
      const provider = providerOf(request.params.provider)
      const { after, limit, order, purpose } = request.query
      const afterRow = after ? await rowFor(request, provider, after) : undefined
      const page = await app.files.list(request.auth.tenant, {
        provider,
        purpose,
        status: 'completed',
        limit,
        order,
        afterKey: afterRow ? { createdAt: afterRow.created_at, id: afterRow.id } : undefined,
      })
      const data = page.rows.map(toOpenAiFile)
      return {
        object: 'list' as const,
        data,
        first_id: data[0]?.id ?? null,
        last_id: data.at(-1)?.id ?? null,
        has_more: page.hasMore,
      }
    },
  )

  app.get(
    '/providers/:provider/v1/files/:file_id',
    {
      schema: {
        tags: ['openai'],
        operationId: 'openaiRetrieveFile',
        summary: 'OpenAI-compatible file retrieve',
        params: FileParams,
        response: { 200: FileRef, ...errorResponses(401, 403, 404, 429, 503) },
      },
      config: { scope: 'files:read' },
    },
    async (request) =>
      toOpenAiFile(await app.files.fresh(await liveRowFor(request, request.params.provider, request.params.file_id))),
  )

  app.delete(
    '/providers/:provider/v1/files/:file_id',
    {
      schema: {
        tags: ['openai'],
        operationId: 'openaiDeleteFile',
        summary: 'OpenAI-compatible file delete (tombstone, then the provider delete)',
        params: FileParams,
        response: {
          200: Type.Object({ id: Type.String(), object: Type.Literal('file'), deleted: Type.Boolean() }),
          ...errorResponses(401, 403, 404, 429, 503),
        },
      },
      config: { scope: 'files:write' },
    },
    async (request) => {
      const row = await rowFor(request, request.params.provider, request.params.file_id)
      await app.files.deleteRow(row)
      return { id: request.params.file_id, object: 'file' as const, deleted: true }
    },
  )

  app.get(
    '/providers/:provider/v1/files/:file_id/content',
    {
      schema: {
        tags: ['openai'],
        operationId: 'openaiFileContent',
        summary: 'OpenAI-compatible file content (streamed from the provider)',
        params: FileParams,
        response: {
          200: Type.Unsafe<unknown>({
            type: 'string',
            description: 'The provider content as it sends it, as a download (attachment, nosniff, a sandboxing CSP)',
          }),
          ...errorResponses(401, 403, 404, 409, 429, 502, 503, 504),
        },
      },
      config: { scope: 'files:read' },
    },
    async (request, reply) => {
      const { row, content } = await app.files.contentOf(
        await liveRowFor(request, request.params.provider, request.params.file_id),
      )
      return sendContent(reply, row.filename, content)
    },
  )

  await app.register(openAiUploadsRoutes, opts)
}

export default openAiRoutes
