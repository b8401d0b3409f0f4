/** GET /v1/limits: what each provider accepts, its circuit state, and live usage against its account caps. */
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox'
import { problems } from '../schemas.js'

const Nullable = <T extends import('@sinclair/typebox').TSchema>(s: T) => Type.Union([s, Type.Null()])

const ProviderLimits = Type.Object({
  provider: Type.String(),
  kind: Type.String({ description: 'kimi | glm | openai (OpenAI-compatible)' }),
  configured: Type.Boolean(),
  circuit: Type.Union([Type.Literal('closed'), Type.Literal('open'), Type.Literal('half_open')]),
  max_file_bytes: Type.Integer(),
  default_purpose: Type.String(),
  purposes: Type.Array(
    Type.Object({
      purpose: Type.String(),
      extensions: Nullable(Type.Array(Type.String())),
      max_file_bytes: Type.Integer(),
      max_bytes_by_extension: Type.Record(Type.String(), Type.Integer()),
    }),
  ),
  allowed_extensions: Nullable(Type.Array(Type.String(), { description: 'null: any extension' })),
  account: Type.Object({
    max_files: Nullable(Type.Integer()),
    max_bytes: Nullable(Type.Integer()),
    files: Type.Integer({ description: 'Files occupying the account now (live, in flight, awaiting delete)' }),
    bytes: Type.Integer(),
  }),
})

const limitsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/v1/limits',
    {
      schema: {
        operationId: 'getLimits',
        tags: ['limits'],
        summary: 'Per provider: limits, circuit state, account caps and live usage',
        security: [{ bearerAuth: [] }],
        response: {
          200: Type.Object({ data: Type.Array(ProviderLimits) }, { description: 'One entry per known provider' }),
          ...problems(401, 403, 429, 503),
        },
      },
      config: { auth: 'tenant' },
    },
    async () => ({ data: (await app.files.limits()) as never }),
  )
}

export default limitsRoutes
