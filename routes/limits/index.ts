/**
 * GET /v1/limits: what each provider accepts, its circuit state, and the caller's usage against its
 * quota; the account's usage (every tenant's) for admin keys only.
 */
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox'
import { problems } from '../schemas.js'

const Nullable = <T extends import('@sinclair/typebox').TSchema>(s: T) => Type.Union([s, Type.Null()])

const ProviderLimits = Type.Object({
  provider: Type.String(),
  kind: Type.String({ description: 'kimi | glm | openai (OpenAI-compatible)' }),
  configured: Type.Boolean(),
  circuit: Type.Union([Type.Literal('closed'), Type.Literal('open'), Type.Literal('half_open')]),
  max_file_bytes: Type.Integer({ description: "The operator's per-file cap (*_MAX_FILE_BYTES)" }),
  documented_max_file_bytes: Nullable(
    Type.Integer({ description: "The provider's documented per-file cap; null: none documented" }),
  ),
  default_purpose: Type.String(),
  purposes: Type.Array(
    Type.Object({
      purpose: Type.String(),
      extensions: Nullable(Type.Array(Type.String())),
      max_file_bytes: Type.Integer({
        description: "What is accepted for this purpose: the operator's cap or the documented one, the lower",
      }),
      documented_max_file_bytes: Nullable(Type.Integer({ description: 'The documented cap of this purpose' })),
      max_bytes_by_extension: Type.Record(Type.String(), Type.Integer()),
      max_files: Nullable(
        Type.Integer({ description: 'Documented files of this purpose per account (counted); null: none' }),
      ),
      files: Type.Optional(
        Type.Integer({
          description: "Admin keys only: files of this purpose occupying the account now, every tenant's",
        }),
      ),
      content_available: Type.Boolean({ description: 'GET /v1/files/{id}/content serves files of this purpose' }),
      source: Nullable(Type.String({ description: 'The provider doc page these facts come from' })),
      note: Nullable(Type.String({ description: 'Where the docs are silent or disagree' })),
    }),
  ),
  docs: Nullable(
    Type.Object({
      region: Type.String({ description: 'The endpoint whose docs apply (international or China)' }),
      read_on: Type.String({ description: 'The day the docs were read' }),
      sources: Type.Array(Type.String()),
    }),
  ),
  allowed_extensions: Nullable(Type.Array(Type.String(), { description: 'null: any extension' })),
  account: Type.Object({
    max_files: Nullable(Type.Integer()),
    max_bytes: Nullable(Type.Integer()),
    files: Type.Optional(
      Type.Integer({
        description:
          "Admin keys only: files occupying the account now, every tenant's (live, in flight, awaiting delete)",
      }),
    ),
    bytes: Type.Optional(Type.Integer({ description: "Admin keys only: bytes occupying the account, every tenant's" })),
  }),
  tenant: Type.Object(
    {
      max_files: Nullable(Type.Integer({ description: 'TENANT_MAX_FILES or TENANT_QUOTAS; null = no cap' })),
      max_bytes: Nullable(Type.Integer({ description: 'TENANT_MAX_BYTES or TENANT_QUOTAS; null = no cap' })),
      files: Type.Integer({
        description: "The caller's files occupying this account (live, in flight, awaiting delete)",
      }),
      bytes: Type.Integer(),
    },
    { description: "The caller's own usage and quota on this provider account" },
  ),
})

const limitsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/v1/limits',
    {
      schema: {
        operationId: 'getLimits',
        tags: ['limits'],
        summary: "Per provider: limits, circuit state, the caller's usage and quota (account usage: admin keys)",
        security: [{ bearerAuth: [] }],
        response: {
          200: Type.Object({ data: Type.Array(ProviderLimits) }, { description: 'One entry per known provider' }),
          ...problems(401, 403, 429, 503),
        },
      },
      config: { auth: 'tenant' },
    },
    async (request) => ({
      data: (await app.files.limits({ tenant: request.auth.tenant, accountUsage: request.auth.isAdmin })) as never,
    }),
  )
}

export default limitsRoutes
