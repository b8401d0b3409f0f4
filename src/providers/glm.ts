/**
 * Zhipu GLM files API dialect. Docs: docs.bigmodel.cn/api-reference (file management: `GET
 * /files?purpose=&after=&limit=` → `{object, data, has_more}`, no retrieve) and the error code
 * tables at docs.z.ai/api-reference/api-code and docs.bigmodel.cn/cn/api/api-code
 * (`{"error":{"code":"<string>","message"}}`).
 */
import { type ErrorDialect, misconfigured, quotaExceeded, rateLimited, rejected, tooLarge } from './errors.js'
import type { ProviderDialect } from './files-client.js'

const classifyError: ErrorDialect = (e) => {
  switch (e.code) {
    // Account in arrears: PROVIDER_QUOTA_EXCEEDED (507), never retried.
    case '1113':
      return quotaExceeded(e)
    // Account inactive, missing, locked (1112) or locked for irregular activity (1121): PROVIDER_ERROR,
    // not PROVIDER_REJECTED. Nothing is wrong with the file, so a 422 would send the client off to
    // change it; an operator has to sort out the account, and retrying cannot help.
    case '1110':
    case '1111':
    case '1112':
    case '1121':
      return misconfigured(e, 'account is locked or inactive')
    case '1000':
    case '1001':
    case '1002':
    case '1003':
    case '1004':
      return misconfigured(e)
    // Concurrency / frequency limits: transient.
    case '1302':
    case '1303':
    case '1305':
      return rateLimited(e)
    // Daily call cap: a rate limit that will not clear within one request.
    case '1304':
      return rateLimited(e, false)
    // "Usage limit reached … resets at ${next_flush_time}" (1308), the weekly/monthly limit (1310) and
    // "your GLM Coding Plan has expired" (1309): the account's allowance is used up until a reset or
    // a renewal, hours or days away. Not a health signal, not retryable (docs.bigmodel.cn/cn/api/api-code).
    case '1308':
    case '1309':
    case '1310':
      return quotaExceeded(e)
    // "This model is overloaded right now, try again later": transient.
    case '1312':
      return rateLimited(e)
    // Fair-use restriction on the account: waiting within one request does not lift it.
    case '1313':
      return rateLimited(e, false)
    // Content security refusal.
    case '1301':
      return rejected(e)
  }
  if (e.status === 434) return misconfigured(e, 'denies this key the files API')
  if (e.status === 435) return tooLarge(e)
  return undefined
}

export const glmDialect: ProviderDialect = {
  paginated: true,
  hasRetrieve: false,
  listQuery: ({ purpose, after, limit }) => ({
    ...(purpose ? { purpose } : {}),
    ...(after ? { after } : {}),
    ...(limit ? { limit: String(limit) } : {}),
  }),
  classifyError,
}
