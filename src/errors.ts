/**
 * The error catalogue, its named factories and the one mapping of any thrown value to a
 * problem: the code, the log level and the headers (Retry-After, WWW-Authenticate). Every error
 * the service answers with is an AppError carrying one of these codes; anything else becomes a
 * 500 that leaks nothing. The HTTP faces (RFC 9457 problem+json, the OpenAI error body) only
 * render what this module decided.
 */

export const errorCatalog = {
  VALIDATION_FAILED: { status: 400, title: 'Request validation failed' },
  MISSING_FILE: { status: 400, title: 'No file part in the request' },
  TOO_MANY_FILES: { status: 400, title: 'More than one file part in the request' },
  EMPTY_FILE: { status: 400, title: 'The file is empty' },
  UNKNOWN_PROVIDER: { status: 400, title: 'Unknown provider' },
  UNSUPPORTED_PURPOSE: { status: 400, title: 'Purpose not supported by the provider' },
  CHECKSUM_MISMATCH: { status: 400, title: 'Declared SHA-256 does not match the content' },
  UNAUTHORIZED: { status: 401, title: 'Missing or invalid credentials' },
  FORBIDDEN: { status: 403, title: 'Not allowed for these credentials' },
  NOT_FOUND: { status: 404, title: 'Not found' },
  REQUEST_TIMEOUT: { status: 408, title: 'The request was not received in time' },
  UPLOAD_OFFSET_MISMATCH: { status: 409, title: "The offset is not the upload's current offset" },
  UPLOAD_NOT_PENDING: { status: 409, title: 'The upload takes no more bytes' },
  UPLOAD_GONE: { status: 410, title: 'The upload expired or was terminated' },
  TUS_VERSION_UNSUPPORTED: { status: 412, title: 'The tus protocol version is not supported' },
  UPLOAD_LOCKED: { status: 423, title: 'Another request is writing to this upload' },
  CONTENT_UNAVAILABLE: { status: 409, title: 'The provider has no content for this file' },
  ORIGINAL_UNAVAILABLE: { status: 409, title: 'The original of this file is not kept' },
  FILE_TOO_LARGE: { status: 413, title: 'File exceeds the provider limit' },
  HEADERS_TOO_LARGE: { status: 431, title: 'Request header fields too large' },
  UNSUPPORTED_FILE_TYPE: { status: 415, title: 'File type not allowed' },
  PROVIDER_REJECTED: { status: 422, title: 'The provider refused the file' },
  RATE_LIMITED: { status: 429, title: 'Too many requests' },
  PROVIDER_RATE_LIMITED: { status: 429, title: 'The provider is rate limiting' },
  INTERNAL: { status: 500, title: 'Internal server error' },
  PROVIDER_ERROR: { status: 502, title: 'The provider failed' },
  PROVIDER_NOT_CONFIGURED: { status: 503, title: 'Provider not configured' },
  PROVIDER_UNAVAILABLE: { status: 503, title: 'Provider temporarily unavailable' },
  SHUTTING_DOWN: { status: 503, title: 'The service is shutting down' },
  DATABASE_UNAVAILABLE: { status: 503, title: 'The database is unavailable' },
  ORIGINALS_UNAVAILABLE: { status: 503, title: 'The originals store is unavailable' },
  AUTH_UNAVAILABLE: { status: 503, title: "The identity provider's signing keys cannot be fetched" },
  PROVIDER_TIMEOUT: { status: 504, title: 'The provider did not answer in time' },
  PROVIDER_QUOTA_EXCEEDED: { status: 507, title: 'Provider quota exceeded' },
  TENANT_QUOTA_EXCEEDED: { status: 507, title: "The tenant's quota at this provider is used up" },
} as const satisfies Record<string, { status: number; title: string }>

export type ErrorCode = keyof typeof errorCatalog

/**
 * How long a client should wait before retrying (RFC 9110 §10.2.3), for the codes where waiting
 * helps: the 429s and the 503s except PROVIDER_NOT_CONFIGURED, which no wait fixes.
 */
const defaultRetryAfterSeconds: Partial<Record<ErrorCode, number>> = {
  RATE_LIMITED: 60,
  UPLOAD_LOCKED: 1,
  PROVIDER_RATE_LIMITED: 5,
  PROVIDER_UNAVAILABLE: 30,
  SHUTTING_DOWN: 5,
  DATABASE_UNAVAILABLE: 5,
  ORIGINALS_UNAVAILABLE: 10,
  AUTH_UNAVAILABLE: 10,
}

