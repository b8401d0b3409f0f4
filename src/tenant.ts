/**
 * The one rule for a tenant id, whatever it comes from: an API_KEYS entry, a key in the database, a
 * JWT claim, X-Tenant-Id, TENANT_QUOTAS. 1–128 characters of letters, digits and `. _ : @ | -`,
 * starting with a letter or digit: wide enough for identity-provider subjects (`auth0|5f…`,
 * `user@example.com`), narrow enough to be an object-store path segment (originals are kept under
 * `<tenant>/<sha256>`) and a safe log value. Anything else is refused, never trimmed or escaped.
 */
export const tenantIdSource = '^[A-Za-z0-9][A-Za-z0-9._:@|-]{0,127}$'
export const tenantIdPattern = new RegExp(tenantIdSource)

export const isTenantId = (value: unknown): value is string => typeof value === 'string' && tenantIdPattern.test(value)

/** The rule in words, for error messages. */
export const tenantIdRule = '1-128 letters, digits or . _ : @ | - starting with a letter or digit'
