/** The files API: upload, list, get, content, delete (docs/api.md). */
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox'
import type { FileRow } from '../../src/domain/file-record.js'
import { toFileObject } from '../../src/domain/file-record.js'
import { ExpiresInSchema, FileStatusSchema } from '../../src/schemas.js'
import { sendContent, sendOriginal } from '../content-reply.js'
import { handleUpload, skipBodyValidation } from '../intake.js'
import { FileRef, FileSchema, problems, SafeText } from '../schemas.js'
import originalsRoutes from './originals.js'

const UploadBody = Type.Object(
  {
    file: Type.String({ format: 'binary', description: 'Exactly one file part' }),
    provider: Type.Optional(
      Type.String({ description: 'kimi | glm | a configured provider | auto (default DEFAULT_PROVIDER)' }),
    ),
    purpose: Type.Optional(Type.String({ description: "Default: the provider's default purpose" })),
    expires_in: Type.Optional(ExpiresInSchema()),
    metadata: Type.Optional(Type.String({ description: 'A JSON object as a string, at most 4 KiB' })),
  },
  {
    description:
      'Text fields may come before or after the file part; before it, the size limit applies while streaming',
    examples: [
      {
        provider: 'kimi',
        purpose: 'file-extract',
        expires_in: 86400,
        metadata: '{"conversation":"c-42"}',
        file: '(the bytes of report.pdf)',
      },
    ],
  },
)

const FileList = Type.Object(
  {
    data: Type.Array(FileRef),
    has_more: Type.Boolean(),
    next_cursor: Type.Union([Type.String(), Type.Null()]),
  },
  { description: 'A page of files, newest first' },
)

const fileExample = (FileSchema.examples as Array<Record<string, unknown>>)[0]

const IdParams = Type.Object({ id: SafeText(64, 'The file id (uuid)') })
const Sha256Header = Type.Object({
  'x-content-sha256': Type.Optional(
    Type.String({ pattern: '^[0-9a-fA-F]{64}$', description: 'Declared SHA-256 of the file (hex)' }),
  ),
})

