/**
 * Any OpenAI-compatible files API (platform.openai.com/docs/api-reference/files): cursor pages
 * with `after`/`limit`/`order` and `{data, first_id, last_id, has_more}`; errors
 * `{"error":{"message","type","param","code"}}`, which the shared defaults in errors.ts read.
 */
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
