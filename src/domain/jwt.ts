/**
 * JWTs from an identity provider (Supabase Auth, Auth0, Keycloak, Entra, any OIDC issuer), verified
 * with `jose`: the signature against the issuer's JWKS (fetched once, cached, fetched again for an
 * unknown key id at most every JWT_JWKS_COOLDOWN_SECONDS), `iss`, `aud` when configured, `exp` and
 * `nbf` with 30 s of leeway, and only the configured algorithms: asymmetric ones by default, HS256
 * only with JWT_SECRET, `none` never (RFC 8725 §3.1, §3.2).
 *
 * The caller it yields: the tenant from JWT_TENANT_CLAIM (a dotted path), checked like every tenant
 * id; the scopes from JWT_SCOPES_CLAIM (a space-separated string or an array; names filegate does
 * not know are ignored; absent: files:read files:write); the actor `jwt:<sub>`.
 * A token that fails any check is 401; when the signing keys cannot be fetched (the issuer is down,
 * answers an error or something that is not a key set) it is 503 AUTH_UNAVAILABLE, which a retry
 * may cure.
 *
 * A client sends the same token for its whole life (a chat backend, every request of a session), so
 * the verdict on a token that passed is kept for a while (VerifiedTokens) instead of checking its
 * signature again on each request.
 */
import { hash } from 'node:crypto'
import {
  createRemoteJWKSet,
  decodeProtectedHeader,
  type JWTPayload,
  type JWTVerifyGetKey,
  errors as jose,
  jwtVerify,
} from 'jose'
import type { JwtConfig } from '../config.js'
import { AppError, errors } from '../errors.js'
import { isTenantId, tenantIdRule } from '../tenant.js'
import { defaultScopes, isScope, type Scope } from './caller.js'

export interface JwtIdentity {
  subject: string
  tenant: string
  scopes: Scope[]
}

const clockToleranceSeconds = 30

/** Compact JWS: three base64url parts (RFC 7515 §7.1). */
const compactJws = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

/** The signing keys could not be fetched: thrown by the key lookup, turned into AUTH_UNAVAILABLE. */
class SigningKeysUnavailable extends Error {}

/** Failures of fetching or reading the key set, as opposed to a token whose key is not in it. */
const isFetchFailure = (err: unknown) =>
  !(err instanceof jose.JOSEError) ||
  err instanceof jose.JWKSTimeout ||
  err instanceof jose.JWKSInvalid ||
  err.code === 'ERR_JOSE_GENERIC'

/** jose's default `cacheMaxAge` of a remote key set: keys fetched are used this long without a fetch. */
const jwksCacheMaxAgeMs = 600_000

export interface VerifiedTokensOptions {
  /** How long a verdict is kept at most after the token was verified; 0 = no cache. */
  lifetimeMs?: number
  /** How many tokens are kept at most; the least recently used goes first. */
  maxEntries?: number
  /** The clock, in ms since the epoch. */
  now?: () => number
}

/**
 * The tokens that passed every check, each with the caller it yields, kept as a Map in least
 * recently used order. The rules:
 * - Only a token that passed every check is kept: a failure (401, or 503 AUTH_UNAVAILABLE) is never
 *   cached, so a retry is judged afresh and a token refused for being early (its `nbf` past the
 *   leeway) is accepted once its time has come. A token whose `nbf` is still ahead but within the
 *   leeway passed, and only grows more valid, so it is kept like any other.
 * - A verdict ends at the token's `exp` plus the same 30 s of leeway the checks allow, never later,
 *   and at most `lifetimeMs` (default 60 s) after the token was verified. The lifetime bounds how long
 *   a key the issuer withdrew from its JWKS keeps being accepted: jose's remote key set already uses
 *   a key it fetched until it fetches the set again (after 10 minutes, its `cacheMaxAge`, or sooner
 *   for a token of an unknown kid), so a token of a withdrawn key passes at most `lifetimeMs` longer
 *   than it would without the cache.
 * - At most `maxEntries` (default 10,000) tokens; adding one beyond that evicts the least recently
 *   used. An entry is the token's SHA-256 (43 characters) and the caller (subject, tenant, scopes):
 *   a few hundred bytes, a few MB when full.
 * - The key is the SHA-256 of the token, not the token: a bearer credential is not kept in memory as
 *   sent (like API keys, kept as their hash), and an entry's size does not grow with the token's (up
 *   to 8 KB). Hashing a ~1 KB token takes 1-2 µs (measured: 1.4 µs), next to the tens to hundreds of
 *   microseconds of a signature check. A token differing in any character (a tampered signature) has
 *   another hash, so it is never answered from another token's verdict.
 * - The caller is frozen when kept (its scopes too) and the same object is returned to every request
 *   with the token: a request cannot change what the next one gets (a change throws), and a hit
 *   allocates nothing.
 */
