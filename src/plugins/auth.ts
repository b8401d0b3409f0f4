/**
 * Who may pass, decided in one place. Every route declares the scope it needs in its options,
 * `config: { scope: 'files:read' | 'files:write' | 'keys' | 'admin' | 'public' }`; a route that
 * declares none stops start-up (so a route added later cannot be left open by mistake), and no
 * route under /v1 or /providers may be public.
 *
 * One hook reads the bearer token (RFC 6750) and tries the credential kinds in order:
 *   1. a key kept in the database (`fg_<id>_<secret>`: src/domain/keyring.ts, cached in-process);
 *   2. an API_KEYS entry (compared by SHA-256 digest in constant time, against every entry);
 *   3. a JWT of the identity provider, when JWT_ISSUER is set (src/domain/jwt.ts).
 * Open mode (no API_KEYS, no JWT_ISSUER, loopback only) holds until the first key is created in the
 * database. The caller (tenant, scopes, providers, actor) is put on the request as `request.auth`
 * and routes read it. An admin acts for the tenant it names in X-Tenant-Id. A missing scope is 403
 * FORBIDDEN with `required_scope`.
 *
 * The hook answers synchronously when it can (an API_KEYS key, a database key in the cache): an
 * async hook would cost a promise on every request. Refusals are counted by reason
 * (filegate_auth_failures_total); failed authentications per client address are limited.
 */
