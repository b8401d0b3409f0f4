/**
 * GET /v1/limits: what each provider accepts, its circuit state, and the caller's usage against its
 * quota; the account's usage (every tenant's) for admin keys only.
 */
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox'
import { isAdmin } from '../../src/domain/caller.js'
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
        response: {
          200: Type.Object({ data: Type.Array(ProviderLimitsSchema) }, { description: 'One entry per known provider' }),
          ...problems(401, 403, 429, 503),
        },
      },
      config: { scope: 'files:read' },
    },
    async (request) => ({
      data: await app.files.limits({ tenant: request.auth.tenant, accountUsage: isAdmin(request.auth) }),
    }),
  )
}

export default limitsRoutes