export class VerifiedTokens {
  readonly #entries = new Map<string, { identity: Readonly<JwtIdentity>; until: number }>()
  readonly #lifetimeMs: number
  readonly #maxEntries: number
  readonly #now: () => number

  constructor(options: VerifiedTokensOptions = {}) {
    this.#lifetimeMs = options.lifetimeMs ?? 60_000
    this.#maxEntries = options.maxEntries ?? 10_000
    this.#now = options.now ?? Date.now
  }

  /**
   * The caller of a token verified before and still within its verdict's time, else undefined: the
   * object kept, frozen (scopes too), the same for every request with the token (a change throws).
   * `digest` is the token's SHA-256 when the caller has it already.
   */
  get(token: string, digest?: Buffer): Readonly<JwtIdentity> | undefined {
    if (this.#lifetimeMs === 0) return undefined
    const key = tokenKey(token, digest)
    const entry = this.#entries.get(key)
    if (entry === undefined) return undefined
    this.#entries.delete(key)
    if (this.#now() >= entry.until) return undefined
    this.#entries.set(key, entry)
    return entry.identity
  }

  /**
   * Keeps the verdict on a token that passed every check; `exp` is its claim, in seconds. Returns
   * the caller as kept (frozen), or the one given, frozen, when the verdict is not kept.
   */
  set(token: string, identity: JwtIdentity, exp: number, digest?: Buffer): Readonly<JwtIdentity> {
    const kept = Object.freeze({ ...identity, scopes: Object.freeze([...identity.scopes]) }) as JwtIdentity
    if (this.#lifetimeMs === 0) return kept
    const now = this.#now()
    const until = Math.min((exp + clockToleranceSeconds) * 1000, now + this.#lifetimeMs)
    if (!(until > now)) return kept
    const key = tokenKey(token, digest)
    this.#entries.delete(key)
    this.#entries.set(key, { identity: kept, until })
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value
      if (oldest === undefined) break
      this.#entries.delete(oldest)
    }
    return kept
  }
}

const tokenKey = (token: string, digest?: Buffer) =>
  digest === undefined ? hash('sha256', token, 'base64url') : digest.toString('base64url')

export interface JwtVerifierOptions {
  /** The clock, in ms since the epoch, for the time claims and the verdicts kept alike. */
  now?: () => number
}

export class JwtVerifier {
  readonly #config: JwtConfig
  readonly #keys: JWTVerifyGetKey
  readonly #secret: Uint8Array | undefined
  readonly #now: () => number
  readonly #verifiedTokens: VerifiedTokens

  constructor(config: JwtConfig, options: JwtVerifierOptions = {}) {
    this.#config = config
    this.#now = options.now ?? Date.now
    this.#verifiedTokens = new VerifiedTokens({
      lifetimeMs: config.cacheMs,
      maxEntries: config.cacheSize,
      now: this.#now,
    })
    const remote = createRemoteJWKSet(new URL(config.jwksUrl), {
      cooldownDuration: config.jwksCooldownMs,
      cacheMaxAge: jwksCacheMaxAgeMs,
      timeoutDuration: 5_000,
    })
    this.#keys = async (header, token) => {
      try {
        return await remote(header, token)
      } catch (err) {
        throw isFetchFailure(err) ? new SigningKeysUnavailable('signing keys unavailable', { cause: err }) : err
      }
    }
    this.#secret = config.secret === undefined ? undefined : new TextEncoder().encode(config.secret)
  }

