/**
 * Keys kept in the database (docs/security.md): create, list, get, revoke, rotate. Scope `keys`
 * manages its own tenant's keys, never more than it holds itself; `admin` manages every tenant's.
 * The key itself (`fg_<id>_<secret>`) is in the answer to create and rotate only.
 */
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox'
import { scopes } from '../../src/domain/caller.js'
import { maxGraceSeconds } from '../../src/domain/keys.js'
import { Nullable } from '../../src/schemas.js'
import { tenantIdSource } from '../../src/tenant.js'
import { acceptEmptyJson } from '../json-body.js'
import { Page, pageQuery, problems, SafeText } from '../schemas.js'

const Timestamp = Type.String({ format: 'date-time' })
const ScopeSchema = Type.Union(
  scopes.map((s) => Type.Literal(s)),
  { description: 'files:read, files:write, keys (manage its tenant’s keys, read its audit), admin (everything)' },
)
const Tenant = (description: string) => Type.String({ pattern: tenantIdSource, description })

const keyExample = {
  id: 'k3v9q2m8x1c4b7n5',
  tenant_id: 'acme',
  name: 'nightly batch',
  scopes: ['files:read'],
  providers: ['kimi'],
  key_hint: 'x7Qa',
  created_at: '2026-11-25T10:00:00.000Z',
  created_by: 'env:*',
  expires_at: null,
  revoked_at: null,
  rotated_at: null,
  previous_key_expires_at: null,
  last_used_at: '2026-11-26T08:30:00.000Z',
}

const keyProperties = {
  id: Type.String({ description: 'The public id of the key (its second part: fg_<id>_<secret>)' }),
  tenant_id: Type.String(),
  name: Nullable(Type.String()),
  scopes: Type.Array(ScopeSchema),
  providers: Nullable(
    Type.Array(Type.String(), { description: 'The providers it may upload or copy to; null = every provider' }),
  ),
  key_hint: Type.String({ description: 'The last 4 characters of the key' }),
  created_at: Timestamp,
  created_by: Type.String({ description: 'The actor that created it (key:<id>, env:<tenant>, jwt:<sub>, open, cli)' }),
  expires_at: Nullable(Timestamp),
  revoked_at: Nullable(Timestamp),
  rotated_at: Nullable(Timestamp),
  previous_key_expires_at: Nullable(
    Type.String({
      format: 'date-time',
      description: 'After a rotation with a grace period: when the old secret stops',
    }),
  ),
  last_used_at: Nullable(Type.String({ format: 'date-time', description: 'Written at most once a minute' })),
}

export const KeySchema = Type.Object(keyProperties, {
  $id: 'Key',
  description: 'A key kept in the database; never its secret or digest',
  examples: [keyExample],
})

const NewKeySchema = Type.Object(
  {
    ...keyProperties,
    key: Type.String({ description: 'The key, fg_<id>_<secret>: shown this once, only its SHA-256 is kept' }),
  },
  {
    $id: 'NewKey',
    description: 'A key and its secret (the answer to create and rotate)',
    examples: [{ ...keyExample, key: 'fg_k3v9q2m8x1c4b7n5_Yc0Qb5cX2o8nWm1Zr4TtLk9VvE3sHjGf7AdPq6UyIx7Qa' }],
  },
)

const KeyRef = Type.Ref(KeySchema)
const NewKeyRef = Type.Ref(NewKeySchema)
const IdParams = Type.Object({ id: SafeText(64, 'The key id') })

