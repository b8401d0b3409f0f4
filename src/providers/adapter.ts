/**
 * A ProviderAdapter: the wire of one provider (its HTTP shapes), each call run through that
 * provider's resilience policy. Uploads also take an upload slot; the other operations only share
 * the breaker, the retries and the timeouts. The policy is the same whatever the wire: the
 * OpenAI-style FilesClient (Kimi, GLM, OpenAI-compatible) and the Gemini client plug in alike.
 */
import { isProviderError, type ProviderError } from './errors.js'
import { FilesClient, type ProviderDialect } from './files-client.js'
import { ProviderResilience, type ResilienceSettings } from './resilience.js'
import type {
  ProviderAdapter,
  ProviderConfig,
  ProviderEvents,
  ProviderFile,
  ProviderWire,
  SlotLease,
  UploadInput,
  UploadProgress,
} from './types.js'
import { providerIdPattern } from './wire-http.js'

/** The settings every adapter shares: retries, the breaker, the timeouts and the upload slots. */
export interface AdapterSettings {
  retry: ResilienceSettings['retry']
  circuit: ResilienceSettings['circuit']
  /** PROVIDER_TIMEOUT_MS (one attempt) and UPLOAD_TIMEOUT_MS (all attempts of one call). */
  timeouts: { providerAttemptMs: number; uploadMs: number }
  providerMaxConcurrentUploads: number
  /** TENANT_MAX_SHARE: the share of the upload slots one tenant's client-paced uploads may hold. */
  tenantQuotas: { share: number }
}

/** What a wire is built with, beside its provider's config. */
export interface WireOptions {
  /** What a provider's own "too large" refers to, reported as `limit_bytes` on FILE_TOO_LARGE. */
  limitBytes: number
  /** undici idle timeouts: bound a stall even after an attempt returned a streamed body. */
  idleTimeoutMs: number
  connections: number
  /** RETRY_* settings, for a wire that resumes within one attempt (a failed Gemini chunk). */
  retry: ResilienceSettings['retry']
}

/** How a provider kind's wire is made. */
export interface WireKind {
  /** False when the provider has no single-file GET (GLM): retrieve finds the file by listing. */
  readonly hasRetrieve: boolean
  create(config: ProviderConfig, options: WireOptions): ProviderWire
}

/** The OpenAI-style files client of one dialect as a wire (the client ignores upload progress). */
export function filesClientWire(dialect: ProviderDialect): WireKind {
  return {
    hasRetrieve: dialect.hasRetrieve,
    create: (config, options) =>
      new FilesClient({
        provider: config.name,
        baseUrl: config.baseUrl,
        apiKey: config.apiKey,
        dialect,
        limitBytes: options.limitBytes,
        idleTimeoutMs: options.idleTimeoutMs,
        connections: options.connections,
      }),
  }
}

export interface ClosableProviderAdapter extends ProviderAdapter {
  close(): Promise<void>
}

const PAGE_SIZE = 100

export function wireOptions(config: ProviderConfig, settings: AdapterSettings): WireOptions {
  return {
    limitBytes: Math.min(config.maxFileBytes, config.documentedMaxFileBytes ?? Number.POSITIVE_INFINITY),
    idleTimeoutMs: settings.timeouts.providerAttemptMs,
    connections: Math.max(settings.providerMaxConcurrentUploads * 2, 16),
    retry: settings.retry,
  }
}

export function createProviderAdapter(
  config: ProviderConfig,
  settings: AdapterSettings,
  kind: WireKind,
  events?: ProviderEvents,
): ClosableProviderAdapter {
  const name = config.name
  const wire = kind.create(config, wireOptions(config, settings))
  const resilience = new ProviderResilience({
    provider: name,
    retry: settings.retry,
    circuit: settings.circuit,
    attemptTimeoutMs: settings.timeouts.providerAttemptMs,
    budgetMs: settings.timeouts.uploadMs,
    maxConcurrentUploads: settings.providerMaxConcurrentUploads,
    tenantShare: settings.tenantQuotas.share,
    events,
  })

  const isNotFound = (err: unknown) => isProviderError(err) && err.notFound

  /**
   * A failed upload that made a copy anyway (its reply was malformed): the copy is deleted now, by
   * the id the reply gave it. When that fails, an id filegate can record stays on the error for the
   * caller to record and delete through the sweeps; one it cannot record (a NUL in it) is left to
   * reconcile.
   */
  async function deleteStrayCopy(err: ProviderError): Promise<void> {
    const id = err.copyId as string
    try {
      await resilience.run({ op: 'delete' }, (s) => wire.delete(id, s))
      err.copyId = undefined
    } catch (deleteErr) {
      if (isNotFound(deleteErr) || !providerIdPattern.test(id)) err.copyId = undefined
    }
  }

  async function* listAll(opts: { purpose?: string } = {}): AsyncGenerator<ProviderFile> {
    yield* wire.listAll({ ...opts, pageSize: PAGE_SIZE }, (fn) => resilience.run({ op: 'list' }, fn))
  }

  return {
    name,
    config,
    retrieveByListing: !kind.hasRetrieve,

    uploadSlot: (request) => resilience.acquireUploadSlot(request),

    async upload(input: UploadInput, signal?: AbortSignal, slot?: SlotLease) {
      const { source } = input
      const stream = source.kind === 'stream' ? source : undefined
      // One per call: a retried attempt resumes where the earlier ones got to, where the wire can.
      const progress: UploadProgress = {}
      try {
        return await resilience.run(
          {
            op: 'upload',
            upload: true,
            slot,
            oneShot: stream !== undefined,
            signal,
            senderFailure: stream?.senderFailure,
          },
          (s) => wire.upload(input, s, progress),
        )
      } catch (err) {
        if (isProviderError(err) && err.copyId !== undefined) await deleteStrayCopy(err)
        throw err
      }
    },

    async retrieve(id: string) {
      if (!kind.hasRetrieve) {
        // GLM documents no GET /files/{id}: find the file in the listing instead.
        for await (const file of listAll()) if (file.id === id) return file
        return null
      }
      try {
        return await resilience.run({ op: 'retrieve' }, (s) => wire.retrieve(id, s))
      } catch (err) {
        if (isNotFound(err)) return null
        throw err
      }
    },

    async delete(id: string) {
      try {
        await resilience.run({ op: 'delete' }, (s) => wire.delete(id, s))
        return { alreadyGone: false }
      } catch (err) {
        // A 404 from the provider means the file is already gone there: it counts as deleted.
        if (isNotFound(err)) return { alreadyGone: true }
        throw err
      }
    },

    listAll,

    content(id: string) {
      return resilience.run({ op: 'content' }, (s) => wire.content(id, s))
    },

    circuitState: () => resilience.state(),
    retryAfterMs: () => resilience.retryAfterMs(),

    async close() {
      resilience.dispose()
      await wire.close()
    },
  }
}
