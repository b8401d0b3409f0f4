/**
 * Provider failures as AppErrors (catalogue codes) plus what the resilience layer needs to know:
 * may the call be retried, and does the failure say something about the provider's health
 * (and so count toward its circuit breaker)? A 4xx about our request or the account never opens
 * the circuit; 5xx, timeouts, network errors and transient 429s do.
 */
import { AppError, type ErrorCode } from '../errors.js'
import type { ProviderOp } from './types.js'

export interface ProviderErrorOptions {
  provider: string
  retryable: boolean
  /** The provider, not our request, failed: counts toward the circuit breaker. */
  providerFault: boolean
  /** The provider answered 404 for this object. */
  notFound?: boolean
  upstreamStatus?: number
  /** Delay the provider asked for (Retry-After), when it sent one. */
  upstreamRetryAfterMs?: number
  detail?: string
  retryAfterSeconds?: number
  extensions?: Record<string, unknown>
  cause?: unknown
  /** The provider made a copy before the call failed (a malformed upload reply): its id as sent. */
  copyId?: string
}

export class ProviderError extends AppError {
  readonly provider: string
  readonly retryable: boolean
  readonly providerFault: boolean
  readonly notFound: boolean
  readonly upstreamStatus: number | undefined
  readonly upstreamRetryAfterMs: number | undefined
  /**
   * A copy the failed call left at the provider, by the id the provider gave it; cleared once the
   * copy is deleted. Whoever records the upload deletes it (or records it for the sweeps) when set.
   */
  copyId: string | undefined

  constructor(code: ErrorCode, options: ProviderErrorOptions) {
    super(code, {
      ...(options.detail !== undefined ? { detail: options.detail } : {}),
      ...(options.retryAfterSeconds !== undefined ? { retryAfterSeconds: options.retryAfterSeconds } : {}),
      // What filegate would retry, the client may retry later; an open circuit or a spent budget
      // clears with time. Refusals, bad keys, locked accounts, daily caps and malformed replies do not.
      clientMayRetry: options.retryable || code === 'PROVIDER_UNAVAILABLE' || code === 'PROVIDER_TIMEOUT',
      extensions: { ...options.extensions, provider: options.provider },
      cause: options.cause,
    })
    this.name = 'ProviderError'
    this.provider = options.provider
    this.retryable = options.retryable
    this.providerFault = options.providerFault
    this.notFound = options.notFound ?? false
    this.upstreamStatus = options.upstreamStatus
    this.upstreamRetryAfterMs = options.upstreamRetryAfterMs
    this.copyId = options.copyId
  }
}

export const isProviderError = (err: unknown): err is ProviderError => err instanceof ProviderError

/** One failed HTTP answer, already parsed and sanitised, handed to the dialect's classifier. */
export interface UpstreamError {
  provider: string
  op: ProviderOp
  status: number
  /** `error.type` (Kimi, OpenAI). */
  type: string | undefined
  /** `error.code` as a string (GLM business code, OpenAI code). */
  code: string | undefined
  /** The provider's message, sanitised and truncated; never contains the API key. */
  message: string
  retryAfterMs: number | undefined
  /** The provider's configured per-file cap, for FILE_TOO_LARGE's `limit_bytes`. */
  limitBytes: number
}

/** Provider-specific classification; undefined falls through to the OpenAI-style defaults. */
export type ErrorDialect = (e: UpstreamError) => ProviderError | undefined

const MAX_DETAIL = 500

/** Strips control characters, redacts secrets and bearer-looking tokens, truncates to 500 chars. */
export function sanitizeMessage(raw: string, secrets: ReadonlyArray<string | undefined> = []): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
  let text = raw.replace(/[\u0000-\u001f\u007f]+/g, ' ')
  for (const secret of secrets) {
    if (secret && secret.length >= 4) text = text.split(secret).join('[redacted]')
  }
  // OpenAI-style "Incorrect API key provided: sk-ab***yz" echoes part of the key.
  text = text
    .replace(/\b(sk|pk|key)-[A-Za-z0-9*._-]{4,}/gi, '[redacted]')
    .replace(/bearer\s+\S+/gi, 'Bearer [redacted]')
  text = text.replace(/\s+/g, ' ').trim()
  return text.length > MAX_DETAIL ? `${text.slice(0, MAX_DETAIL - 1)}…` : text
}