  /** Whether a bearer token has the shape of a JWT (so it is for this verifier to judge). */
  static isJwtShaped(token: string): boolean {
    return compactJws.test(token)
  }

  /**
   * The caller a token yields: at once from the verdict kept when it passed before (no promise, as
   * for a cached API key), else once verified now.
   */
  verify(token: string, digest?: Buffer): Readonly<JwtIdentity> | Promise<Readonly<JwtIdentity>> {
    return this.#verifiedTokens.get(token, digest) ?? this.#verifyNow(token, digest)
  }

  async #verifyNow(token: string, digest: Buffer | undefined): Promise<Readonly<JwtIdentity>> {
    let payload: JWTPayload
    try {
      payload = await this.#verified(token)
    } catch (err) {
      if (err instanceof SigningKeysUnavailable) {
        throw new AppError('AUTH_UNAVAILABLE', {
          detail: "The identity provider's signing keys cannot be fetched; retry shortly",
          cause: err.cause,
        })
      }
      throw errors.unauthorized(`The token is not valid: ${describe(err)}`)
    }
    // Kept only now that every check passed; `exp` is required, so it is a number here.
    return this.#verifiedTokens.set(token, this.#identity(payload), payload.exp as number, digest)
  }

  #verified(token: string): Promise<JWTPayload> {
    const options = {
      issuer: this.#config.issuer,
      ...(this.#config.audience === undefined ? {} : { audience: this.#config.audience }),
      clockTolerance: clockToleranceSeconds,
      currentDate: new Date(this.#now()),
      requiredClaims: ['sub', 'exp'],
    }
    // HS256 only against JWT_SECRET, and that secret for nothing else (RFC 8725 §3.1).
    if (this.#secret !== undefined && decodeProtectedHeader(token).alg === 'HS256') {
      return jwtVerify(token, this.#secret, { ...options, algorithms: ['HS256'] }).then((r) => r.payload)
    }
    return jwtVerify(token, this.#keys, { ...options, algorithms: this.#config.algorithms }).then((r) => r.payload)
  }

  #identity(payload: JWTPayload): JwtIdentity {
    const subject = payload.sub as string
    const tenant = claimAt(payload, this.#config.tenantClaim)
    if (!isTenantId(tenant)) {
      throw errors.unauthorized(
        `The token's ${this.#config.tenantClaim.join('.')} claim is not a tenant id (${tenantIdRule})`,
      )
    }
    return { subject, tenant, scopes: this.#scopes(claimAt(payload, this.#config.scopesClaim)) }
  }

  #scopes(claim: unknown): Scope[] {
    if (claim === undefined) return [...defaultScopes]
    const names = typeof claim === 'string' ? claim.split(/\s+/) : claim
    if (!Array.isArray(names) || !names.every((n) => typeof n === 'string')) {
      throw errors.unauthorized(
        `The token's ${this.#config.scopesClaim.join('.')} claim is neither a string nor a list`,
      )
    }
    return [...new Set(names.filter(isScope))]
  }
}

/** The value at a dotted path of the claims (`app_metadata.tenant_id`), or undefined. */
function claimAt(payload: JWTPayload, path: readonly string[]): unknown {
  let value: unknown = payload
  for (const name of path) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, name)) return undefined
    value = (value as Record<string, unknown>)[name]
  }
  return value
}

/** jose's reason, without the token: its codes name the failed check (ERR_JWT_EXPIRED, …). */
function describe(err: unknown): string {
  if (err instanceof jose.JWTExpired) return 'it has expired'
  if (err instanceof jose.JWTClaimValidationFailed) return `the ${err.claim} claim failed its check (${err.reason})`
  if (err instanceof jose.JOSEAlgNotAllowed) return 'its algorithm is not accepted'
  if (err instanceof jose.JWKSNoMatchingKey) return 'no signing key of the issuer matches it'
  if (err instanceof jose.JWSSignatureVerificationFailed) return 'the signature does not verify'
  return 'it cannot be read as a signed JWT'
}
