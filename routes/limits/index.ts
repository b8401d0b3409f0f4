/**
 * GET /v1/limits: what each provider accepts, its circuit state, and the caller's usage against its
 * quota; the account's usage (every tenant's) for admin keys only.
 */
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox'
import { ProviderLimitsSchema } from '../../src/schemas.js'
import { problems } from '../schemas.js'

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
          200: Type.Object({ data: Type.Array(ProviderLimitsSchema) }, { description: 'One entry per known provider' }),
          ...problems(401, 403, 429, 503),
        },
      },
      config: { auth: 'tenant' },
    },
    async (request) => ({
      data: await app.files.limits({ tenant: request.auth.tenant, accountUsage: request.auth.isAdmin }),
    }),
  )
}

export default limitsRoutes
