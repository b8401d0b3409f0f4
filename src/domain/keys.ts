/**
 * Managing the keys kept in the database: create, list, get, revoke, rotate (the HTTP API and the
 * CLI share it). Who may manage what is decided here, so that no credential can make one stronger
 * than itself:
 * - an admin manages every tenant's keys;
 * - a `keys` credential manages its own tenant's keys only: it sees all of them, and creates,
 *   rotates or revokes only keys that hold no more than it does (each scope held by it, providers
 *   within its own, an expiry no later than its own). Anything else is 403 FORBIDDEN; a key of
 *   another tenant is 404, as if it did not exist.
 * The secret is made here, shown once (in the answer to create or rotate) and only its digest stored.
 */
import { AppError, errors } from '../errors.js'
import type { StorePort } from '../store/port.js'
import { createApiKey, getApiKey, type KeyRow, listApiKeys, revokeApiKey, rotateApiKey } from '../store/queries.js'
import { isTenantId, tenantIdRule } from '../tenant.js'
import { anyTenant, type Caller, defaultScopes, holds, isAdmin, isScope, listedTenant, type Scope } from './caller.js'
import { decodeCursor, encodeCursor, iso } from './file-record.js'
import { keyDigest, keyHint, newKey } from './keyring.js'

/** The API's Key object: the row, its scopes typed and its times in RFC 3339 UTC. */
export type KeyObject = Omit<KeyRow, 'scopes'> & { scopes: Scope[] }

const isoOrNull = (ts: string | null) => (ts === null ? null : iso(ts))

export function toKeyObject(row: KeyRow): KeyObject {
  return {
    id: row.id,
    tenant_id: row.tenant_id,
    name: row.name,
    scopes: row.scopes.filter(isScope),
    providers: row.providers,
    key_hint: row.key_hint,
    created_at: iso(row.created_at),
    created_by: row.created_by,
    expires_at: isoOrNull(row.expires_at),
    revoked_at: isoOrNull(row.revoked_at),
    rotated_at: isoOrNull(row.rotated_at),
    previous_key_expires_at: isoOrNull(row.previous_key_expires_at),
    last_used_at: isoOrNull(row.last_used_at),
  }
}

export interface NewKeyRequest {
  tenant?: string | undefined
  name?: string | undefined
  scopes?: readonly Scope[] | undefined
  providers?: readonly string[] | null | undefined
  expiresInSeconds?: number | undefined
}

export interface KeyPage {
  data: KeyObject[]
  has_more: boolean
  next_cursor: string | null
}

/** The longest a rotation's old secret may keep working. */
export const maxGraceSeconds = 86_400

export class KeyService {
  constructor(
    private readonly store: StorePort,
    /** The configured providers: a key's `providers` names only these. */
    private readonly providerNames: readonly string[],
    /**
     * Told of each change made here (`<event>:<id>`, as announced), so that this process's cache
     * is true at once, before the announcement comes back.
     */
    private readonly changed: (change: string) => void = () => {},
  ) {}

  async create(caller: Caller, request: NewKeyRequest): Promise<{ key: KeyObject; secret: string }> {
    const tenant = this.tenantForNewKey(caller, request.tenant)
    const scopes = [...new Set(request.scopes ?? defaultScopes)]
    const providers =
      request.providers === undefined || request.providers === null ? null : [...new Set(request.providers)]
    for (const name of providers ?? []) {
      if (!this.providerNames.includes(name)) throw errors.unknownProvider(name, [...this.providerNames])
    }
    const expiresAt =
      request.expiresInSeconds === undefined ? undefined : new Date(Date.now() + request.expiresInSeconds * 1000)
    checkWithin(caller, { scopes, providers, expiresAt: expiresAt?.getTime() ?? null }, 'create')
    const made = newKey()
    const row = await createApiKey(this.store, {
      id: made.id,
      tenantId: tenant,
      name: request.name,
      scopes,
      providers,
      sha256: keyDigest(made.key),
      hint: keyHint(made.key),
      expiresAt,
      createdBy: caller.actor,
    })
    this.changed(`create:${row.id}`)
    return { key: toKeyObject(row), secret: made.key }
  }