const CreateBody = Type.Object(
  {
    tenant: Type.Optional(Tenant('Admin: the tenant of the new key (required); others: their own, or absent')),
    name: Type.Optional(SafeText(200, 'A label for people')),
    scopes: Type.Optional(
      Type.Array(ScopeSchema, {
        minItems: 1,
        maxItems: scopes.length,
        uniqueItems: true,
        description: 'Default files:read, files:write; only scopes the caller holds',
      }),
    ),
    providers: Type.Optional(
      Nullable(
        Type.Array(SafeText(32), {
          maxItems: 64,
          uniqueItems: true,
          description:
            'The providers it may upload or copy to (auto chooses among them); null or absent: every provider',
        }),
      ),
    ),
    expires_in: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 10 * 365 * 86_400, description: 'Seconds until the key expires' }),
    ),
  },
  { additionalProperties: false, examples: [{ tenant: 'acme', name: 'nightly batch', scopes: ['files:read'] }] },
)

const keysRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.addSchema(KeySchema)
  app.addSchema(NewKeySchema)
  acceptEmptyJson(app)

  app.post(
    '/v1/keys',
    {
      schema: {
        operationId: 'createKey',
        tags: ['keys'],
        summary: 'Create a key; the answer holds the key itself, this once',
        body: CreateBody,
        response: {
          201: { ...NewKeyRef, description: 'The new key and its secret' },
          ...problems(400, 401, 403, 429, 503),
        },
      },
      config: { scope: 'keys' },
    },
    async (request, reply) => {
      const body = request.body
      const made = await app.keys.create(request.auth, {
        tenant: body.tenant,
        name: body.name,
        scopes: body.scopes,
        providers: body.providers,
        expiresInSeconds: body.expires_in,
      })
      reply.code(201)
      return { ...made.key, key: made.secret }
    },
  )

  app.get(
    '/v1/keys',
    {
      schema: {
        operationId: 'listKeys',
        tags: ['keys'],
        summary: 'The keys the caller may manage, newest first (admin: every tenant, or ?tenant=)',
        querystring: Type.Object({
          tenant: Type.Optional(Tenant('Admin: only this tenant’s keys; others: their own tenant only')),
          ...pageQuery,
        }),
        response: {
          200: Page(KeyRef, 'A page of keys, newest first'),
          ...problems(400, 401, 403, 429, 503),
        },
      },
      config: { scope: 'keys' },
    },
    async (request) => app.keys.list(request.auth, request.query),
  )

  app.get(
    '/v1/keys/:id',
    {
      schema: {
        operationId: 'getKey',
        tags: ['keys'],
        summary: 'One key (404 when the caller may not manage it)',
        params: IdParams,
        response: { 200: { ...KeyRef, description: 'The key' }, ...problems(401, 403, 404, 429, 503) },
      },
      config: { scope: 'keys' },
    },
    async (request) => app.keys.get(request.auth, request.params.id),
  )

  app.delete(
    '/v1/keys/:id',
    {
      schema: {
        operationId: 'revokeKey',
        tags: ['keys'],
        summary: 'Revoke a key: refused on every replica within a second; idempotent',
        params: IdParams,
        response: { 200: { ...KeyRef, description: 'The key, with revoked_at' }, ...problems(401, 403, 404, 429, 503) },
      },
      config: { scope: 'keys' },
    },
    async (request) => app.keys.revoke(request.auth, request.params.id),
  )

  app.post(
    '/v1/keys/:id/rotate',
    {
      schema: {
        operationId: 'rotateKey',
        tags: ['keys'],
        summary: 'A new secret for the same key id; the old one works until grace_seconds have passed',
        params: IdParams,
        body: Type.Object(
          {
            grace_seconds: Type.Integer({
              minimum: 0,
              maximum: maxGraceSeconds,
              default: 0,
              description: 'How long the old secret keeps working (0: it stops at once)',
            }),
          },
          { additionalProperties: false },
        ),
        response: {
          200: { ...NewKeyRef, description: 'The key and its new secret' },
          ...problems(400, 401, 403, 404, 429, 503),
        },
      },
      config: { scope: 'keys' },
    },
    async (request) => {
      const rotated = await app.keys.rotate(request.auth, request.params.id, request.body.grace_seconds)
      return { ...rotated.key, key: rotated.secret }
    },
  )
}

export default keysRoutes
