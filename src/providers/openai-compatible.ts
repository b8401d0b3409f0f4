/**
 * Any OpenAI-compatible files API (platform.openai.com/docs/api-reference/files): cursor pages
 * with `after`/`limit`/`order` and `{data, first_id, last_id, has_more}`; errors
 * `{"error":{"message","type","param","code"}}`, which the shared defaults in errors.ts read
 * (429 `insufficient_quota` is a spent account, other 429s and 5xx are retried).
 */
import type { ProviderFacts } from './catalog.js'
import type { ProviderDialect } from './files-client.js'

export const openAiCompatibleDialect: ProviderDialect = {
  paginated: true,
  hasRetrieve: true,
  listQuery: ({ purpose, after, limit }) => ({
    ...(purpose ? { purpose } : {}),
    ...(after ? { after } : {}),
    ...(limit ? { limit: String(limit) } : {}),
    order: 'asc',
  }),
  classifyError: () => undefined,
}

/**
 * OpenAI's own API: the compatible dialect, plus the client's expires_in passed on as
 * `expires_after` (anchor `created_at`) when it lies in the documented range; outside it nothing is
 * sent and filegate's own expiry sweep alone deletes the file
 * (platform.openai.com/docs/api-reference/files/create: "Must be between 3600 (1 hour) and 2592000 (30 days)").
 */
export function openAiNativeDialect(range: NonNullable<ProviderFacts['expiresAfter']>): ProviderDialect {
  return {
    ...openAiCompatibleDialect,
    formFields(input) {
      const seconds = input.expiresInSeconds
      const fields: Array<[string, string]> = [['purpose', input.purpose]]
      if (
        seconds !== undefined &&
        Number.isInteger(seconds) &&
        seconds >= range.minSeconds &&
        seconds <= range.maxSeconds
      ) {
        // The form encoding of the nested object, as the reference's curl example sends it.
        fields.push(['expires_after[anchor]', 'created_at'], ['expires_after[seconds]', String(seconds)])
      }
      return fields
    },
  }
}