  /** Admin: the tenant named (or acted for); a `keys` credential: its own, and only its own. */
  private tenantForNewKey(caller: Caller, named: string | undefined): string {
    if (named !== undefined && !isTenantId(named)) {
      throw errors.validationFailed(`tenant must be ${tenantIdRule}`)
    }
    if (isAdmin(caller)) {
      const tenant = named ?? (caller.tenant === anyTenant ? undefined : caller.tenant)
      if (tenant === undefined) throw errors.validationFailed('An admin must name the tenant of the new key (tenant)')
      return tenant
    }
    if (named !== undefined && named !== caller.tenant) {
      throw errors.forbidden(`This key manages the keys of tenant ${caller.tenant} only`, 'admin')
    }
    return caller.tenant
  }

  async list(
    caller: Caller,
    query: { tenant?: string | undefined; limit: number; after?: string | undefined },
  ): Promise<KeyPage> {
    const tenantId = listedTenant(caller, query.tenant)
    const after = query.after === undefined ? undefined : decodeCursor(query.after, keyIdPattern)
    const page = await listApiKeys(this.store, { tenantId, limit: query.limit, after })
    const last = page.data.at(-1)
    return {
      data: page.data.map(toKeyObject),
      has_more: page.has_more,
      next_cursor: page.has_more && last ? encodeCursor(last) : null,
    }
  }

  async get(caller: Caller, id: string): Promise<KeyObject> {
    return toKeyObject(await this.manageable(caller, id))
  }

  /** Revokes the key (idempotent); every replica refuses it within a second. */
  async revoke(caller: Caller, id: string): Promise<KeyObject> {
    const row = await this.manageable(caller, id)
    checkWithin(caller, heldBy(row), 'revoke')
    const revoked = await revokeApiKey(this.store, id)
    if (!revoked) throw keyNotFound(id)
    this.changed(`revoke:${id}`)
    return toKeyObject(revoked)
  }

  /** A new secret for the same id; the old one keeps working for `graceSeconds`. */
  async rotate(caller: Caller, id: string, graceSeconds: number): Promise<{ key: KeyObject; secret: string }> {
    const row = await this.manageable(caller, id)
    checkWithin(caller, heldBy(row), 'rotate')
    const made = newKey(row.id)
    const rotation = await rotateApiKey(this.store, id, {
      sha256: keyDigest(made.key),
      hint: keyHint(made.key),
      graceSeconds,
    })
    if (!rotation) throw keyNotFound(id)
    if (rotation.outcome !== 'rotated') {
      throw errors.validationFailed(`Key ${id} is ${rotation.outcome}; create a new key instead`)
    }
    this.changed(`rotate:${id}`)
    return { key: toKeyObject(rotation.key), secret: made.key }
  }

  /** The key, when the caller may manage it; 404 otherwise (another tenant's key is not shown to exist). */
  private async manageable(caller: Caller, id: string): Promise<KeyRow> {
    const row = keyIdPattern.test(id) ? await getApiKey(this.store, id) : null
    if (!row || (!isAdmin(caller) && row.tenant_id !== caller.tenant)) throw keyNotFound(id)
    return row
  }
}

const keyNotFound = (id: string) => errors.notFound(`No key ${id}`)
const keyIdPattern = /^[a-z0-9]{16}$/

interface Holding {
  scopes: readonly string[]
  providers: readonly string[] | null
  expiresAt: number | null
}

const heldBy = (row: KeyRow): Holding => ({
  scopes: row.scopes,
  providers: row.providers,
  expiresAt: row.expires_at === null ? null : Date.parse(row.expires_at),
})

/** No escalation: a non-admin may only make or touch a key that holds no more than it does. */
function checkWithin(caller: Caller, key: Holding, doing: 'create' | 'revoke' | 'rotate'): void {
  if (isAdmin(caller)) return
  const what = doing === 'create' ? 'create a key' : `${doing} a key`
  for (const scope of key.scopes) {
    if (!holds(caller, scope as Scope)) {
      throw errors.forbidden(`This key may not ${what} with scope ${scope}, which it does not hold`, scope)
    }
  }
  if (caller.providers !== null) {
    const outside =
      key.providers === null ? ['(every provider)'] : key.providers.filter((p) => !caller.providers?.includes(p))
    if (outside.length > 0) {
      throw new AppError('FORBIDDEN', {
        detail: `This key may not ${what} for providers it may not use itself: ${outside.join(', ')}`,
        extensions: { allowed_providers: caller.providers },
      })
    }
  }
  if (caller.expiresAt !== null && (key.expiresAt === null || key.expiresAt > caller.expiresAt)) {
    throw errors.forbidden(
      `This key expires at ${new Date(caller.expiresAt).toISOString()}; it may not ${what} that outlives it (set expires_in)`,
    )
  }
}
