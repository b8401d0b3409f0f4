/**
 * CORS for browsers (CORS_ORIGINS), through @fastify/cors. A browser may send, and read back, what
 * the API uses: the bearer token, request ids, tenant and hash headers, and the tus 1.0 headers of
 * resumable uploads (tus.io/protocols/resumable-upload#headers, and its "Browser support" section:
 * the Location and Upload-* headers must be exposed for a tus client to work cross-origin).
 */
import type { FastifyCorsOptions } from '@fastify/cors'

export const tusHeaders = [
  'Tus-Resumable',
  'Upload-Offset',
  'Upload-Length',
  'Upload-Metadata',
  'Upload-Expires',
  'Upload-Defer-Length',
  'Tus-Version',
  'Tus-Extension',
  'Tus-Max-Size',
]

const allowedHeaders = [
  'Authorization',
  'Content-Type',
  'X-Request-Id',
  'X-Tenant-Id',
  'X-Content-SHA256',
  'X-HTTP-Method-Override',
  ...tusHeaders,
]

const exposedHeaders = [
  'X-Request-Id',
  'Location',
  'Filegate-File-Id',
  'X-Filegate-File-Id',
  'X-Filegate-Deduplicated',
  'Retry-After',
  'WWW-Authenticate',
  ...tusHeaders,
]

/** The @fastify/cors options for CORS_ORIGINS (`*` alone: any origin). */
export const corsOptions = (origins: string[]): FastifyCorsOptions => ({
  origin: origins.includes('*') ? '*' : origins,
  methods: ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE', 'OPTIONS'],
  allowedHeaders,
  exposedHeaders,
  // Bearer tokens, not cookies: no credentials mode.
  credentials: false,
  maxAge: 600,
})