/** Reads `{"error":{"type","code","message"}}` (Kimi, GLM, OpenAI) and a few looser shapes. */
export function parseErrorBody(text: string): { type?: string; code?: string; message?: string } {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return text.trim() ? { message: text } : {}
  }
  if (typeof parsed !== 'object' || parsed === null) return {}
  const root = parsed as Record<string, unknown>
  const inner = typeof root.error === 'object' && root.error !== null ? (root.error as Record<string, unknown>) : root
  const str = (v: unknown) => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined)
  const out: { type?: string; code?: string; message?: string } = {}
  const type = str(inner.type)
  const code = str(inner.code)
  const message = str(inner.message) ?? str(root.error) ?? str(root.msg)
  if (type) out.type = type
  if (code) out.code = code
  if (message) out.message = message
  return out
}

/** RFC 9110 §10.2.3: delay-seconds or an HTTP-date. Returns milliseconds. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value
  if (!raw) return undefined
  if (/^\s*\d+(\.\d+)?\s*$/.test(raw)) return Math.round(Number(raw) * 1000)
  const date = Date.parse(raw)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

const seconds = (ms: number | undefined) => (ms === undefined ? undefined : Math.max(1, Math.ceil(ms / 1000)))

const base = (e: UpstreamError) => ({ provider: e.provider, upstreamStatus: e.status })

export const tooLarge = (e: UpstreamError) =>
  new ProviderError('FILE_TOO_LARGE', {
    ...base(e),
    retryable: false,
    providerFault: false,
    detail: e.message || undefined,
    extensions: { limit_bytes: e.limitBytes },
  })

export const quotaExceeded = (e: UpstreamError) =>
  new ProviderError('PROVIDER_QUOTA_EXCEEDED', {
    ...base(e),
    retryable: false,
    providerFault: false,
    detail: e.message || undefined,
  })

export const rejected = (e: UpstreamError) =>
  new ProviderError('PROVIDER_REJECTED', {
    ...base(e),
    retryable: false,
    providerFault: false,
    detail: e.message || `${e.provider} refused the request (${e.status})`,
  })

/** A transient 429 is a health signal (retry, count toward the breaker); a hard one is not. */
export const rateLimited = (e: UpstreamError, retryable = true) =>
  new ProviderError('PROVIDER_RATE_LIMITED', {
    ...base(e),
    retryable,
    providerFault: retryable,
    upstreamRetryAfterMs: e.retryAfterMs,
    retryAfterSeconds: seconds(e.retryAfterMs),
    detail: `${e.provider} is rate limiting${e.message ? `: ${e.message}` : ''}`,
  })

/** 401/403 and account problems: an operator must fix the key or the account; retrying cannot. */
export const misconfigured = (e: UpstreamError, what = 'rejected the API key or account') =>
  new ProviderError('PROVIDER_ERROR', {
    ...base(e),
    retryable: false,
    providerFault: false,
    // The provider's message is left out on purpose: some echo part of the key.
    detail: `${e.provider} ${what} (HTTP ${e.status})`,
  })

export const notFound = (e: UpstreamError) =>
  new ProviderError(e.op === 'content' ? 'CONTENT_UNAVAILABLE' : 'NOT_FOUND', {
    ...base(e),
    retryable: false,
    providerFault: false,
    notFound: true,
    detail: e.op === 'content' ? `${e.provider} has no content for this file` : `${e.provider} does not know this file`,
  })

export const upstreamFailure = (e: UpstreamError) =>
  new ProviderError(e.status === 504 || e.status === 408 ? 'PROVIDER_TIMEOUT' : 'PROVIDER_ERROR', {
    ...base(e),
    retryable: true,
    providerFault: true,
    upstreamRetryAfterMs: e.retryAfterMs,
    // 5xx bodies are not echoed: they may carry the provider's internals.
    detail: `${e.provider} failed (HTTP ${e.status})`,
  })

const TOO_LARGE = /too large|too big|exceeds? (the )?(max(imum)?|size)|size (limit|exceed)|max file size/i
const TOO_MANY = /file count|too many files|max(imum)? (number of )?files|storage (quota|limit)|quota/i
const EMPTY = /size is zero|empty file|file is empty|zero bytes/i

