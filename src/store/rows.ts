/**
 * The rows the SQL functions return (migrations/), as the store hands them over: the store owns
 * their shape; the domain maps them to the API's objects (src/domain/file-record.ts).
 */
import type { DeletionReason, FileStatus, ProviderState } from '../schemas.js'

/** A row as the SQL functions return it (filegate_file_json). */
export interface FileRow {
  id: string
  tenant_id: string
  provider: string
  provider_file_id: string | null
  purpose: string
  filename: string
  mime_type: string
  bytes: number
  sha256: string
  status: FileStatus
  error: string | null
  metadata: Record<string, unknown>
  created_at: string
  updated_at: string
  last_used_at: string
  expires_at: string | null
  deleted_at: string | null
  deletion_reason: DeletionReason | null
  provider_deleted: boolean
  /** Rows written before schema 7 have no such field. */
  provider_state?: ProviderState | null
  original_stored: boolean
  provider_deleted_at: string | null
  delete_attempts: number
  last_delete_error: string | null
}
