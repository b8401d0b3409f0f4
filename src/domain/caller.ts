import { errors } from '../errors.js'

/**
 * Who is calling, decided once per request by the auth plugin from the credentials (a key in the
 * database, an API_KEYS entry, a JWT, or open mode) and read by the routes and the domain: the
 * tenant the request acts for, the scopes it holds, the providers it may upload to, and the actor
 * the audit names.
 */

/** What a credential may do (docs/security.md has the table of routes per scope). */
export const scopes = ['files:read', 'files:write', 'keys', 'admin'] as const
export type Scope = (typeof scopes)[number]

export const isScope = (value: unknown): value is Scope => scopes.includes(value as Scope)

/** A key created without `scopes` holds these; so does a JWT without a scopes claim. */
export const defaultScopes: readonly Scope[] = ['files:read', 'files:write']

export interface Caller {
  /**
   * The tenant the request acts for: the credential's own, or the one an admin names in X-Tenant-Id.
   * `*` for an admin that has no tenant of its own (the API_KEYS admin) and names none: only routes
   * that act across tenants (keys, audit, cleanup) accept that.
   */
  tenant: string
  /** The credential's own tenant; null for the API_KEYS admin. */
  ownTenant: string | null
  scopes: readonly Scope[]
  /** The providers it may upload or copy to; null = every provider. */
  providers: readonly string[] | null
  /** `key:<id>`, `env:<tenant>`, `jwt:<sub>` or `open`: who the audit names. */
  actor: string
  /** A database key's expiry (ms since the epoch): keys it creates may not outlive it. */
  expiresAt: number | null
}

/** `admin` holds every scope. */
export const holds = (caller: Pick<Caller, 'scopes'>, scope: Scope): boolean =>
  caller.scopes.includes('admin') || caller.scopes.includes(scope)

export const isAdmin = (caller: Pick<Caller, 'scopes'>): boolean => caller.scopes.includes('admin')

/** The tenant an admin acting for none is named by in `tenant`. */
export const anyTenant = '*'

/**
 * The tenant a listing across tenants (keys, audit) is narrowed to: an admin sees every tenant
 * unless it names one (in the query, or by acting for it through X-Tenant-Id); any other caller sees
 * its own tenant only, and naming another is 403.
 */
export function listedTenant(caller: Caller, named: string | undefined): string | undefined {
  if (isAdmin(caller)) {
    return named ?? (caller.tenant === anyTenant || caller.tenant === caller.ownTenant ? undefined : caller.tenant)
  }
  if (named !== undefined && named !== caller.tenant) {
    throw errors.forbidden(`These credentials reach tenant ${caller.tenant} only`, 'admin')
  }
  return caller.tenant
}