/** OpenAI-style defaults, shared by every dialect (platform.openai.com/docs/guides/error-codes). */
export function mapUpstreamError(e: UpstreamError, dialect?: ErrorDialect): ProviderError {
  const specific = dialect?.(e)
  if (specific) return specific
  const { status } = e
  if (status === 413) return tooLarge(e)
  if (status === 401 || status === 403) return misconfigured(e)
  if (status === 404) return notFound(e)
  if (status === 408) return upstreamFailure(e)
  if (status === 429) {
    if (e.code === 'insufficient_quota' || /quota|balance|billing/i.test(e.type ?? '')) return quotaExceeded(e)
    return rateLimited(e)
  }
  if (status >= 500) return upstreamFailure(e)
  if (status >= 400) {
    if (TOO_LARGE.test(e.message)) return tooLarge(e)
    if (TOO_MANY.test(e.message)) return quotaExceeded(e)
    if (EMPTY.test(e.message)) {
      return new ProviderError('EMPTY_FILE', { ...base(e), retryable: false, providerFault: false, detail: e.message })
    }
    return rejected(e)
  }
  return new ProviderError('PROVIDER_ERROR', {
    ...base(e),
    retryable: false,
    providerFault: true,
    detail: `${e.provider} answered an unexpected HTTP ${status}`,
  })
}

/** Connection refused/reset, DNS, TLS, a body cut short: the provider (or the path to it) failed. */
export const networkError = (provider: string, cause: unknown) =>
  new ProviderError('PROVIDER_ERROR', {
    provider,
    retryable: true,
    providerFault: true,
    detail: `${provider} could not be reached (${(cause as { code?: string })?.code ?? 'network error'})`,
    cause,
  })

export const timeoutError = (provider: string, ms: number, scope: 'attempt' | 'budget' = 'attempt') =>
  new ProviderError('PROVIDER_TIMEOUT', {
    provider,
    retryable: scope === 'attempt',
    providerFault: true,
    detail: `${provider} did not answer within ${ms} ms${scope === 'budget' ? ' (all attempts)' : ''}`,
  })

export const circuitOpenError = (provider: string, retryAfterMs: number) =>
  new ProviderError('PROVIDER_UNAVAILABLE', {
    provider,
    retryable: false,
    providerFault: false,
    retryAfterSeconds: seconds(Math.max(retryAfterMs, 1)),
    detail: `${provider} is failing; calls are paused (circuit open)`,
  })

/**
 * A reply that is not the documented shape (e.g. a proxy's HTML page with 200, a file object with a
 * NUL in its id). Not retried: an upload that was answered so may have made a copy (`copyId`).
 */
export const badResponse = (provider: string, what: string, copyId?: string) =>
  new ProviderError('PROVIDER_ERROR', {
    provider,
    retryable: false,
    providerFault: true,
    detail: `${provider} sent an unexpected response (${what})`,
    ...(copyId !== undefined ? { copyId } : {}),
  })

/**
 * A list walked again and again ended early every time (its cursor file deleted between pages):
 * what it did not show cannot be taken as gone. Not a health signal, not retried within the call.
 */
export const listIncomplete = (provider: string, walks: number) =>
  new ProviderError('PROVIDER_ERROR', {
    provider,
    retryable: false,
    providerFault: false,
    detail: `${provider}'s file list ended early on each of ${walks} walks (files deleted meanwhile); nothing was concluded from it`,
  })

/**
 * The one classification of a failure, read by the resilience layer (retries, breaker), the sweeps
 * (which record the code and back off) and the providers' error table (docs/providers.md). Its
 * client-facing half (clientMayRetry, quotaExhausted) is carried by the AppError itself
 * (src/errors.ts): that is what the HTTP faces read.
 */
export interface FailureClass {
  code: ErrorCode
  /** filegate's own retries may repeat the provider call. */
  retryable: boolean
  /** The provider, not the request or the account, failed: counts toward its circuit breaker. */
  countsTowardBreaker: boolean
  /** Sending the same request again later can succeed (the OpenAI facade's `x-should-retry`). */
  clientMayRetry: boolean
  /** The account's allowance is used up until someone pays, renews or deletes files. */
  quotaExhausted: boolean
}

export function classifyFailure(err: AppError): FailureClass {
  const provider = isProviderError(err)
  return {
    code: err.code,
    retryable: provider && err.retryable,
    countsTowardBreaker: provider && err.providerFault,
    clientMayRetry: err.clientMayRetry,
    quotaExhausted: err.quotaExhausted,
  }
}