/** Answers that waiting cures, whoever raised them: overload, an open circuit, shutdown, the database. */
const transientCodes = new Set<ErrorCode>([
  'RATE_LIMITED',
  'PROVIDER_RATE_LIMITED',
  'PROVIDER_UNAVAILABLE',
  'PROVIDER_TIMEOUT',
  'SHUTTING_DOWN',
  'DATABASE_UNAVAILABLE',
  // The client sent too slowly this time; the same request sent briskly succeeds.
  'REQUEST_TIMEOUT',
])

export interface AppErrorOptions {
  detail?: string
  /** Extra problem members, e.g. `provider`, `limit_bytes`. Never secrets. */
  extensions?: Record<string, unknown>
  retryAfterSeconds?: number
  /** Whether the same request may succeed later; by default, for the codes that waiting cures. */
  clientMayRetry?: boolean
  cause?: unknown
}

export class AppError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly title: string
  readonly detail: string
  readonly extensions: Record<string, unknown>
  readonly retryAfterSeconds: number | undefined
  /**
   * Sending the same request again later can succeed (the OpenAI facade's `x-should-retry`). Whoever
   * raised the error decides (a provider failure knows whether it was transient); the faces only read it.
   */
  readonly clientMayRetry: boolean
  /** The account's allowance, the provider's or this tenant's share of it, is used up: waiting does not help. */
  readonly quotaExhausted: boolean

  constructor(code: ErrorCode, options: AppErrorOptions = {}) {
    const entry = errorCatalog[code]
    super(options.detail ?? entry.title, { cause: options.cause })
    this.name = 'AppError'
    this.code = code
    this.status = entry.status
    this.title = entry.title
    this.detail = options.detail ?? entry.title
    this.extensions = options.extensions ?? {}
    this.retryAfterSeconds = options.retryAfterSeconds ?? defaultRetryAfterSeconds[code]
    this.clientMayRetry = options.clientMayRetry ?? transientCodes.has(code)
    this.quotaExhausted = code === 'PROVIDER_QUOTA_EXCEEDED' || code === 'TENANT_QUOTA_EXCEEDED'
  }
}

export const isAppError = (err: unknown): err is AppError => err instanceof AppError

/** Named factories for the errors built in more than one place (one wording, one set of members). */
export const errors = {
  validationFailed: (detail: string, extensions?: Record<string, unknown>) =>
    new AppError('VALIDATION_FAILED', { detail, ...(extensions ? { extensions } : {}) }),
  unauthorized: (detail: string) => new AppError('UNAUTHORIZED', { detail }),
  /** `requiredScope`: the scope the credentials lack (the `required_scope` member). */
  forbidden: (detail: string, requiredScope?: string) =>
    new AppError('FORBIDDEN', {
      detail,
      ...(requiredScope === undefined ? {} : { extensions: { required_scope: requiredScope } }),
    }),
  /** A key's `providers` allowlist leaves out the provider an upload, copy or heal would go to. */
  providerNotAllowed: (provider: string, allowed: readonly string[]) =>
    new AppError('FORBIDDEN', {
      detail: `These credentials may not upload to provider "${provider}"`,
      extensions: { provider, allowed_providers: allowed },
    }),
  notFound: (detail: string) => new AppError('NOT_FOUND', { detail }),
  fileNotFound: (id: string) => new AppError('NOT_FOUND', { detail: `No file ${id}` }),
  emptyFile: () => new AppError('EMPTY_FILE', { detail: 'The file part has no content' }),
  fileTooLarge: (provider: string, limitBytes: number) =>
    new AppError('FILE_TOO_LARGE', {
      detail: `The file is larger than ${limitBytes} bytes, the limit for ${provider}`,
      extensions: { provider, limit_bytes: limitBytes },
    }),
  unknownProvider: (provider: string, allowed: string[]) =>
    new AppError('UNKNOWN_PROVIDER', { detail: `Unknown provider "${provider}"`, extensions: { provider, allowed } }),
  /** One named provider without an API key, or (no name) none configured at all. */
  providerNotConfigured: (provider?: string) =>
    provider === undefined
      ? new AppError('PROVIDER_NOT_CONFIGURED', { detail: 'No provider has an API key configured' })
      : new AppError('PROVIDER_NOT_CONFIGURED', {
          detail: `Provider "${provider}" has no API key configured`,
          extensions: { provider },
        }),
  rateLimited: (detail?: string, retryAfterSeconds?: number) =>
    new AppError('RATE_LIMITED', {
      ...(detail !== undefined ? { detail } : {}),
      ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
    }),
  requestTimeout: (detail: string) => new AppError('REQUEST_TIMEOUT', { detail }),
  shuttingDown: () => new AppError('SHUTTING_DOWN'),
  databaseUnavailable: (detail: string, cause?: unknown) =>
    new AppError('DATABASE_UNAVAILABLE', { detail, ...(cause !== undefined ? { cause } : {}) }),
  /** The file has no original to serve or to upload again from (not kept, or lost, or corrupt). */
  originalUnavailable: (id: string, why: string) =>
    new AppError('ORIGINAL_UNAVAILABLE', { detail: `The original of file ${id} is not available: ${why}` }),
  /** The originals store did not answer; its own message stays in the log (it may name the bucket). */
  originalsUnavailable: (cause?: unknown) =>
    new AppError('ORIGINALS_UNAVAILABLE', {
      detail: 'The originals store cannot be reached; nothing was kept, retry later',
      ...(cause !== undefined ? { cause } : {}),
    }),
  internal: () =>
    new AppError('INTERNAL', { detail: 'An unexpected error occurred; see the server log with this request id' }),
}

