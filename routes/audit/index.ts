/**
 * GET /v1/audit: who changed what (docs/security.md, "What is audited"). Admin: every tenant's
 * events and the service's own (cleanup runs), or one tenant's with ?tenant=; scope `keys`: its own
 * tenant's. Newest first, with the usual cursor.
 */
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox'
import { Nullable } from '../../src/schemas.js'
import { tenantIdSource } from '../../src/tenant.js'
import { Page, pageQuery, problems, SafeText } from '../schemas.js'

export const AuditEventSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    at: Type.String({ format: 'date-time' }),
    tenant_id: Nullable(Type.String({ description: 'null: the service as a whole (a cleanup run)' })),
    actor: Type.String({ description: 'key:<id>, env:<tenant>, jwt:<sub>, open, cli or system' }),
    action: Type.String({
      description:
        'file.upload, file.delete, file.expire, file.copy, file.heal, key.create, key.revoke, key.rotate, cleanup.run',
    }),
    target: Nullable(Type.String({ description: 'The file or key id' })),
    request_id: Nullable(Type.String({ description: 'The x-request-id of the request that made the change' })),
    ip: Nullable(Type.String({ description: 'The client address of that request' })),
    detail: Type.Record(Type.String(), Type.Unknown()),
  },
  {
    $id: 'AuditEvent',
    examples: [
      {
        id: '3f2c1b0a-9d8e-4c7b-a6f5-e4d3c2b1a090',
        at: '2026-11-26T08:30:00.000Z',
        tenant_id: 'acme',
        actor: 'key:k3v9q2m8x1c4b7n5',
        action: 'file.delete',
        target: '0b6f7c1e-3f6a-4c47-9a55-3c1b1d2f8e10',
        request_id: '5d1c7f0e-58b3-4a8e-9d39-63a3c7c1f0aa',
        ip: '10.0.3.17',
        detail: { reason: 'manual', provider: 'kimi' },
      },
    ],
  },
)

const auditRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.addSchema(AuditEventSchema)

  app.get(
    '/v1/audit',
    {
      schema: {
        operationId: 'listAuditEvents',
        tags: ['audit'],
        summary: 'The audit: every change, newest first (admin: every tenant; scope keys: its own tenant)',
        querystring: Type.Object({
          tenant: Type.Optional(Type.String({ pattern: tenantIdSource, description: 'Admin: this tenant only' })),
          action: Type.Optional(
            Type.String({ pattern: '^[a-z]+\\.[a-z_]+$', maxLength: 64, examples: ['file.delete'] }),
          ),
          target: Type.Optional(SafeText(300, 'A file or key id')),
          since: Type.Optional(Type.String({ format: 'date-time', description: 'Events at or after this time' })),
          ...pageQuery,
        }),
        response: {
          200: Page(Type.Ref(AuditEventSchema), 'A page of events, newest first'),
          ...problems(400, 401, 403, 429, 503),
        },
      },
      config: { scope: 'keys' },
    },
    async (request) => app.audit.list(request.auth, request.query),
  )
}

export default auditRoutes
