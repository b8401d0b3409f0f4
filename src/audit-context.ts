/**
 * Who acts, for the audit. The auth plugin sets it once per request (the actor, the request id the
 * response carries as x-request-id, the client address); the CLI sets `cli`. Outside both (the
 * scheduled sweeps) the actor is `system`. It travels with the async context, like a trace span,
 * so that src/store/queries.ts hands it to each SQL function that makes an audited change, which
 * records the event in the same transaction, without every domain call in between passing it on.
 */
import { AsyncLocalStorage } from 'node:async_hooks'

export interface AuditContext {
  /** `key:<id>`, `env:<tenant>`, `jwt:<sub>`, `open`, `cli` or `system`. */
  actor: string
  request_id: string | null
  ip: string | null
  /** Set around a copy: the upload it ends in is recorded as `file.copy` of `source_id`. */
  action?: 'file.copy'
  detail?: Record<string, unknown>
}

const storage = new AsyncLocalStorage<AuditContext>()

const systemContext: AuditContext = { actor: 'system', request_id: null, ip: null }

/** The context of the work in progress; `system` outside any request. */
export const currentAudit = (): AuditContext => storage.getStore() ?? systemContext

/** Runs `work` (and everything it starts) as `context`. */
export const actingAs = <T>(context: AuditContext, work: () => T): T => storage.run(context, work)

/** Runs a copy's upload: recorded as `file.copy` of `sourceId` by whoever acts now. */
export const asCopyOf = <T>(sourceId: string, work: () => T): T =>
  storage.run({ ...currentAudit(), action: 'file.copy', detail: { source_id: sourceId } }, work)