const filesRoutes: FastifyPluginAsyncTypebox<{ config: import('../../src/config.js').Config }> = async (app) => {
  app.addSchema(FileSchema)
  await app.register(originalsRoutes)

  app.post(
    '/v1/files',
    {
      schema: {
        operationId: 'uploadFile',
        tags: ['files'],
        summary: 'Upload a file (multipart/form-data), deduplicated by SHA-256',
        consumes: ['multipart/form-data'],
        headers: Sha256Header,
        body: UploadBody,
        response: {
          200: {
            ...FileRef,
            description: 'A live duplicate exists: deduplicated: true',
            examples: [{ ...fileExample, last_used_at: '2026-11-26T08:30:00.000Z', deduplicated: true }],
          },
          201: {
            ...FileRef,
            description: 'Uploaded to the provider: deduplicated: false',
            examples: [{ ...fileExample, deduplicated: false }],
          },
          ...problems(400, 401, 403, 413, 415, 422, 429, 502, 503, 504, 507),
        },
      },
      // The body is a multipart stream read by the handler; the schema above documents it.
      validatorCompiler: skipBodyValidation,
      config: { scope: 'files:write' },
    },
    async (request, reply) => {
      const declared = request.headers['x-content-sha256']?.toLowerCase()
      const result = await handleUpload(request, reply, app.files, declared)
      reply.code(result.deduplicated ? 200 : 201)
      return { ...result.file, deduplicated: result.deduplicated }
    },
  )

  app.get(
    '/v1/files',
    {
      schema: {
        operationId: 'listFiles',
        tags: ['files'],
        summary: "List the caller's files, newest first, with cursor pagination",
        querystring: Type.Object({
          provider: Type.Optional(SafeText(64)),
          status: Type.Optional(FileStatusSchema),
          sha256: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{64}$' })),
          purpose: Type.Optional(SafeText(64)),
          include_deleted: Type.Boolean({ default: false }),
          limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
          after: Type.Optional(
            Type.String({
              maxLength: 256,
              pattern: '^[A-Za-z0-9_-]*$',
              description: 'next_cursor of the previous page',
            }),
          ),
        }),
        response: { 200: FileList, ...problems(400, 401, 403, 429, 503) },
      },
      config: { scope: 'files:read' },
    },
    async (request) => {
      const q = request.query
      const page = await app.files.list(request.auth.tenant, {
        provider: q.provider,
        status: q.status,
        sha256: q.sha256,
        purpose: q.purpose,
        includeDeleted: q.include_deleted,
        limit: q.limit,
        after: q.after,
      })
      return {
        data: page.rows.map((r: FileRow) => toFileObject(r)),
        has_more: page.hasMore,
        next_cursor: page.nextCursor,
      }
    },
  )

  app.get(
    '/v1/files/:id',
    {
      schema: {
        operationId: 'getFile',
        tags: ['files'],
        summary: 'One file',
        params: IdParams,
        response: { 200: { ...FileRef, description: 'The file' }, ...problems(401, 403, 404, 429, 503) },
      },
      config: { scope: 'files:read' },
    },
    async (request) => app.files.get(request.auth.tenant, request.params.id),
  )

  app.get(
    '/v1/files/:id/content',
    {
      schema: {
        operationId: 'getFileContent',
        tags: ['files'],
        summary: "The provider's extracted content (Kimi file-extract), streamed",
        params: IdParams,
        produces: ['application/json', 'text/plain', 'application/octet-stream'],
        response: {
          200: Type.Unsafe<unknown>({
            type: 'string',
            description: 'The provider content as it sends it, as a download (attachment, nosniff, a sandboxing CSP)',
          }),
          ...problems(401, 403, 404, 409, 429, 502, 503, 504),
        },
      },
      config: { scope: 'files:read' },
    },
    async (request, reply) => {
      const { row, content } = await app.files.content(request.auth.tenant, request.params.id)
      return sendContent(reply, row.filename, content)
    },
  )

  app.get(
    '/v1/files/:id/original',
    {
      schema: {
        operationId: 'getFileOriginal',
        tags: ['files'],
        summary: 'The original bytes as uploaded, from the originals store (ORIGINALS_URL), streamed',
        description:
          'Verified against the SHA-256 as it streams: a corrupted original is never delivered whole (the ' +
          'response is aborted before its last bytes). 409 ORIGINAL_UNAVAILABLE where the original is not kept.',
        params: IdParams,
        produces: ['application/octet-stream'],
        response: {
          200: Type.Unsafe<unknown>({
            type: 'string',
            format: 'binary',
            description: "The original, as a download (attachment, nosniff), typed with the file's mime_type",
          }),
          ...problems(401, 403, 404, 409, 429, 503),
        },
      },
      config: { scope: 'files:read' },
    },
    async (request, reply) => {
      const { row, original } = await app.files.original(request.auth.tenant, request.params.id)
      original.stream.once('error', (err) => {
        // Headers are out: the client sees the connection cut short, never the whole corrupted object.
        request.log.error({ err, file: row.id }, 'serving an original failed; the response was aborted')
      })
      return sendOriginal(reply, row, original)
    },
  )

  app.delete(
    '/v1/files/:id',
    {
      schema: {
        operationId: 'deleteFile',
        tags: ['files'],
        summary: 'Soft-delete (tombstone), then delete at the provider; idempotent',
        params: IdParams,
        response: {
          200: {
            ...FileRef,
            description: 'The tombstone; provider_deleted: false while the provider delete is pending',
          },
          ...problems(401, 403, 404, 429, 503),
        },
      },
      config: { scope: 'files:write' },
    },
    async (request) => toFileObject(await app.files.delete(request.auth.tenant, request.params.id)),
  )
}

export default filesRoutes
