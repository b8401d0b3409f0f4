/** Reading a tenant's files: one by id or by provider file id, a keyset page, the provider's content. */

import { AppError, errors } from '../errors.js'
import { purposeRule } from '../providers/catalog.js'
import type { ProviderRegistry } from '../providers/registry.js'
import type { ProviderConfig, ProviderContent } from '../providers/types.js'
import type { StorePort } from '../store/port.js'
import { getFile, getFileByProviderId, listFiles, recordProviderState } from '../store/queries.js'
import { decodeCursor, encodeCursor, type FileRow, isUuid } from './file-record.js'

export interface ListQuery {
  provider?: string | undefined
  status?: string | undefined
  sha256?: string | undefined
  purpose?: string | undefined
  includeDeleted?: boolean | undefined
  limit: number
  after?: string | undefined
  /** A keyset position given directly (the OpenAI facade pages by provider file id). */
  afterKey?: { createdAt: string; id: string } | undefined
  order?: 'asc' | 'desc'
}

/** A file's content as the provider serves it: its bytes, labelled as it labels them. */
export type FileContent = ProviderContent

export interface FilePage {
  rows: FileRow[]
  hasMore: boolean
  nextCursor: string | null
}

/** A tenant's file by its id; NOT_FOUND for another tenant's, an unknown or a malformed id. */
export async function readRow(store: StorePort, tenant: string, id: string): Promise<FileRow> {
  const row = isUuid(id) ? await getFile(store, tenant, id) : null
  if (!row) throw errors.fileNotFound(id)
  return row
}

export async function readRowByProviderId(
  store: StorePort,
  tenant: string,
  provider: string,
  providerFileId: string,
): Promise<FileRow> {
  const row = await getFileByProviderId(store, tenant, provider, providerFileId)
  if (!row) throw errors.fileNotFound(providerFileId)
  return row
}

export async function listPage(store: StorePort, tenant: string, query: ListQuery): Promise<FilePage> {
  const page = await listFiles(store, {
    tenantId: tenant,
    limit: query.limit,
    provider: query.provider,
    status: query.status,
    sha256: query.sha256?.toLowerCase(),
    purpose: query.purpose,
    includeDeleted: query.includeDeleted ?? false,
    after: query.afterKey ?? (query.after ? decodeCursor(query.after) : undefined),
    ascending: query.order === 'asc',
  })
  const last = page.data.at(-1)
  return { rows: page.data, hasMore: page.has_more, nextCursor: page.has_more && last ? encodeCursor(last) : null }
}

/** The provider's content of a completed file, where the provider documents content for its purpose. */
export async function readContent(
  providerConfigs: ProviderConfig[],
  providers: ProviderRegistry,
  row: FileRow,
): Promise<{ row: FileRow; content: FileContent }> {
  if (row.status !== 'completed' || !row.provider_file_id) {
    throw new AppError('CONTENT_UNAVAILABLE', {
      detail: `File ${row.id} is ${row.status}; no content at the provider`,
      extensions: { provider: row.provider },
    })
  }
  // Only where the provider documents content for the purpose: elsewhere it has none to give,
  // and asking would only cost a call and come back as a provider error.
  const config = providerConfigs.find((p) => p.name === row.provider)
  if (config && !purposeRule(config, row.purpose)?.content) {
    throw new AppError('CONTENT_UNAVAILABLE', {
      detail: `${row.provider} serves no content for files of purpose "${row.purpose}"`,
      extensions: { provider: row.provider, purpose: row.purpose },
    })
  }
  const adapter = providers.require(row.provider)
  return { row, content: await adapter.content(row.provider_file_id) }
}

/**
 * A live file the provider is still processing (provider_state `processing`), with the state the
 * provider reports now: recorded when it moved on (`active`, or `failed`: the row is then failed
 * with the provider's message). Any other row, or a provider that cannot be asked right now
 * (unconfigured, failing, open circuit), leaves the row as stored: a read never fails for it.
 */
export async function refreshProviderState(
  store: StorePort,
  providers: ProviderRegistry,
  row: FileRow,
): Promise<FileRow> {
  if (row.provider_state !== 'processing' || row.status !== 'completed' || !row.provider_file_id) return row
  const adapter = providers.get(row.provider)
  if (!adapter || adapter.circuitState() === 'open') return row
  let file: Awaited<ReturnType<typeof adapter.retrieve>>
  try {
    file = await adapter.retrieve(row.provider_file_id)
  } catch {
    return row
  }
  if (!file?.state || file.state === 'processing') return row
  const updated = await recordProviderState(store, row.tenant_id, row.id, {
    state: file.state,
    error: file.stateMessage,
  })
  return updated ?? row
}
