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
 */
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

export class JwtVerifier {
  readonly #config: JwtConfig
  readonly #keys: JWTVerifyGetKey
  readonly #secret: Uint8Array | undefined

  constructor(config: JwtConfig) {
    this.#config = config
    const remote = createRemoteJWKSet(new URL(config.jwksUrl), {
      cooldownDuration: config.jwksCooldownMs,
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

  async verify(token: string): Promise<JwtIdentity> {
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
    return this.#identity(payload)
  }

  #verified(token: string): Promise<JWTPayload> {
    const options = {
      issuer: this.#config.issuer,
      ...(this.#config.audience === undefined ? {} : { audience: this.#config.audience }),
      clockTolerance: clockToleranceSeconds,
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
