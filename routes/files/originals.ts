/**
 * The routes that work from a file's kept original (ORIGINALS_URL): a copy at another provider
 * (POST /v1/files/{id}/copies) and a check that the provider still has the file, healing it when
 * it does not (POST /v1/files/{id}/ensure). docs/api.md describes both.
 */
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox'
import { ExpiresInSchema } from '../../src/schemas.js'
import { acceptEmptyJson } from '../json-body.js'
import { FileRef, FileSchema, problems, SafeText } from '../schemas.js'

const fileExample = (FileSchema.examples as Array<Record<string, unknown>>)[0]
const IdParams = Type.Object({ id: SafeText(64, 'The file id (uuid)') })

const CopyBody = Type.Object(
  {
    provider: SafeText(64, 'kimi | glm | a configured provider | auto'),
    purpose: Type.Optional(SafeText(64, "Default: the target provider's default purpose")),
    expires_in: Type.Optional(ExpiresInSchema('Per-file TTL of the copy in seconds (at most 10 years)')),
  },
  { additionalProperties: false, examples: [{ provider: 'glm', purpose: 'file-extract' }] },
)

const originalsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  acceptEmptyJson(app)

  app.post(
    '/v1/files/:id/copies',
    {
      schema: {
        operationId: 'copyFile',
        tags: ['files'],
        summary: 'The same content at another provider or purpose, from the kept original (no bytes sent)',
        params: IdParams,
        body: CopyBody,
        response: {
          200: {
            ...FileRef,
            description: 'That copy exists already: deduplicated: true',
            examples: [{ ...fileExample, provider: 'glm', deduplicated: true }],
          },
          201: {
            ...FileRef,
            description: 'The new copy (a new id; filename, mime type and metadata of the source)',
            examples: [{ ...fileExample, provider: 'glm', deduplicated: false }],
          },
          ...problems(400, 401, 403, 404, 409, 413, 415, 422, 429, 502, 503, 504, 507),
        },
      },
      config: { scope: 'files:write' },
    },
    async (request, reply) => {
      const { provider, purpose, expires_in } = request.body
      const result = await app.files.trackActive(() =>
        app.files.copy(request.auth.tenant, request.params.id, {
          provider,
          purpose,
          expiresInSeconds: expires_in,
          allowed: request.auth.providers,
        }),
      )
      reply.code(result.deduplicated ? 200 : 201)
      return { ...result.file, deduplicated: result.deduplicated }
    },
  )

  app.post(
    '/v1/files/:id/ensure',
    {
      schema: {
        operationId: 'ensureFile',
        tags: ['files'],
        summary: 'Check that the provider still has the file; upload it again from the original when it does not',
        params: IdParams,
        response: {
          200: {
            ...FileRef,
            description: 'The file at its provider: the same id, its provider_file_id new when it was healed',
          },
          ...problems(401, 403, 404, 409, 429, 502, 503, 504),
        },
      },
      config: { scope: 'files:write' },
    },
    async (request) => app.files.ensure(request.auth.tenant, request.params.id, request.auth.providers),
  )
}

export default originalsRoutes