import { hash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { actingAs } from '../audit-context.js'
import type { ApiKeyEntry, JwtConfig } from '../config.js'
import { anyTenant, type Caller, holds, isAdmin, isScope, type Scope, scopes } from '../domain/caller.js'
import { type JwtIdentity, JwtVerifier } from '../domain/jwt.js'
import { type KeyAuthRow, type KeyVerdict, keyIdOf } from '../domain/keyring.js'
import { type AppError, errors, isAppError } from '../errors.js'
import type { AuthFailureReason } from '../metrics.js'
import { endFailed, startSpan } from '../spans.js'
import { isTenantId, tenantIdRule } from '../tenant.js'
import { AuthFailureLimit } from './auth-failure-limit.js'

/** What a route needs: a scope, or nothing at all (probes, metrics, the OpenAPI document). */
export type RouteScope = Scope | 'public'

declare module 'fastify' {
  interface FastifyRequest {
    auth: Caller
  }
  interface FastifyContextConfig {
    scope?: RouteScope
  }
}

/** The caller before the tenant it acts for is known (X-Tenant-Id). */
type Identity = Omit<Caller, 'tenant'>

/** A bearer token longer than this is no credential filegate issues or accepts (a JWT is ~1 KB). */
export const maxTokenLength = 8192

/** Routes of these scopes act for one tenant: an admin without a tenant of its own must name one. */
const tenantScopes: ReadonlySet<RouteScope> = new Set(['files:read', 'files:write'])

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

/** The SHA-256 of a presented token, as API_KEYS entries and the JWT verdicts kept are keyed. */
export const tokenDigest = (presented: string): Buffer => hash('sha256', presented, 'buffer')

/** The configured key a token is, if any; `digest` is the token's, when the caller has it already. */
export function matchKey(keys: KnownKey[], presented: string, digest?: Buffer): ApiKeyEntry | undefined {
  if (keys.length === 0) return undefined
  const presentedDigest = digest ?? tokenDigest(presented)
  let found: ApiKeyEntry | undefined
  // Compare against every key so timing does not reveal which one (or whether any) matched.
  for (const key of keys) {
    if (timingSafeEqual(presentedDigest, key.digest) && !found) found = key.entry
  }
  return found
}

// ---- the credential kinds --------------------------------------------------------------------

const openIdentity: Identity = {
  ownTenant: 'default',
  scopes,
  providers: null,
  actor: 'open',
  expiresAt: null,
}

/** API_KEYS: a tenant key holds files:read files:write keys; the admin key (tenant `*`) holds admin. */
const envIdentity = (entry: ApiKeyEntry): Identity =>
  entry.tenant === anyTenant
    ? { ownTenant: null, scopes: ['admin'], providers: null, actor: 'env:*', expiresAt: null }
    : {
        ownTenant: entry.tenant,
        scopes: ['files:read', 'files:write', 'keys'],
        providers: null,
        actor: `env:${entry.tenant}`,
        expiresAt: null,
      }

/** A JWT's identity, made once per verdict the verifier keeps (the frozen object is the cache's). */
const jwtIdentities = new WeakMap<JwtIdentity, Identity>()

/** A JWT's caller: its tenant claim's tenant, its scopes, the actor `jwt:<sub>`. */
function jwtIdentity(id: JwtIdentity): Identity {
  let identity = jwtIdentities.get(id)
  if (!identity) {
    identity = { ownTenant: id.tenant, scopes: id.scopes, providers: null, actor: `jwt:${id.subject}`, expiresAt: null }
    jwtIdentities.set(id, identity)
  }
  return identity
}

const keyRefusals: Record<Exclude<KeyVerdict, { ok: true }>['reason'], string> = {
  invalid: 'The API key is not valid',
  expired: 'The API key has expired',
  revoked: 'The API key has been revoked',
}

/** Why each refusal is counted (filegate_auth_failures_total{reason}); set where the refusal is made. */
const refusalReasons = new WeakMap<Error, AuthFailureReason>()
const refusal = (reason: AuthFailureReason, err: AppError): AppError => {
  refusalReasons.set(err, reason)
  return err
}

/** A database key's identity, made once per cached lookup (the row object is the cache's). */
const keyIdentities = new WeakMap<KeyAuthRow, Identity>()

function keyIdentity(verdict: KeyVerdict): Identity {
  if (!verdict.ok) throw refusal(verdict.reason, errors.unauthorized(keyRefusals[verdict.reason]))
  const { key } = verdict
  let identity = keyIdentities.get(key)
  if (!identity) {
    identity = {
      ownTenant: key.tenant_id,
      scopes: key.scopes.filter(isScope),
      providers: key.providers,
      actor: `key:${key.id}`,
      expiresAt: key.expires_at === null ? null : Date.parse(key.expires_at),
    }
    keyIdentities.set(key, identity)
  }
  return identity
}

/** The tenant the request acts for, and whether the identity holds the route's scope. */
function admit(request: FastifyRequest, identity: Identity, scope: Scope): Caller {
  if (!holds(identity, scope)) {
    throw refusal('forbidden', errors.forbidden(`This route needs the scope ${scope}`, scope))
  }
  const named = request.headers['x-tenant-id']
  let tenant = identity.ownTenant ?? anyTenant
  if (named !== undefined) {
    if (!isAdmin(identity)) {
      throw refusal('forbidden', errors.forbidden('Only an admin may act for a tenant through X-Tenant-Id', 'admin'))
    }
    if (typeof named !== 'string' || !isTenantId(named)) {
      throw errors.validationFailed(`X-Tenant-Id must be ${tenantIdRule}`)
    }
    tenant = named
  }
  if (tenant === anyTenant && tenantScopes.has(scope)) {
    throw errors.validationFailed('An admin key must name the tenant in X-Tenant-Id')
  }
  return { ...identity, tenant }
}

export interface AuthPluginOptions {
  keys: ApiKeyEntry[]
  /** No API_KEYS and no JWT_ISSUER (loopback): open until the first key is created in the database. */
  openMode: boolean
  jwt: JwtConfig | undefined
  /** Failed authentications allowed per client address a minute (RATE_LIMIT_PER_MINUTE); 0 = no limit. */
  failuresPerMinute: number
}

/** Refuses, at start, a route that declares no scope, and a public one where the API lives. */
function checkRouteScope(route: RouteOptions): void {
  const scope = (route.config as { scope?: unknown } | undefined)?.scope
  const name = `${[route.method].flat().join(',')} ${route.url}`
  if (scope !== 'public' && !isScope(scope)) {
    throw new Error(`route ${name} declares no scope: set config.scope to one of ${scopes.join(', ')} or 'public'`)
  }
  if (scope === 'public' && /^\/(v1|providers)\//.test(route.url)) {
    throw new Error(`route ${name} is under /v1 or /providers and cannot be public`)
  }
}

export default fp(
  async function authPlugin(app: FastifyInstance, opts: AuthPluginOptions) {
    app.decorateRequest('auth', null as unknown as Caller)
    const envKeys = knownKeys(opts.keys)
    const envIdentities = new Map(opts.keys.map((entry) => [entry, envIdentity(entry)]))
    const jwt = opts.jwt ? new JwtVerifier(opts.jwt) : undefined
    const { keyring, metrics } = app
    const failures = opts.failuresPerMinute > 0 ? new AuthFailureLimit(opts.failuresPerMinute) : undefined

    /** The credentials of a bearer token (or open mode), in the order of their kinds. */
    const verify = (token: string | undefined): Identity | Promise<Identity> => {
      if (token === undefined) {
        throw refusal('missing', errors.unauthorized('Send Authorization: Bearer <api key or token>'))
      }
      if (token.length > maxTokenLength) {
        throw refusal('invalid', errors.unauthorized('The credentials are too long to be valid'))
      }
      const keyId = keyIdOf(token)
      if (keyId !== undefined) {
        const verdict = keyring.verify(token, keyId)
        return verdict instanceof Promise ? verdict.then(keyIdentity) : keyIdentity(verdict)
      }
      // One digest of the token serves both the API_KEYS comparison and the JWT verdicts kept.
      const digest = tokenDigest(token)
      const entry = matchKey(envKeys, token, digest)
      if (entry) return envIdentities.get(entry) ?? envIdentity(entry)
      if (jwt && JwtVerifier.isJwtShaped(token)) {
        const verdict = jwt.verify(token, digest)
        return verdict instanceof Promise
          ? verdict.then(jwtIdentity, (err: AppError) => {
              throw refusal('jwt', err)
            })
          : jwtIdentity(verdict)
      }
      throw refusal('invalid', errors.unauthorized('The API key is not valid'))
    }

    /** Open mode lasts while no key was ever created (asked of the keyring, cached). */
    const identify = (request: FastifyRequest): Identity | Promise<Identity> => {
      const token = bearerToken(request.headers.authorization)
      if (!opts.openMode) return verify(token)
      const exist = keyring.keysExist()
      if (exist === false) return openIdentity
      if (exist === true) return verify(token)
      return exist.then((any) => (any ? verify(token) : openIdentity))
    }

    app.addHook('onRoute', checkRouteScope)

    // A callback hook, not an async one: a cached credential is answered without a promise.
    app.addHook('onRequest', (request, _reply, done) => {
      const scope = request.routeOptions.config?.scope
      // Undefined: a route of an external plugin registered before this one (/docs, CORS preflight).
      if (scope === undefined || scope === 'public') {
        done()
        return
      }
      const span = startSpan('filegate.auth', { 'filegate.auth.scope': scope })
      const refused = (err: unknown) => {
        endFailed(span, err)
        done(limitFailure(request, err as Error))
      }
      const proceed = (identity: Identity) => {
        try {
          request.auth = admit(request, identity, scope)
        } catch (err) {
          refused(err)
          return
        }
        span.setAttributes({ 'filegate.auth.actor': request.auth.actor, 'filegate.tenant': request.auth.tenant })
        span.end()
        done()
      }
      let identity: Identity | Promise<Identity>
      try {
        identity = identify(request)
      } catch (err) {
        refused(err)
        return
      }
      if (identity instanceof Promise) identity.then(proceed, refused)
      else proceed(identity)
    })

    // The handler runs as the caller: the audit records who made each change, with this request id.
    app.addHook('preHandler', (request, _reply, done) => {
      if (!request.auth) {
        done()
        return
      }
      actingAs({ actor: request.auth.actor, request_id: String(request.id), ip: request.ip }, done)
    })

    // Every refusal of access is counted here, whatever made it: this hook or the domain (a
    // provider outside a key's allowlist).
    app.addHook('onError', (_request, _reply, err, done) => {
      const reason = refusalReasons.get(err) ?? (isAppError(err) && err.code === 'FORBIDDEN' ? 'forbidden' : undefined)
      if (reason) metrics.authFailures.inc({ reason })
      done()
    })

    /**
     * Counts a failed authentication against the client address; past the limit the answer is 429
     * with Retry-After instead of 401. A valid key is still let through from a limited address:
     * behind a shared proxy or NAT one client's wrong keys must not lock the other tenants out, and
     * keys (16+ random characters) are not what a per-minute limit protects from guessing.
     */
    function limitFailure(request: FastifyRequest, err: Error): Error {
      if (!failures || !isAppError(err) || err.code !== 'UNAUTHORIZED') return err
      const waitMs = failures.retryAfterMs(request.ip)
      if (waitMs > 0) {
        return refusal(
          'rate_limited',
          errors.rateLimited('Too many failed authentications from this address', Math.ceil(waitMs / 1000)),
        )
      }
      failures.recordFailure(request.ip)
      return err
    }
  },
  { name: 'filegate-auth', dependencies: ['filegate-errors', 'filegate-metrics', 'filegate-access'] },
)
