/**
 * The shapes the API answers with that the domain builds too, as TypeBox schemas: the routes
 * declare them as responses (and so in the OpenAPI document), the domain's types derive from them
 * (Static<>), so a field cannot change in one place only.
 */
import { type Static, type TSchema, Type } from '@sinclair/typebox'

/** A value or null (JSON null: the field is present and empty). */
export const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()])

export const fileStatuses = ['pending', 'uploading', 'completed', 'failed', 'deleted'] as const
export const FileStatusSchema = Type.Union(fileStatuses.map((s) => Type.Literal(s)))
export type FileStatus = Static<typeof FileStatusSchema>

export const DeletionReasonSchema = Type.Union(
  (['manual', 'expired', 'orphaned', 'quota', 'reconciled'] as const).map((s) => Type.Literal(s)),
)
export type DeletionReason = Static<typeof DeletionReasonSchema>

/** What a provider that processes files after upload says of one (Gemini); null for the others. */
export const ProviderStateSchema = Type.Union((['processing', 'active', 'failed'] as const).map((s) => Type.Literal(s)))
export type ProviderState = Static<typeof ProviderStateSchema>

/** One check of GET /readyz: whether it passed, and why not. */
export const ReadinessCheckSchema = Type.Object({ ok: Type.Boolean(), detail: Type.Optional(Type.String()) })
export type ReadinessCheck = Static<typeof ReadinessCheckSchema>

/** Why the service is not ready: the first that applies, in this order. */
export const NotReadyReasonSchema = Type.Union(
  (['starting', 'shutting down', 'database unavailable', 'schema not ready', 'originals unavailable'] as const).map(
    (r) => Type.Literal(r),
  ),
  { description: 'Why the service is not ready (absent when ready)' },
)
export type NotReadyReason = Static<typeof NotReadyReasonSchema>

/** One provider in GET /v1/limits: what it accepts, its circuit, the caller's (and for admins the account's) usage. */
export const ProviderLimitsSchema = Type.Object({
  provider: Type.String(),
  kind: Type.String({ description: 'kimi | glm | openai (native or OpenAI-compatible) | anthropic | gemini' }),
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
export type ProviderLimits = Static<typeof ProviderLimitsSchema>

/**
 * The longest per-file TTL any route accepts, in seconds (10 years): `expires_in` on an upload, a
 * copy, a resumable upload and wherever else a client names one. One bound: past it a route answers
 * 400, and the expiry it computes always stays a date Postgres and JavaScript can hold.
 */
export const maxExpiresInSeconds = 10 * 365 * 24 * 3600

/** `expires_in` in a JSON body: whole seconds, 1 to maxExpiresInSeconds. Every JSON route that takes a TTL uses it. */
export const ExpiresInSchema = (description = 'Per-file TTL in seconds (at most 10 years)') =>
  Type.Integer({ minimum: 1, maximum: maxExpiresInSeconds, description })
