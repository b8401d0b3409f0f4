/**
 * Moonshot Kimi files API dialect. Docs: platform.moonshot.ai/docs/api/files (one page of files,
 * `GET /files/{id}`, extracted text at `/content`), platform.moonshot.ai/docs/api/errors
 * (`{"error":{"type","message"}}`) and kimi.com/help/kimi-api/api-error-codes (403 = insufficient balance).
 */
import { type ErrorDialect, quotaExceeded, rateLimited, rejected } from './errors.js'
import type { ProviderDialect } from './files-client.js'

const BALANCE = /balance|quota|suspended|recharge|arrears|billing/i

const classifyError: ErrorDialect = (e) => {
  // "403 Forbidden (insufficient balance): account balance depleted, top up in console"
  // (kimi.com/help/kimi-api/api-error-codes). An empty account, not a bad key: nothing a retry or
  // another key fixes. Other 403s (permission_denied_error) stay the shared "rejected key" default.
  if (e.status === 403 && (e.type === 'exceeded_current_quota_error' || BALANCE.test(e.message))) {
    return quotaExceeded(e)
  }
  if (e.status === 429) {
    // "exceeded_current_quota_error": the account is out of credit; waiting does not help.
    if (e.type === 'exceeded_current_quota_error') return quotaExceeded(e)
    if (e.type === 'rate_limit_reached_error' || e.type === 'engine_overloaded_error') return rateLimited(e)
    return undefined
  }
  // "The number of files you have uploaded exceeded the max file count {n}" (400) is caught by
  // the shared "file count" rule; "content_filter" is a refusal of the content.
  if (e.status === 400 && e.type === 'content_filter') return rejected(e)
  return undefined
}

export const kimiDialect: ProviderDialect = {
  // GET /files takes no cursor and returns every file (at most 1,000 per account) at once.
  paginated: false,
  hasRetrieve: true,
  listQuery: () => ({}),
  classifyError,
}
