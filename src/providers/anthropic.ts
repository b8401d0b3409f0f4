/**
 * Anthropic's Files API dialect (docs.claude.com/en/api/files-create and the pages beside it):
 * `x-api-key` + `anthropic-version: 2023-06-01` + the beta header the Files API pages still
 * require (`anthropic-beta: files-api-2025-04-14`); a multipart `file` and no other field; the file
 * object `{id, type: "file", filename, mime_type, size_bytes, created_at (RFC 3339), downloadable}`;
 * list pages by `limit` (1–1000) and `after_id` → `{data, first_id, last_id, has_more}`; errors
 * `{"type":"error","error":{"type","message"}}` (docs.claude.com/en/api/errors).
 */
import { ANTHROPIC_PURPOSE } from './anthropic-facts.js'
import { type ErrorDialect, misconfigured, notFound, quotaExceeded, rateLimited, tooLarge } from './errors.js'
import type { ProviderDialect } from './files-client.js'
import type { ProviderFile } from './types.js'

export const ANTHROPIC_VERSION = '2023-06-01'
export const ANTHROPIC_FILES_BETA = 'files-api-2025-04-14'

const STORAGE = /storage|quota|limit/i

const classifyError: ErrorDialect = (e) => {
  switch (e.type) {
    // 429 "Your account has hit a rate limit" and 529 "Anthropic's API is temporarily
    // overloaded": transient, retried (honouring retry-after) and counted toward the breaker.
    case 'rate_limit_error':
    case 'overloaded_error':
      return rateLimited(e)
    // 413 "Request exceeds the maximum allowed number of bytes" (Files API: 500 MB).
    case 'request_too_large':
      return tooLarge(e)
    case 'authentication_error':
      return misconfigured(e)
    // 403: the key may not use the resource. The docs state the organisation's storage cap but
    // not the error that enforces it; a 403 that speaks of storage is taken as that cap.
    case 'permission_error':
      return STORAGE.test(e.message) ? quotaExceeded(e) : misconfigured(e, 'denies this key the files API')
    case 'not_found_error':
      return notFound(e)
  }
  // 529 without a parsable body is still the documented overload.
  if (e.status === 529) return rateLimited(e)
  // invalid_request_error and api_error fall through to the shared rules (400 refused, 5xx retried).
  return undefined
}

/** RFC 3339 to unix seconds; undefined when it does not parse. */
function rfc3339Seconds(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined
  const ms = Date.parse(value)
  return Number.isNaN(ms) ? undefined : Math.floor(ms / 1000)
}

function parseFile(f: Record<string, unknown>): ProviderFile | string {
  if (typeof f.id !== 'string' || f.id === '') return 'file without id'
  const createdAt = rfc3339Seconds(f.created_at)
  if (createdAt === undefined) return 'file without an RFC 3339 created_at'
  return {
    id: f.id,
    bytes: Number(f.size_bytes ?? 0),
    createdAt,
    filename: typeof f.filename === 'string' ? f.filename : '',
    // The API has no purpose: every Anthropic file is filed under filegate's one purpose for it.
    purpose: ANTHROPIC_PURPOSE,
  }
}

export const anthropicDialect: ProviderDialect = {
  paginated: true,
  hasRetrieve: true,
  // No purpose filter exists; `after_id` is the previous page's `last_id`.
  listQuery: ({ after, limit }) => ({
    ...(after ? { after_id: after } : {}),
    ...(limit ? { limit: String(Math.min(limit, 1000)) } : {}),
  }),
  classifyError,
  authHeaders: (apiKey) => ({
    'x-api-key': apiKey,
    'anthropic-version': ANTHROPIC_VERSION,
    'anthropic-beta': ANTHROPIC_FILES_BETA,
  }),
  // "file: The file to upload" is the only form field.
  formFields: () => [],
  parseFile,
}
