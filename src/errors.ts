/**
 * The error catalogue (SPEC §1) and the one mapper from any thrown value to an
 * RFC 9457 problem+json body. Every error the service answers with is an AppError
 * carrying one of these codes; anything else becomes a 500 that leaks nothing.
 */

export const errorCatalog = {
  VALIDATION_FAILED: { status: 400, title: 'Request validation failed' },
  MISSING_FILE: { status: 400, title: 'No file part in the request' },
  TOO_MANY_FILES: { status: 400, title: 'More than one file part in the request' },
  EMPTY_FILE: { status: 400, title: 'The file is empty' },
  UNKNOWN_PROVIDER: { status: 400, title: 'Unknown provider' },
  UNSUPPORTED_PURPOSE: { status: 400, title: 'Purpose not supported by the provider' },
  CHECKSUM_MISMATCH: { status: 400, title: 'Declared SHA-256 does not match the content' },
  UNAUTHORIZED: { status: 401, title: 'Missing or invalid API key' },
  FORBIDDEN: { status: 403, title: 'Not allowed for this key' },
  NOT_FOUND: { status: 404, title: 'Not found' },
  REQUEST_TIMEOUT: { status: 408, title: 'The request was not received in time' },
  CONTENT_UNAVAILABLE: { status: 409, title: 'The provider has no content for this file' },
  FILE_TOO_LARGE: { status: 413, title: 'File exceeds the provider limit' },
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
  PROVIDER_TIMEOUT: { status: 504, title: 'The provider did not answer in time' },
  PROVIDER_QUOTA_EXCEEDED: { status: 507, title: 'Provider quota exceeded' },
  TENANT_QUOTA_EXCEEDED: { status: 507, title: "The tenant's quota at this provider is used up" },
} as const satisfies Record<string, { status: number; title: string }>

export type ErrorCode = keyof typeof errorCatalog

/** Codes answered with `Retry-After` (SPEC §1: 429 and 503, except PROVIDER_NOT_CONFIGURED). */
const defaultRetryAfterSeconds: Partial<Record<ErrorCode, number>> = {
  RATE_LIMITED: 60,
  PROVIDER_RATE_LIMITED: 5,
  PROVIDER_UNAVAILABLE: 30,
  SHUTTING_DOWN: 5,
  DATABASE_UNAVAILABLE: 5,
}

export interface AppErrorOptions {
  detail?: string
  /** Extra problem members, e.g. `provider`, `limit_bytes`. Never secrets. */
  extensions?: Record<string, unknown>
  retryAfterSeconds?: number
  cause?: unknown
}

export class AppError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly title: string
  readonly detail: string
  readonly extensions: Record<string, unknown>
  readonly retryAfterSeconds: number | undefined

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
  }
}

export const isAppError = (err: unknown): err is AppError => err instanceof AppError

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

/** Turns an AppError into the response the error handler sends. */
export function toProblem(err: AppError, requestId: string): ProblemResponse {
  const headers: Record<string, string> = { 'content-type': 'application/problem+json; charset=utf-8' }
  if (err.retryAfterSeconds !== undefined && (err.status === 429 || err.status === 503)) {
    headers['retry-after'] = String(Math.max(1, Math.ceil(err.retryAfterSeconds)))
  }
  return {
    status: err.status,
    headers,
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
