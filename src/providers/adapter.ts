/**
 * A ProviderAdapter: the files client of one provider, each call run through that provider's
 * resilience policy. Uploads also take a bulkhead slot; the other operations only share the
 * breaker, the retries and the timeouts.
 */
import { isProviderError } from './errors.js'
import { FilesClient, type ProviderDialect } from './files-client.js'
import { ProviderResilience, type ResilienceSettings } from './resilience.js'
import type { ProviderAdapter, ProviderConfig, ProviderEvents, ProviderFile, UploadInput } from './types.js'

/** The settings every adapter shares: retries, the breaker, the timeouts and the upload bulkhead. */
export interface AdapterSettings {
  retry: ResilienceSettings['retry']
  circuit: ResilienceSettings['circuit']
  /** PROVIDER_TIMEOUT_MS (one attempt) and UPLOAD_TIMEOUT_MS (all attempts of one call). */
  timeouts: { providerAttemptMs: number; uploadMs: number }
  providerMaxConcurrentUploads: number
}

export interface ClosableProviderAdapter extends ProviderAdapter {
  close(): Promise<void>
}

const PAGE_SIZE = 100

export function createProviderAdapter(
  config: ProviderConfig,
  settings: AdapterSettings,
  dialect: ProviderDialect,
  events?: ProviderEvents,
): ClosableProviderAdapter {
  const name = config.name
  const client = new FilesClient({
    provider: name,
    baseUrl: config.baseUrl,
    apiKey: config.apiKey,
    dialect,
    // What a provider's own "too large" refers to: the operator's cap, or the documented one beneath it.
    limitBytes: Math.min(config.maxFileBytes, config.documentedMaxFileBytes ?? Number.POSITIVE_INFINITY),
    idleTimeoutMs: settings.timeouts.providerAttemptMs,
    connections: Math.max(settings.providerMaxConcurrentUploads * 2, 16),
  })
  const resilience = new ProviderResilience({
    provider: name,
    retry: settings.retry,
    circuit: settings.circuit,
    attemptTimeoutMs: settings.timeouts.providerAttemptMs,
    budgetMs: settings.timeouts.uploadMs,
    maxConcurrentUploads: settings.providerMaxConcurrentUploads,
    events,
  })

  const isNotFound = (err: unknown) => isProviderError(err) && err.notFound

  async function* listAll(opts: { purpose?: string } = {}): AsyncGenerator<ProviderFile> {
    yield* client.listAll({ ...opts, pageSize: PAGE_SIZE }, (fn) => resilience.run({ op: 'list' }, fn))
  }

  return {
    name,
    config,

    upload(input: UploadInput, signal?: AbortSignal) {
      const { source } = input
      const stream = source.kind === 'stream' ? source : undefined
      return resilience.run(
        { op: 'upload', bulkhead: true, oneShot: stream !== undefined, signal, senderFailure: stream?.senderFailure },
        (s) => client.upload(input, s),
      )
    },

    async retrieve(id: string) {
      if (!dialect.hasRetrieve) {
        // GLM documents no GET /files/{id}: find the file in the listing instead.
        for await (const file of listAll()) if (file.id === id) return file
        return null
      }
      try {
        return await resilience.run({ op: 'retrieve' }, (s) => client.retrieve(id, s))
      } catch (err) {
        if (isNotFound(err)) return null
        throw err
      }
    },

    async delete(id: string) {
      try {
        await resilience.run({ op: 'delete' }, (s) => client.delete(id, s))
        return { alreadyGone: false }
      } catch (err) {
        // A 404 from the provider means the file is already gone there: it counts as deleted.
        if (isNotFound(err)) return { alreadyGone: true }
        throw err
      }
    },

    listAll,

    content(id: string) {
      return resilience.run({ op: 'content' }, (s) => client.content(id, s))
    },

    circuitState: () => resilience.state(),
    retryAfterMs: () => resilience.retryAfterMs(),

    async close() {
      resilience.dispose()
      await client.close()
    },
  }
}
