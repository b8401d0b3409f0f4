/** Response schemas shared by the routes; they are the OpenAPI components as well. */
import { type TSchema, Type } from '@sinclair/typebox'
import { DeletionReasonSchema, FileStatusSchema, Nullable, ProviderStateSchema } from '../src/schemas.js'

const Timestamp = Type.String({ format: 'date-time' })

export const FileSchema = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    tenant_id: Type.String(),
    provider: Type.String({ examples: ['kimi'] }),
    provider_file_id: Nullable(Type.String({ description: 'Pass this to the provider chat API; null until uploaded' })),
    purpose: Type.String({ examples: ['file-extract'] }),
    filename: Type.String({ description: 'Sanitised basename' }),
    mime_type: Type.String(),
    bytes: Type.Integer({ minimum: 0 }),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    status: FileStatusSchema,
    error: Nullable(Type.String()),
    metadata: Type.Record(Type.String(), Type.Unknown()),
    created_at: Timestamp,
    updated_at: Timestamp,
    last_used_at: Timestamp,
    expires_at: Nullable(Timestamp),
    deleted_at: Nullable(Timestamp),
    deletion_reason: Nullable(DeletionReasonSchema),
    provider_deleted: Type.Boolean({ description: 'false while the provider delete is still pending' }),
    provider_state: Nullable(
      Type.Union(ProviderStateSchema.anyOf, {
        description:
          "The provider's processing of the file (Gemini: processing, then active or failed); null for providers without one. GET /v1/files/{id} asks the provider again while it is processing",
      }),
    ),
    original_stored: Type.Boolean({
      description: 'The original bytes are kept (ORIGINALS_URL): the provider copy can be remade from them',
    }),
    deduplicated: Type.Optional(Type.Boolean({ description: 'On upload responses: answered from a live duplicate' })),
  },
  {
    $id: 'File',
    examples: [
      {
        id: '0b6f7c1e-3f6a-4c47-9a55-3c1b1d2f8e10',
        tenant_id: 'acme',
        provider: 'kimi',
        provider_file_id: 'cq7n3cm4ks1fnb1d3u5g',
        purpose: 'file-extract',
        filename: 'report.pdf',
        mime_type: 'application/pdf',
        bytes: 482113,
        sha256: '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
        status: 'completed',
        error: null,
        metadata: { conversation: 'c-42' },
        created_at: '2026-11-25T10:00:00.000Z',
        updated_at: '2026-11-25T10:00:01.200Z',
        last_used_at: '2026-11-25T10:00:01.200Z',
        expires_at: null,
        deleted_at: null,
        deletion_reason: null,
        provider_deleted: false,
        provider_state: null,
        original_stored: true,
        deduplicated: false,
      },
    ],
  },
)

export const ProblemSchema = Type.Object(
  {
    type: Type.String({ format: 'uri' }),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.String({
      description: 'Stable error code from the catalogue (docs/api.md, Errors); branch on it, not on title or detail',
    }),
    instance: Type.String({ description: 'The request id' }),
  },
  {
    $id: 'Problem',
    additionalProperties: true,
    description: 'RFC 9457 problem details; extensions such as provider, limit_bytes, allowed may follow',
    examples: [
      {
        type: 'https://filegate.dev/problems/file-too-large',
        title: 'File exceeds the provider limit',
        status: 413,
        detail: 'The file is larger than 20971520 bytes, the limit for glm',
        code: 'FILE_TOO_LARGE',
        instance: '5d1c7f0e-58b3-4a8e-9d39-63a3c7c1f0aa',
        provider: 'glm',
        limit_bytes: 20971520,
      },
    ],
  },
)

/**
 * A short text parameter (query or path) as a client may send it: no control characters (a NUL
 * cannot reach Postgres text), bounded length. Validation refuses anything else with 400.
 */
export const SafeText = (maxLength: number, description?: string) =>
  Type.String({ maxLength, pattern: '^[^\\u0000-\\u001f\\u007f]*$', ...(description ? { description } : {}) })

export const Problem = Type.Ref(ProblemSchema)
export const FileRef = Type.Ref(FileSchema)

/** The problem+json responses of a route, by status. */
export function problems(...statuses: number[]): Record<number, typeof Problem> {
  return Object.fromEntries(statuses.map((s) => [s, Problem]))
}

/** The query of a keyset-paginated list: `limit` 1-100 (default 20) and `after`, the previous page's next_cursor. */
export const pageQuery = {
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
  after: Type.Optional(
    Type.String({ maxLength: 256, pattern: '^[A-Za-z0-9_-]*$', description: 'next_cursor of the previous page' }),
  ),
}

/** A page of a keyset-paginated list, newest first: `{data, has_more, next_cursor}`. */
export const Page = <T extends TSchema>(item: T, description: string) =>
  Type.Object(
    { data: Type.Array(item), has_more: Type.Boolean(), next_cursor: Nullable(Type.String()) },
    { description },
  )
