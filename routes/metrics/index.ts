import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox'

const metricsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/metrics',
    {
      schema: {
        operationId: 'metrics',
        tags: ['probes'],
        summary: 'Prometheus metrics (text exposition format)',
        produces: ['text/plain'],
        response: { 200: Type.String({ description: 'Prometheus text format 0.0.4' }) },
      },
      config: { rateLimit: false, scope: 'public' },
    },
    async (_request, reply) => {
      reply.header('content-type', app.metrics.registry.contentType)
      return app.metrics.registry.metrics()
    },
  )
}

export default metricsRoutes
