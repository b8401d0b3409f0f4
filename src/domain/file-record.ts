/**
 * The API's File object (docs/api.md) and its mapping from the store's rows (src/store/rows.ts).
 * Bookkeeping columns (delete attempts, claim tokens) stay inside; timestamps leave as RFC 3339 UTC.
 */
import { AppError } from '../errors.js'
import type { ProviderState } from '../schemas.js'
import type { FileRow } from '../store/rows.js'

export type { FileRow } from '../store/rows.js'

/** The API's File: the row without its bookkeeping, plus `deduplicated` on upload responses. */
export type FileObject = Omit<
  FileRow,
  'provider_deleted_at' | 'delete_attempts' | 'last_delete_error' | 'provider_state'
> & {
  provider_state: ProviderState | null
  deduplicated?: boolean
}

// The functions run with timezone UTC, so their timestamps read `…T12:00:00.123456+00:00`: cut
// to milliseconds by hand (what Date would do, without parsing and formatting a date per field).
const utcTimestamp = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?\+00:00$/
export const iso = (ts: string) => {
  const m = utcTimestamp.exec(ts)
  return m ? `${m[1]}.${(m[2] ?? '').padEnd(3, '0').slice(0, 3)}Z` : new Date(ts).toISOString()
}
const isoOrNull = (ts: string | null) => (ts === null ? null : iso(ts))

export function toFileObject(row: FileRow, deduplicated?: boolean): FileObject {
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    provider: row.provider,
    provider_file_id: row.provider_file_id,
    purpose: row.purpose,
    filename: row.filename,
    mime_type: row.mime_type,
    bytes: Number(row.bytes),
    sha256: row.sha256,
    status: row.status,
    error: row.error,
    metadata: row.metadata ?? {},
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
    last_used_at: iso(row.last_used_at),
    expires_at: isoOrNull(row.expires_at),
    deleted_at: isoOrNull(row.deleted_at),
    deletion_reason: row.deletion_reason,
    provider_deleted: row.provider_deleted,
    provider_state: row.provider_state ?? null,
    original_stored: row.original_stored ?? false,
    ...(deduplicated === undefined ? {} : { deduplicated }),
  }
}

/** Opaque keyset cursor: the last row's exact created_at (microseconds) and id (files, keys, audit events). */
export function encodeCursor(row: Pick<FileRow, 'created_at' | 'id'>): string {
  return Buffer.from(JSON.stringify([row.created_at, row.id])).toString('base64url')
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
/** created_at exactly as the SQL functions write it (UTC, microseconds): anything else is forged. */
const cursorTimestamp =
  /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?\+00:00$/
/** A cursor this service issues is about 110 characters. */
const maxCursorLength = 256

/** The key a cursor of encodeCursor holds; its id must match `idPattern` (a uuid by default). */
export function decodeCursor(cursor: string, idPattern: RegExp = uuidPattern): { createdAt: string; id: string } {
  try {
    const value =
      cursor.length <= maxCursorLength ? JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) : null
    if (
      Array.isArray(value) &&
      value.length === 2 &&
      typeof value[0] === 'string' &&
      cursorTimestamp.test(value[0]) &&
      !Number.isNaN(Date.parse(value[0])) &&
      typeof value[1] === 'string' &&
      idPattern.test(value[1])
    ) {
      return { createdAt: value[0], id: value[1] }
    }
  } catch {
    // fall through to the validation error
  }
  throw new AppError('VALIDATION_FAILED', { detail: 'after: not a cursor this service issued' })
}

export const isUuid = (s: string) => uuidPattern.test(s)
