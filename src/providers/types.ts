/**
 * The port the domain sees: one ProviderAdapter per configured provider, whatever its dialect.
 * Adapters already apply timeouts, retries, the circuit breaker and the upload slots.
 */
import type { Readable } from 'node:stream'
import type { ProviderFacts, ProviderKind } from './catalog.js'
import type { SlotLease, SlotRefusalReason, SlotRequest } from './upload-slots.js'

export type { SlotLease, SlotRequest } from './upload-slots.js'

/** One provider as filegate serves it: its facts, the operator's caps and its key (providers/resolve.ts). */
export interface ProviderConfig extends ProviderFacts {
  name: string
  kind: ProviderKind
  apiKey: string | undefined
  /** False when no key is set: the provider is known but answers PROVIDER_NOT_CONFIGURED. */
  configured: boolean
}

export type CircuitState = 'closed' | 'open' | 'half_open'

export interface ProviderFile {
  id: string
  bytes: number
  /** Unix seconds, as the providers send it. */
  createdAt: number
  filename: string
  purpose: string
  status?: string
  /** Unix seconds: the provider's own expiry of the file (OpenAI expires_at, Gemini expirationTime). */
  expiresAt?: number | null
  /** Where the provider processes a file after upload (Gemini PROCESSING → ACTIVE | FAILED). */
  state?: 'processing' | 'active' | 'failed'
  /** The provider's message for a failed state. */
  stateMessage?: string
}

/**
 * A `file` or `buffer` source (a small body kept in memory) can be re-read, so its upload may be
 * retried; a `stream` source is one-shot
 * (e.g. a request body streamed straight through) and gets exactly one attempt.
 */
export type UploadSource =
  | { kind: 'file'; path: string; bytes: number }
  | { kind: 'buffer'; buffer: Buffer; bytes: number }
  | {
      kind: 'stream'
      stream: AsyncIterable<Buffer>
      bytes?: number
      /**
       * Whether a failed attempt was the sender's doing (the body over its limit, broken off, or
       * too slow while the attempt timed out): then the error to answer with. Such a failure
       * says nothing about the provider, so it never counts toward its circuit breaker.
       */
      senderFailure?: (attemptTimedOut: boolean) => Error | undefined
    }

export interface UploadInput {
  source: UploadSource
  filename: string
  mimeType: string
  purpose: string
  /** The client's expires_in: a provider that documents an expiry of its own may be told it. */
  expiresInSeconds?: number
}

/**
 * What one upload call's earlier attempts left behind for the next one to resume from (a
 * resumable upload session). The adapter creates one per upload call and hands it to every
 * attempt; a wire without resumable uploads ignores it.
 */
export interface UploadProgress {
  /** The session URL a resumable upload started. */
  sessionUrl?: string
  /** How many of the file's bytes the provider has confirmed. */
  confirmedBytes?: number
}

/**
 * One provider's wire: its HTTP shapes, one call per method, no retrying (the adapter runs each
 * call through the shared resilience policy). The OpenAI-style FilesClient (Kimi, GLM,
 * OpenAI-compatible) is one; the Gemini client (gemini.ts) another.
 */
export interface ProviderWire {
  upload(input: UploadInput, signal: AbortSignal, progress: UploadProgress): Promise<ProviderFile>
  retrieve(id: string, signal: AbortSignal): Promise<ProviderFile>
  delete(id: string, signal: AbortSignal): Promise<void>
  /** Every file, page by page, each page fetched through `run` (retries, breaker, timeouts). */
  listAll(
    opts: { purpose?: string; pageSize?: number },
    run: <T>(fn: (signal: AbortSignal | undefined) => Promise<T>) => Promise<T>,
  ): AsyncIterable<ProviderFile>
  /** The body is handed over unread; the caller must consume or destroy it. */
  content(id: string, signal: AbortSignal): Promise<ProviderContent>
  /** Lets calls in flight finish, then destroys what is left after `graceMs`. */
  close(graceMs?: number): Promise<void>
}

export interface ProviderContent {
  body: Readable
  contentType: string
  contentLength?: number
}

export interface ProviderAdapter {
  readonly name: string
  readonly config: ProviderConfig
  /**
   * Waits for one of the provider's upload slots (shared fairly between tenants; a tenant's
   * client-paced uploads hold at most its share); the caller releases it. PROVIDER_UNAVAILABLE
   * with Retry-After when too many wait or none comes free within `waitMs`.
   */
  uploadSlot(request: SlotRequest): Promise<SlotLease>
  /** One upload; with `slot` (from uploadSlot) it takes no slot of its own. */
  upload(input: UploadInput, signal?: AbortSignal, slot?: SlotLease): Promise<ProviderFile>
  /** null on 404 (or, where retrieve is a listing, when a complete walk did not show it) */
  retrieve(id: string): Promise<ProviderFile | null>
  /**
   * True when the provider has no single-file GET (GLM) and retrieve walks the listing: its null is
   * then no proof that the file is gone, only that the listing did not show it.
   */
  readonly retrieveByListing: boolean
  /** 404 => alreadyGone: true */
  delete(id: string): Promise<{ alreadyGone: boolean }>
  listAll(opts?: { purpose?: string }): AsyncIterable<ProviderFile>
  content(id: string): Promise<ProviderContent>
  circuitState(): CircuitState
  /** ms until the breaker half-opens, 0 when closed */
  retryAfterMs(): number
}

export interface ProviderEvents {
  onCircuitOpen?(provider: string): void
  onCircuitStateChange?(provider: string, state: CircuitState): void
  onAttempt?(provider: string, op: string): void
  /** An upload got no slot: too many were waiting, or none came free in time. */
  onUploadSlotRefused?(provider: string, reason: SlotRefusalReason): void
}

export type ProviderOp = 'upload' | 'retrieve' | 'delete' | 'list' | 'content'
