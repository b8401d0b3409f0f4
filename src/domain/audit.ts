/**
 * Reading the audit (GET /v1/audit) and keeping it to AUDIT_RETENTION_DAYS. The events themselves
 * are written by the SQL functions that make the changes (migrations/0008_access.sql), in their
 * transaction, with who acts (src/audit-context.ts); `cleanup.run`, which changes nothing by itself,
 * is recorded here. An admin reads every tenant's events (and the service's own, such as cleanup
 * runs, which belong to no tenant); a `keys` credential reads its own tenant's.
 */
import type { StorePort } from '../store/port.js'
import { type AuditEventRow, listAuditEvents, recordAuditEvent } from '../store/queries.js'
import { type Caller, listedTenant } from './caller.js'
import { decodeCursor, encodeCursor, iso } from './file-record.js'

/** The API's audit event: the row, its time in RFC 3339 UTC. */
export type AuditEvent = AuditEventRow

export interface AuditQuery {
  tenant?: string | undefined
  action?: string | undefined
  target?: string | undefined
  since?: string | undefined
  limit: number
  after?: string | undefined
}

export const toAuditEvent = (row: AuditEventRow): AuditEvent => ({
  id: row.id,
  at: iso(row.at),
  tenant_id: row.tenant_id,
  actor: row.actor,
  action: row.action,
  target: row.target,
  request_id: row.request_id,
  ip: row.ip,
  detail: row.detail,
})

export class AuditService {
  constructor(private readonly store: StorePort) {}

  async list(
    caller: Caller,
    query: AuditQuery,
  ): Promise<{ data: AuditEvent[]; has_more: boolean; next_cursor: string | null }> {
    const after = query.after === undefined ? undefined : decodeCursor(query.after)
    const page = await listAuditEvents(this.store, {
      tenantId: listedTenant(caller, query.tenant),
      action: query.action,
      target: query.target,
      since: query.since,
      limit: query.limit,
      after: after && { at: after.createdAt, id: after.id },
    })
    const last = page.data.at(-1)
    return {
      data: page.data.map(toAuditEvent),
      has_more: page.has_more,
      next_cursor: page.has_more && last ? encodeCursor({ created_at: last.at, id: last.id }) : null,
    }
  }
}

/** Records a cleanup run someone asked for (not a dry run): the jobs and what each did. */
export function recordCleanupRun(store: StorePort, detail: Record<string, unknown>): Promise<unknown> {
  return recordAuditEvent(store, { action: 'cleanup.run', detail })
}