/** What the framework throws besides AppErrors (Fastify's FastifyError, ajv validation results). */
interface FrameworkError {
  code?: string
  message?: string
  statusCode?: number
  validation?: Array<{ instancePath?: string; message?: string }>
  validationContext?: string
}

/** Fastify's own error codes and the catalogue code each is answered with. */
const frameworkCodes: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'VALIDATION_FAILED',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'VALIDATION_FAILED',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'VALIDATION_FAILED',
  FST_ERR_CTP_INVALID_JSON_BODY: 'VALIDATION_FAILED',
  FST_ERR_CTP_BODY_TOO_LARGE: 'VALIDATION_FAILED',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'VALIDATION_FAILED',
  FST_PROTO_VIOLATION: 'VALIDATION_FAILED',
  FST_PARTS_LIMIT: 'VALIDATION_FAILED',
  FST_FIELDS_LIMIT: 'VALIDATION_FAILED',
  FST_FILES_LIMIT: 'TOO_MANY_FILES',
  FST_REQ_FILE_TOO_LARGE: 'FILE_TOO_LARGE',
}

/** Maps any thrown value to an AppError (the catalogue's view of it). */
export function asAppError(err: unknown): AppError {
  if (isAppError(err)) return err
  const e = err as FrameworkError | null | undefined
  if (e?.validation) {
    return errors.validationFailed(e.message ?? 'Request validation failed', {
      errors: e.validation.map((v) => ({
        in: e.validationContext,
        path: v.instancePath ?? '',
        message: v.message ?? 'invalid',
      })),
    })
  }
  const mapped = e?.code ? frameworkCodes[e.code] : undefined
  if (mapped) return new AppError(mapped, { detail: e?.message ?? undefined })
  if (e?.statusCode === 429) return errors.rateLimited()
  if (e?.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
    return errors.validationFailed(e.message ?? 'Bad request')
  }
  return errors.internal()
}

/** The part of a logger a failed request is reported to (pino's, Fastify's request.log). */
export interface FailureLog {
  error(fields: object, message: string): void
  info(fields: object, message: string): void
}

/**
 * Logs a failed request once: a 5xx is ours, logged as an error with what was thrown (stack,
 * cause); a refusal is the client's, one info line with its code and detail.
 */
export function logFailure(log: FailureLog, thrown: unknown, err: AppError): void {
  if (err.status >= 500) log.error({ err: thrown, code: err.code }, 'request failed')
  else log.info({ code: err.code, detail: err.detail }, 'request refused')
}

/**
 * The headers an error's answer carries whatever its body: Retry-After on a 429 or 503 that
 * names a wait, and the RFC 6750 §3 challenge on a 401. `status` is the status the face answers
 * with (the OpenAI face answers an exhausted quota with 429).
 */
export function errorHeaders(err: AppError, status = err.status): Record<string, string> {
  const headers: Record<string, string> = {}
  if (err.retryAfterSeconds !== undefined && (status === 429 || status === 503)) {
    headers['retry-after'] = String(Math.max(1, Math.ceil(err.retryAfterSeconds)))
  }
  if (err.code === 'UNAUTHORIZED') headers['www-authenticate'] = 'Bearer realm="filegate"'
  return headers
}

export interface Problem {
  type: string
  title: string
  status: number
  detail: string
  code: ErrorCode
  instance: string
  [extension: string]: unknown
}

export interface ProblemResponse {
  status: number
  headers: Record<string, string>
  body: Problem
}

export const problemTypeBase = 'https://filegate.dev/problems/'

/** The RFC 9457 problem+json answer to an AppError: status, headers and body. */
export function toProblem(err: AppError, requestId: string): ProblemResponse {
  return {
    status: err.status,
    headers: { 'content-type': 'application/problem+json; charset=utf-8', ...errorHeaders(err) },
    body: {
      ...err.extensions,
      type: `${problemTypeBase}${err.code.toLowerCase().replaceAll('_', '-')}`,
      title: err.title,
      status: err.status,
      detail: err.detail,
      code: err.code,
      instance: requestId,
    },
  }
}
