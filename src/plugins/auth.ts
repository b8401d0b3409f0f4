/**
 * Bearer authentication by API_KEYS (SPEC §5). Keys are compared by SHA-256 digest in constant
 * time. Tenant `*` is the admin, acting for a tenant through X-Tenant-Id. With no keys the
 * service is open as tenant `default` (config allows that only on loopback).
 * Routes opt in with `config: { auth: 'tenant' | 'admin' }`; probes, metrics and docs stay open.
 */
import { hash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { ApiKeyEntry } from '../config.js'
import { AppError } from '../errors.js'

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

function matchKey(keys: KnownKey[], presented: string): ApiKeyEntry | undefined {
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
    const header = request.headers.authorization
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null
    if (!match?.[1]) throw new AppError('UNAUTHORIZED', { detail: 'Send Authorization: Bearer <api key>' })
    const entry = matchKey(keys, match[1])
    if (!entry) throw new AppError('UNAUTHORIZED', { detail: 'The API key is not valid' })
    tenant = entry.tenant
    isAdmin = entry.tenant === '*'
  }
  if (level === 'admin' && !isAdmin) throw new AppError('FORBIDDEN', { detail: 'This endpoint needs an admin key' })

  const asTenant = request.headers['x-tenant-id']
  if (asTenant !== undefined) {
    if (!isAdmin) throw new AppError('FORBIDDEN', { detail: 'Only an admin key may set X-Tenant-Id' })
    if (typeof asTenant !== 'string' || !tenantPattern.test(asTenant)) {
      throw new AppError('VALIDATION_FAILED', { detail: 'X-Tenant-Id must be 1-64 letters, digits, _ . -' })
    }
    tenant = asTenant
  } else if (tenant === '*' && level === 'tenant') {
    throw new AppError('VALIDATION_FAILED', { detail: 'An admin key must name the tenant in X-Tenant-Id' })
  }
  return { tenant, isAdmin }
}

export default fp(
  async function authPlugin(app: FastifyInstance, opts: { keys: ApiKeyEntry[]; openMode: boolean }) {
    app.decorateRequest('auth', null as unknown as AuthContext)
    const keys = knownKeys(opts.keys)
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
        done(err as Error)
        return
      }
      done()
    })
  },
  { name: 'filegate-auth', dependencies: ['filegate-errors'] },
)
