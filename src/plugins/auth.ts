/**
 * Bearer authentication (RFC 6750) by API_KEYS. Keys are compared by SHA-256 digest in constant
 * time. Tenant `*` is the admin, acting for a tenant through X-Tenant-Id. With no keys the
 * service is open as tenant `default` (config allows that only on loopback).
 * Routes opt in with `config: { auth: 'tenant' | 'admin' }`; probes, metrics and docs stay open.
 */
import { hash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { ApiKeyEntry } from '../config.js'
import { type AppError, errors, isAppError } from '../errors.js'
import { AuthFailureLimit } from './auth-failure-limit.js'

export interface AuthContext {
  /** The tenant the request acts for. */
  tenant: string
  isAdmin: boolean
}

export type RouteAuth = 'tenant' | 'admin' | 'none'

declare module 'fastify' {
  interface FastifyRequest {
    auth: AuthContext
  }
  interface FastifyContextConfig {
    auth?: RouteAuth
  }
}

const tenantPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/

/** A configured key with its digest as bytes, decoded once at start rather than on every request. */
export interface KnownKey {
  entry: ApiKeyEntry
  digest: Buffer
}

export const knownKeys = (keys: ApiKeyEntry[]): KnownKey[] =>
  keys.map((entry) => ({ entry, digest: Buffer.from(entry.keySha256, 'hex') }))

/** The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1), or undefined. */
export function bearerToken(header: string | string[] | undefined): string | undefined {
  const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null
  return match?.[1]
}

export function matchKey(keys: KnownKey[], presented: string): ApiKeyEntry | undefined {
  const digest = hash('sha256', presented, 'buffer')
  let found: ApiKeyEntry | undefined
  // Compare against every key so timing does not reveal which one (or whether any) matched.
  for (const key of keys) {
    if (timingSafeEqual(digest, key.digest) && !found) found = key.entry
  }
  return found
}

export function authenticate(
  request: FastifyRequest,
  keys: KnownKey[],
  openMode: boolean,
  level: 'tenant' | 'admin',
): AuthContext {
  let tenant: string
  let isAdmin: boolean
  if (openMode) {
    tenant = 'default'
    isAdmin = true
  } else {
    const token = bearerToken(request.headers.authorization)
    if (!token) throw errors.unauthorized('Send Authorization: Bearer <api key>')
    const entry = matchKey(keys, token)
    if (!entry) throw errors.unauthorized('The API key is not valid')
    tenant = entry.tenant
    isAdmin = entry.tenant === '*'
  }
  if (level === 'admin' && !isAdmin) throw errors.forbidden('This endpoint needs an admin key')

  const asTenant = request.headers['x-tenant-id']
  if (asTenant !== undefined) {
    if (!isAdmin) throw errors.forbidden('Only an admin key may set X-Tenant-Id')
    if (typeof asTenant !== 'string' || !tenantPattern.test(asTenant)) {
      throw errors.validationFailed('X-Tenant-Id must be 1-64 letters, digits, _ . -')
    }
    tenant = asTenant
  } else if (tenant === '*' && level === 'tenant') {
    throw errors.validationFailed('An admin key must name the tenant in X-Tenant-Id')
  }
  return { tenant, isAdmin }
}

export interface AuthPluginOptions {
  keys: ApiKeyEntry[]
  openMode: boolean
  /** Failed authentications allowed per client address a minute (RATE_LIMIT_PER_MINUTE); 0 = no limit. */
  failuresPerMinute: number
}

export default fp(
  async function authPlugin(app: FastifyInstance, opts: AuthPluginOptions) {
    app.decorateRequest('auth', null as unknown as AuthContext)
    const keys = knownKeys(opts.keys)
    const failures = opts.failuresPerMinute > 0 ? new AuthFailureLimit(opts.failuresPerMinute) : undefined
    // A callback hook, not an async one: it runs on every request and has nothing to await.
    app.addHook('onRequest', (request, _reply, done) => {
      const level = request.routeOptions.config?.auth ?? 'none'
      if (level === 'none') {
        done()
        return
      }
      try {
        request.auth = authenticate(request, keys, opts.openMode, level)
      } catch (err) {
        done(
          failures && isAppError(err) && err.code === 'UNAUTHORIZED'
            ? limitFailure(failures, request, err)
            : (err as Error),
        )
        return
      }
      done()
    })
  },
  { name: 'filegate-auth', dependencies: ['filegate-errors'] },
)

/**
 * Counts a failed authentication against the client address; past the limit the answer is 429
 * with Retry-After instead of 401. A valid key is still let through from a limited address:
 * behind a shared proxy or NAT one client's wrong keys must not lock the other tenants out, and
 * keys (16+ random characters) are not what a per-minute limit protects from guessing.
 */
function limitFailure(failures: AuthFailureLimit, request: FastifyRequest, err: AppError): AppError {
  const waitMs = failures.retryAfterMs(request.ip)
  if (waitMs > 0) {
    return errors.rateLimited('Too many failed authentications from this address', Math.ceil(waitMs / 1000))
  }
  failures.recordFailure(request.ip)
  return err
}
