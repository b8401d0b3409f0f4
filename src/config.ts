/**
 * The environment, read and validated once at start. One TypeBox schema is the
 * source of the variables, their defaults and their types; env-schema (ajv, all errors)
 * validates it, and the cross-field rules (timeouts nest, open mode only on loopback)
 * are checked after. Every problem is reported in one ConfigError.
 */
import { createHash } from 'node:crypto'
import { isIP } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { type Static, Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { envSchema } from 'env-schema'
import cron from 'node-cron'
import { type OriginalsOptions, parseOriginalsUrl } from './originals/index.js'
import { resolveAutoProviders, resolveProviders } from './providers/resolve.js'
import type { ProviderConfig } from './providers/types.js'
import { tenantIdRule, tenantIdSource } from './tenant.js'

const Int = (def: number, min = 0, description = '') =>
  Type.Integer({ default: def, minimum: min, ...(description ? { description } : {}) })
const OptionalString = (description: string) => Type.Optional(Type.String({ minLength: 1, description }))
// Provider settings left unset take the provider's documented value (providers/resolve.ts).
const ProviderUrl = Type.Optional(Type.String({ pattern: '^https?://', description: 'unset: the documented endpoint' }))
const ProviderInt = (min: number, description: string) =>
  Type.Optional(Type.Integer({ minimum: min, description: `${description}; unset: the documented value` }))
const ProviderPurpose = Type.Optional(Type.String({ minLength: 1, description: "unset: the provider's default" }))

/** The OTLP transports the OpenTelemetry spec names (protocol/exporter.md); filegate speaks the HTTP ones. */
const otlpProtocols = ['http/protobuf', 'http/json', 'grpc'] as const
const OtlpProtocol = (description: string) =>
  Type.Union(
    otlpProtocols.map((p) => Type.Literal(p)),
    { description: `${description}: http/protobuf (default) or http/json; grpc is refused` },
  )

export const EnvSchema = Type.Object({
  HOST: Type.String({ default: '127.0.0.1', description: 'Address to bind' }),
  PORT: Type.Integer({ default: 8080, minimum: 0, maximum: 65535 }),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
    { default: 'info' },
  ),
  DATA_DIR: Type.String({ default: './data', description: 'Embedded PGlite data directory' }),
  DATABASE_URL: OptionalString('Postgres connection string'),
  DATABASE_POOL_MAX: Type.Integer({
    default: 4,
    minimum: 1,
    maximum: 100,
    description: 'Connections per process to DATABASE_URL; calls beyond them are pipelined',
  }),
  SUPABASE_URL: Type.Optional(Type.String({ pattern: '^https?://' })),
  SUPABASE_SERVICE_ROLE_KEY: OptionalString('Supabase service role key'),
  API_KEYS: Type.Optional(Type.String({ description: 'tenant:key,... ; key may be sha256:<hex>; tenant * is admin' })),
  DEFAULT_PROVIDER: Type.String({ default: 'auto', minLength: 1 }),
  KIMI_API_KEY: OptionalString('Moonshot API key'),
  KIMI_BASE_URL: ProviderUrl,
  KIMI_MAX_FILE_BYTES: ProviderInt(1, "the operator's per-file cap; documented caps apply beneath it"),
  KIMI_MAX_FILES: ProviderInt(0, '0 = no cap'),
  KIMI_MAX_TOTAL_BYTES: ProviderInt(0, '0 = no cap'),
  KIMI_DEFAULT_PURPOSE: ProviderPurpose,
  GLM_API_KEY: OptionalString('Zhipu API key'),
  GLM_BASE_URL: ProviderUrl,
  GLM_MAX_FILE_BYTES: ProviderInt(1, "the operator's per-file cap; documented caps apply beneath it"),
  GLM_MAX_FILES: Int(0, 0, '0 = no cap'),
  GLM_MAX_TOTAL_BYTES: Int(0, 0, '0 = no cap'),
  GLM_DEFAULT_PURPOSE: ProviderPurpose,
  GEMINI_API_KEY: OptionalString('Google Gemini API key (sent as x-goog-api-key)'),
  GEMINI_BASE_URL: ProviderUrl,
  GEMINI_MAX_FILE_BYTES: ProviderInt(1, "the operator's per-file cap; documented caps apply beneath it"),
  GEMINI_MAX_FILES: ProviderInt(0, '0 = no cap'),
  GEMINI_MAX_TOTAL_BYTES: ProviderInt(0, '0 = no cap'),
  OPENAI_API_KEY: OptionalString('OpenAI API key (the provider named openai)'),
  OPENAI_BASE_URL: ProviderUrl,
  OPENAI_MAX_FILE_BYTES: ProviderInt(1, "the operator's per-file cap; documented caps apply beneath it"),
  OPENAI_MAX_FILES: ProviderInt(0, '0 = no cap'),
  OPENAI_MAX_TOTAL_BYTES: ProviderInt(0, '0 = no cap'),
  ANTHROPIC_API_KEY: OptionalString('Anthropic API key (the provider named anthropic)'),
  ANTHROPIC_BASE_URL: ProviderUrl,
  ANTHROPIC_MAX_FILE_BYTES: ProviderInt(1, "the operator's per-file cap; documented caps apply beneath it"),
  ANTHROPIC_MAX_FILES: ProviderInt(0, '0 = no cap'),
  ANTHROPIC_MAX_TOTAL_BYTES: ProviderInt(0, '0 = no cap'),
  EXTRA_PROVIDERS: Type.Optional(
    Type.String({ description: 'JSON array of more providers: OpenAI-compatible, or a second account of a kind' }),
  ),
  AUTO_PROVIDERS: Type.Optional(
    Type.String({ description: 'Comma list: the providers provider=auto tries, in order; unset: glm,kimi' }),
  ),
  ALLOWED_EXTENSIONS: Type.Optional(Type.String({ description: 'Comma list; narrows every provider' })),
  UPLOAD_TMP_DIR: Type.Optional(Type.String({ minLength: 1 })),
  PROVIDER_TIMEOUT_MS: Int(60_000, 1),
  UPLOAD_TIMEOUT_MS: Int(150_000, 1),
  REQUEST_TIMEOUT_MS: Int(180_000, 1),
  SHUTDOWN_TIMEOUT_MS: Int(200_000, 1),
  SHUTDOWN_DRAIN_MS: Int(0, 0, 'after SIGTERM, keep serving (readiness 503) this long before closing the listener'),
  MAX_CONNECTIONS: Int(512, 1, 'open client connections at most; more are closed at once'),
  CLAIM_LEASE_SECONDS: Type.Integer({
    default: 10,
    minimum: 2,
    maximum: 3600,
    description:
      'lease of an upload claim, renewed by its owner every third of it; a dead owner is taken over after it',
  }),
  RETRY_MAX_ATTEMPTS: Type.Integer({ default: 3, minimum: 1, maximum: 10 }),
  RETRY_BASE_DELAY_MS: Int(200, 1),
  RETRY_MAX_DELAY_MS: Int(10_000, 1),
  CIRCUIT_FAILURE_THRESHOLD: Int(5, 1),
  CIRCUIT_RESET_MS: Int(30_000, 1),
  PROVIDER_MAX_CONCURRENT_UPLOADS: Int(8, 1),
  RETENTION_DAYS: Int(30, 1),
  ORPHAN_AGE_DAYS: Int(7, 0),
  STUCK_UPLOAD_MINUTES: Int(30, 1),
  CLEANUP_CRON: Type.String({ default: '0 */5 * * * *' }),
  CLEANUP_ENABLED: Type.Boolean({ default: true }),
  CLEANUP_BATCH_SIZE: Type.Integer({ default: 100, minimum: 1, maximum: 10_000 }),
  CLEANUP_CONCURRENCY: Type.Integer({ default: 8, minimum: 1, maximum: 256 }),
  RECONCILE_DELETE_UNKNOWN: Type.Boolean({ default: false }),
  RECONCILE_GRACE_MINUTES: Int(60, 0),
  RECONCILE_CRON: Type.Optional(
    Type.String({ description: 'schedule of the reconcile job (5 or 6 fields); unset = on demand only' }),
  ),
  METRICS_PORT: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
  METRICS_TOKEN: Type.Optional(
    Type.String({ minLength: 16, description: 'Bearer token /metrics requires (both listeners); unset = open' }),
  ),
  RATE_LIMIT_PER_MINUTE: Int(600, 0, '0 disables'),
  OTEL_EXPORTER_OTLP_ENDPOINT: Type.Optional(
    Type.String({ pattern: '^https?://', description: 'OTLP/HTTP base URL; tracing is off without it' }),
  ),
  OTEL_SERVICE_NAME: Type.String({ default: 'filegate', minLength: 1 }),
  OTEL_EXPORTER_OTLP_PROTOCOL: Type.Optional(OtlpProtocol('the OTLP transport of every signal')),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: Type.Optional(
    OtlpProtocol('the OTLP transport of traces (wins over the general one)'),
  ),
  TENANT_MAX_FILES: Int(
    0,
    0,
    'files one tenant may occupy on each provider account; 0 = none of its own (its share applies)',
  ),
  TENANT_MAX_BYTES: Int(
    0,
    0,
    'bytes one tenant may occupy on each provider account; 0 = none of its own (its share applies)',
  ),
  TENANT_MAX_SHARE: Type.Number({
    default: 0.5,
    exclusiveMinimum: 0,
    maximum: 1,
    description:
      "a tenant's share of a shared provider account's caps (files, bytes, files of a purpose) and of a provider's upload slots for its streamed-through bodies; 1 = the whole account",
  }),
  TENANT_QUOTAS: Type.Optional(
    Type.String({ description: 'JSON per-tenant overrides: {"acme": {"max_files": 100, "max_bytes": 1073741824}}' }),
  ),
  ORIGINALS_URL: Type.Optional(
    Type.String({ description: 'where originals are kept: file:///absolute/path or s3://bucket/prefix; unset = off' }),
  ),
  S3_ENDPOINT: Type.Optional(
    Type.String({ pattern: '^https?://', description: 'S3-compatible endpoint (MinIO, R2, Supabase); unset = AWS' }),
  ),
  S3_REGION: Type.String({ default: 'us-east-1', minLength: 1 }),
  S3_ACCESS_KEY_ID: OptionalString("unset: the AWS SDK's default credential chain"),
  S3_SECRET_ACCESS_KEY: OptionalString('secret of S3_ACCESS_KEY_ID'),
  S3_FORCE_PATH_STYLE: Type.Boolean({ default: false, description: 'bucket in the path (MinIO, Supabase)' }),
  ORIGINALS_GRACE_MINUTES: Int(60, 0, 'an unreferenced original or staging object is removed after this long'),
  RESUMABLE_TTL_SECONDS: Int(
    86_400,
    1,
    'an unfinished resumable upload (tus, OpenAI Uploads) expires this long after its creation; OpenAI Uploads after one hour at most',
  ),
  JWT_ISSUER: Type.Optional(
    Type.String({
      pattern: '^https?://',
      description: 'accept JWTs from this issuer (the `iss` required); unset = off',
    }),
  ),
  JWT_JWKS_URL: Type.Optional(
    Type.String({ pattern: '^https?://', description: 'the signing keys; unset: <JWT_ISSUER>/.well-known/jwks.json' }),
  ),
  JWT_AUDIENCE: OptionalString('the `aud` a token must carry; unset = not checked'),
  JWT_TENANT_CLAIM: Type.String({
    default: 'sub',
    pattern: '^[^.]+(\\.[^.]+)*$',
    description: 'the claim holding the tenant id; a dotted path such as app_metadata.tenant_id',
  }),
  JWT_SCOPES_CLAIM: Type.String({
    default: 'scope',
    pattern: '^[^.]+(\\.[^.]+)*$',
    description: 'the claim holding the scopes (space-separated or an array); absent: files:read files:write',
  }),
  JWT_ALGORITHMS: Type.String({ default: 'RS256,ES256,EdDSA', description: 'comma list; none and HS* never' }),
  JWT_SECRET: Type.Optional(
    Type.String({ minLength: 32, description: 'HS256 shared secret (older Supabase projects); unset = HS256 refused' }),
  ),
  JWT_JWKS_COOLDOWN_SECONDS: Int(30, 0, 'an unknown key id fetches the keys again at most this often'),
  JWT_CACHE_SECONDS: Int(
    60,
    0,
    'a token that passed is not verified again for this long (never past its exp); 0 = every request',
  ),
  JWT_CACHE_SIZE: Int(10_000, 1, 'how many verified tokens are kept; the least recently used goes first'),
  CORS_ORIGINS: Type.Optional(
    Type.String({ description: 'comma list of browser origins allowed (or *); unset = no CORS headers' }),
  ),
  AUDIT_RETENTION_DAYS: Int(90, 1, 'audit events older than this are removed by the sweeps'),
  RESUMABLE_RETRY_SECONDS: Int(
    60,
    1,
    "a tus upload's completion that failed in a way waiting cures is tried again by the resumable job after this long, doubling with each attempt, at most an hour apart",
  ),
})
export type Env = Static<typeof EnvSchema>

const TenantQuotasSchema = Type.Record(
  Type.String({ pattern: tenantIdSource }),
  Type.Object(
    { max_files: Type.Optional(Type.Integer({ minimum: 0 })), max_bytes: Type.Optional(Type.Integer({ minimum: 0 })) },
    { additionalProperties: false },
  ),
  { additionalProperties: false },
)

/** One tenant's caps on each provider account; null = no cap. */
export interface TenantQuota {
  maxFiles: number | null
  maxBytes: number | null
}

/**
 * The rule for what one tenant may occupy on each provider account. A cap of its own (TENANT_QUOTAS,
 * else TENANT_MAX_FILES / TENANT_MAX_BYTES) always applies; a cap without one is the tenant's share
 * (TENANT_MAX_SHARE) of the account's cap while the account is shared (domain/limits.ts says when),
 * unless TENANT_QUOTAS sets it to 0: that tenant may use the whole account.
 */
export interface TenantQuotas {
  /** TENANT_MAX_FILES / TENANT_MAX_BYTES: every tenant without an override; null = its share. */
  default: TenantQuota
  /** TENANT_QUOTAS: per tenant; a field it leaves out falls back to the default. */
  overrides: ReadonlyMap<string, TenantQuota>
  /** Tenants whose TENANT_QUOTAS entry sets a cap to 0: no cap and no share, the whole account. */
  wholeAccount: ReadonlyMap<string, { files: boolean; bytes: boolean }>
  /**
   * TENANT_MAX_SHARE, in (0, 1]: a tenant's share of a shared account's caps, and of a provider's
   * upload slots for its streamed bodies.
   */
  share: number
  /** The configuration alone lets more than one tenant in: API_KEYS names two tenants or more. */
  sharedByConfig: boolean
}

/** JWTs from an identity provider (JWT_*); undefined when JWT_ISSUER is unset. */
export interface JwtConfig {
  issuer: string
  jwksUrl: string
  audience: string | undefined
  /** JWT_TENANT_CLAIM split into its path: `app_metadata.tenant_id` → ['app_metadata', 'tenant_id']. */
  tenantClaim: string[]
  scopesClaim: string[]
  /** Asymmetric algorithms verified against the JWKS. */
  algorithms: string[]
  /** JWT_SECRET: HS256 tokens are verified with it; undefined = HS256 refused. */
  secret: string | undefined
  jwksCooldownMs: number
  /** JWT_CACHE_SECONDS: how long the verdict on a token that passed is kept at most; 0 = off. */
  cacheMs: number
  /** JWT_CACHE_SIZE: how many verdicts are kept at most. */
  cacheSize: number
}

export interface ApiKeyEntry {
  tenant: string
  /** sha256 of the key, hex. Plain keys are hashed at load so none stays in memory as given. */
  keySha256: string
}

export type StoreConfig =
  | { transport: 'pglite'; dataDir: string }
  | { transport: 'postgres'; databaseUrl: string; poolMax: number }
  | { transport: 'supabase'; url: string; serviceRoleKey: string; databaseUrl?: string }

export interface Config {
  host: string
  port: number
  logLevel: Env['LOG_LEVEL']
  store: StoreConfig
  apiKeys: ApiKeyEntry[]
  /**
   * True when neither API_KEYS nor JWT_ISSUER is set (loopback only): requests act as tenant
   * `default` until the first key is created in the database.
   */
  openMode: boolean
  jwt: JwtConfig | undefined
  /** CORS_ORIGINS: browser origins allowed (`*` = any); empty = no CORS headers. */
  corsOrigins: string[]
  defaultProvider: string
  providers: ProviderConfig[]
  /** AUTO_PROVIDERS: the providers `provider=auto` tries, in this order. */
  autoProviders: string[]
  uploadTmpDir: string
  timeouts: { providerAttemptMs: number; uploadMs: number; requestMs: number; shutdownMs: number }
  /** Open client connections at most (server.maxConnections). */
  maxConnections: number
  /** Lease of an upload claim: renewed every third of it while the owner uploads. */
  claimLeaseSeconds: number
  retry: { maxAttempts: number; baseDelayMs: number; maxDelayMs: number }
  circuit: { failureThreshold: number; resetMs: number }
  providerMaxConcurrentUploads: number
  cleanup: {
    retentionDays: number
    orphanAgeDays: number
    stuckUploadMinutes: number
    cron: string
    enabled: boolean
    batchSize: number
    concurrency: number
    reconcileDeleteUnknown: boolean
    reconcileGraceMinutes: number
    /** RECONCILE_CRON: the reconcile job's own schedule; undefined = on demand only. */
    reconcileCron: string | undefined
    auditRetentionDays: number
  }
  metricsPort: number | undefined
  /** SHA-256 (hex) of METRICS_TOKEN: /metrics wants it as a bearer token; undefined = open. */
  metricsTokenSha256: string | undefined
  rateLimitPerMinute: number
  shutdownDrainMs: number
  /** OpenTelemetry traces, exported over OTLP/HTTP to `endpoint` (off when undefined) in `protocol`. */
  tracing: { endpoint: string | undefined; serviceName: string; protocol: 'http/protobuf' | 'http/json' }
  tenantQuotas: TenantQuotas
  /** ORIGINALS_URL and its S3 settings; undefined = originals are not kept. */
  originals: (OriginalsOptions & { graceMinutes: number }) | undefined
  /**
   * Resumable uploads: how long an unfinished one lives (RESUMABLE_TTL_SECONDS), and the first delay
   * before a deferred completion is tried again (RESUMABLE_RETRY_SECONDS).
   */
  resumable: { ttlSeconds: number; retrySeconds: number }
}

export class ConfigError extends Error {
  readonly problems: string[]
  constructor(problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

export const isLoopbackHost = (host: string): boolean => {
  if (host === 'localhost') return true
  if (isIP(host) === 4) return host.startsWith('127.')
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1'
  return false
}

/** The digest API_KEYS' `sha256:<hex>` form holds: SHA-256 of the key, hex. */
export const apiKeyDigest = (key: string) => createHash('sha256').update(key).digest('hex')
/**
 * An API_KEYS tenant: a tenant id (src/tenant.ts), or `*` for admin. The entry is split at its first
 * colon, so a tenant named here cannot itself hold one.
 */
export const tenantPattern = new RegExp(`^(\\*|${tenantIdSource.slice(1, -1)})$`)
export const minApiKeyLength = 16

function parseApiKeys(raw: string | undefined, problems: string[]): ApiKeyEntry[] {
  if (raw === undefined || raw.trim() === '') return []
  const entries: ApiKeyEntry[] = []
  raw.split(',').forEach((part, index) => {
    const item = part.trim()
    if (item === '') return
    const colon = item.indexOf(':')
    const tenant = colon > 0 ? item.slice(0, colon) : ''
    const key = colon > 0 ? item.slice(colon + 1) : ''
    // The key itself is never echoed: only the entry's position.
    if (!tenantPattern.test(tenant) || key === '') {
      problems.push(`API_KEYS: entry ${index + 1} must be tenant:key (tenant: ${tenantIdRule}, or *)`)
      return
    }
    if (key.startsWith('sha256:')) {
      const hex = key.slice(7).toLowerCase()
      if (!/^[0-9a-f]{64}$/.test(hex)) {
        problems.push(`API_KEYS: entry ${index + 1} (tenant ${tenant}) has a sha256: value that is not 64 hex digits`)
        return
      }
      entries.push({ tenant, keySha256: hex })
    } else {
      if (key.length < minApiKeyLength)
        problems.push(
          `API_KEYS: entry ${index + 1} (tenant ${tenant}) key is shorter than ${minApiKeyLength} characters`,
        )
      entries.push({ tenant, keySha256: apiKeyDigest(key) })
    }
  })
  return entries
}

/** What JWT_ALGORITHMS may name: asymmetric JWS algorithms (RFC 7518 §3.1, RFC 8037 §3.1). */
export const jwtAsymmetricAlgorithms = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
]

function parseJwt(env: Env, problems: string[]): JwtConfig | undefined {
  const dependents = ['JWT_JWKS_URL', 'JWT_AUDIENCE', 'JWT_SECRET'] as const
  if (env.JWT_ISSUER === undefined) {
    for (const name of dependents) if (env[name] !== undefined) problems.push(`${name}: needs JWT_ISSUER`)
    return undefined
  }
  const algorithms: string[] = []
  for (const alg of env.JWT_ALGORITHMS.split(',').map((a) => a.trim())) {
    if (alg === '') continue
    if (alg === 'HS256' && env.JWT_SECRET !== undefined) continue
    if (!jwtAsymmetricAlgorithms.includes(alg)) {
      problems.push(
        alg === 'HS256'
          ? 'JWT_ALGORITHMS: HS256 needs JWT_SECRET'
          : `JWT_ALGORITHMS: "${alg}" is not one of ${jwtAsymmetricAlgorithms.join(', ')} (HS256 with JWT_SECRET; never none)`,
      )
      continue
    }
    algorithms.push(alg)
  }
  if (algorithms.length === 0 && env.JWT_SECRET === undefined) problems.push('JWT_ALGORITHMS: names no algorithm')
  const issuer = env.JWT_ISSUER.replace(/\/+$/, '')
  return {
    issuer: env.JWT_ISSUER,
    jwksUrl: env.JWT_JWKS_URL ?? `${issuer}/.well-known/jwks.json`,
    audience: env.JWT_AUDIENCE,
    tenantClaim: env.JWT_TENANT_CLAIM.split('.'),
    scopesClaim: env.JWT_SCOPES_CLAIM.split('.'),
    algorithms,
    secret: env.JWT_SECRET,
    jwksCooldownMs: env.JWT_JWKS_COOLDOWN_SECONDS * 1000,
    cacheMs: env.JWT_CACHE_SECONDS * 1000,
    cacheSize: env.JWT_CACHE_SIZE,
  }
}

/** CORS_ORIGINS: `*`, or origins exactly as a browser sends them (scheme://host[:port], no path). */
function parseCorsOrigins(raw: string | undefined, problems: string[]): string[] {
  const origins = (raw ?? '')
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean)
  for (const origin of origins) {
    if (origin === '*') continue
    let parsed: URL | undefined
    try {
      parsed = new URL(origin)
    } catch {
      parsed = undefined
    }
    if (parsed?.origin !== origin) {
      problems.push(`CORS_ORIGINS: "${origin.slice(0, 100)}" is not an origin such as https://app.example.com`)
    }
  }
  if (origins.includes('*') && origins.length > 1) problems.push('CORS_ORIGINS: * stands alone')
  return origins
}

/** A cap from the environment: 0 means none. */
const capOrNull = (n: number) => (n > 0 ? n : null)

function parseTenantQuotas(env: Env, apiKeys: ApiKeyEntry[], problems: string[]): TenantQuotas {
  const fallback: TenantQuota = { maxFiles: capOrNull(env.TENANT_MAX_FILES), maxBytes: capOrNull(env.TENANT_MAX_BYTES) }
  const overrides = new Map<string, TenantQuota>()
  const wholeAccount = new Map<string, { files: boolean; bytes: boolean }>()
  const quotas = {
    default: fallback,
    overrides,
    wholeAccount,
    share: env.TENANT_MAX_SHARE,
    sharedByConfig: new Set(apiKeys.filter((k) => k.tenant !== '*').map((k) => k.tenant)).size > 1,
  }
  if (env.TENANT_QUOTAS?.trim()) {
    let parsed: unknown
    try {
      parsed = JSON.parse(env.TENANT_QUOTAS)
    } catch {
      problems.push('TENANT_QUOTAS: not valid JSON')
      return quotas
    }
    if (!Value.Check(TenantQuotasSchema, parsed)) {
      const first = [...Value.Errors(TenantQuotasSchema, parsed)].slice(0, 5)
      for (const e of first) problems.push(`TENANT_QUOTAS${e.path.replaceAll('/', '.')}: ${e.message}`)
      return quotas
    }
    for (const [tenant, quota] of Object.entries(parsed)) {
      overrides.set(tenant, {
        maxFiles: quota.max_files === undefined ? fallback.maxFiles : capOrNull(quota.max_files),
        maxBytes: quota.max_bytes === undefined ? fallback.maxBytes : capOrNull(quota.max_bytes),
      })
      if (quota.max_files === 0 || quota.max_bytes === 0) {
        wholeAccount.set(tenant, { files: quota.max_files === 0, bytes: quota.max_bytes === 0 })
      }
    }
  }
  return quotas
}

/** The caps of `tenant` on each provider account. */
export const tenantQuotaOf = (quotas: TenantQuotas, tenant: string): TenantQuota =>
  quotas.overrides.get(tenant) ?? quotas.default

/**
 * The environment as the schema reads it. Variables the schema refuses are reported in `refused`
 * and replaced by their defaults, so the cross-field rules still run and one message lists every
 * problem. Empty strings mean "unset", as in most deployment tooling.
 */
function parseEnvironment(source: Record<string, string | undefined>): { env: Env; refused: Map<string, string> } {
  const data = Object.fromEntries(Object.entries(source).filter(([k, v]) => k in EnvSchema.properties && v !== ''))
  const refused = new Map<string, string>()
  try {
    return { env: envSchema<Env>({ schema: EnvSchema, data, dotenv: false, env: false }), refused }
  } catch (err) {
    const errors = (
      err as { errors?: Array<{ instancePath: string; message?: string; params?: Record<string, unknown> }> }
    ).errors
    if (!errors) throw err
    for (const e of errors) {
      const variable = e.instancePath.replace(/^\//, '') || String(e.params?.missingProperty ?? 'environment')
      const allowed = e.params?.allowedValues ? ` (${(e.params.allowedValues as string[]).join(', ')})` : ''
      if (!refused.has(variable)) refused.set(variable, `${variable}: ${e.message ?? 'invalid'}${allowed}`)
    }
    const rest = Object.fromEntries(Object.entries(data).filter(([k]) => !refused.has(k)))
    try {
      return { env: envSchema<Env>({ schema: EnvSchema, data: rest, dotenv: false, env: false }), refused }
    } catch {
      throw new ConfigError([...refused.values()])
    }
  }
}

/** The rules between variables: timeouts nest, the drain ends before the shutdown timeout, … */
function crossFieldProblems(env: Env, problems: string[]): void {
  const order: Array<keyof Env> = [
    'PROVIDER_TIMEOUT_MS',
    'UPLOAD_TIMEOUT_MS',
    'REQUEST_TIMEOUT_MS',
    'SHUTDOWN_TIMEOUT_MS',
  ]
  for (let i = 1; i < order.length; i++) {
    const lower = order[i - 1] as keyof Env
    const upper = order[i] as keyof Env
    if (Number(env[lower]) >= Number(env[upper])) {
      problems.push(`${upper}: must be greater than ${lower} (${env[upper]} <= ${env[lower]}); timeouts nest`)
    }
  }
  if (env.SHUTDOWN_DRAIN_MS >= env.SHUTDOWN_TIMEOUT_MS) {
    problems.push('SHUTDOWN_DRAIN_MS: must be less than SHUTDOWN_TIMEOUT_MS')
  }
  if (env.STUCK_UPLOAD_MINUTES * 60_000 <= env.UPLOAD_TIMEOUT_MS) {
    problems.push('STUCK_UPLOAD_MINUTES: must be longer than UPLOAD_TIMEOUT_MS, or live uploads would be taken over')
  }
  if (env.RETRY_BASE_DELAY_MS > env.RETRY_MAX_DELAY_MS) {
    problems.push('RETRY_MAX_DELAY_MS: must be at least RETRY_BASE_DELAY_MS')
  }
  if (!cron.validate(env.CLEANUP_CRON))
    problems.push(`CLEANUP_CRON: "${env.CLEANUP_CRON}" is not a valid cron expression`)
  if (env.RECONCILE_CRON !== undefined && !cron.validate(env.RECONCILE_CRON))
    problems.push(`RECONCILE_CRON: "${env.RECONCILE_CRON}" is not a valid cron expression`)

  if ((env.SUPABASE_URL === undefined) !== (env.SUPABASE_SERVICE_ROLE_KEY === undefined)) {
    problems.push('SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY: set both or neither')
  }
  if ((env.S3_ACCESS_KEY_ID === undefined) !== (env.S3_SECRET_ACCESS_KEY === undefined)) {
    problems.push('S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY: set both or neither')
  }
  if (env.ORIGINALS_URL !== undefined) {
    try {
      parseOriginalsUrl(env.ORIGINALS_URL)
    } catch (err) {
      problems.push(`ORIGINALS_URL: ${(err as Error).message}`)
    }
  }
}

/**
 * The traces' OTLP transport: the signal's own variable wins over the general one, as the
 * OpenTelemetry spec has every option ("Each configuration option MUST be overridable by a signal
 * specific option", opentelemetry.io/docs/specs/otel/protocol/exporter/); http/protobuf by default.
 * gRPC is not spoken here: a start-up error naming the variable, not traces silently lost.
 */
function tracesProtocolOf(env: Env, problems: string[]): Config['tracing']['protocol'] {
  const variable = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL
    ? 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'
    : 'OTEL_EXPORTER_OTLP_PROTOCOL'
  const protocol = env[variable] ?? 'http/protobuf'
  if (protocol !== 'grpc') return protocol
  problems.push(`${variable}: grpc is not supported; filegate exports OTLP over HTTP: use http/protobuf or http/json`)
  return 'http/protobuf'
}

function originalsOf(env: Env): Config['originals'] {
  if (env.ORIGINALS_URL === undefined) return undefined
  return {
    url: env.ORIGINALS_URL,
    s3: {
      endpoint: env.S3_ENDPOINT,
      region: env.S3_REGION,
      accessKeyId: env.S3_ACCESS_KEY_ID,
      secretAccessKey: env.S3_SECRET_ACCESS_KEY,
      forcePathStyle: env.S3_FORCE_PATH_STYLE,
      // A store silent for a quarter of an upload's time (at least 5 s, at most a minute) is hung.
      // The SDK tries a request without a streamed body up to three times, so three such silences
      // still end within UPLOAD_TIMEOUT_MS (the default's 37.5 s) and the upload is answered 503. A
      // working store is not that silent: S3 keeps a long copy alive with whitespace, and the floor
      // spares a loaded store a few seconds' pause where UPLOAD_TIMEOUT_MS is set short.
      idleTimeoutMs: Math.min(Math.max(Math.ceil(env.UPLOAD_TIMEOUT_MS / 4), 5_000), 60_000),
    },
    graceMinutes: env.ORIGINALS_GRACE_MINUTES,
  }
}

/** Supabase when both its variables are set, else Postgres when DATABASE_URL is, else embedded PGlite. */
function storeConfigOf(env: Env): StoreConfig {
  if (env.SUPABASE_URL && env.SUPABASE_SERVICE_ROLE_KEY) {
    return {
      transport: 'supabase',
      url: env.SUPABASE_URL,
      serviceRoleKey: env.SUPABASE_SERVICE_ROLE_KEY,
      ...(env.DATABASE_URL ? { databaseUrl: env.DATABASE_URL } : {}),
    }
  }
  if (env.DATABASE_URL) return { transport: 'postgres', databaseUrl: env.DATABASE_URL, poolMax: env.DATABASE_POOL_MAX }
  return { transport: 'pglite', dataDir: resolve(env.DATA_DIR) }
}

/** Reads `source` (process.env in the server, a plain object in tests) into a Config, or throws ConfigError. */
export function loadConfig(source: Record<string, string | undefined>): Config {
  const { env, refused } = parseEnvironment(source)

  const problems: string[] = []
  const apiKeys = parseApiKeys(env.API_KEYS, problems)
  const jwt = parseJwt(env, problems)
  const corsOrigins = parseCorsOrigins(env.CORS_ORIGINS, problems)
  const openMode = apiKeys.length === 0 && jwt === undefined
  if (openMode && !isLoopbackHost(env.HOST)) {
    problems.push(
      `API_KEYS: required (or JWT_ISSUER) when HOST (${env.HOST}) is not a loopback address; open mode is loopback-only`,
    )
  }

  crossFieldProblems(env, problems)

  const providers = resolveProviders(env, problems)
  const autoProviders = resolveAutoProviders(env.AUTO_PROVIDERS, providers, problems)
  const tenantQuotas = parseTenantQuotas(env, apiKeys, problems)
  const tracesProtocol = tracesProtocolOf(env, problems)
  if (env.DEFAULT_PROVIDER !== 'auto' && !providers.some((p) => p.name === env.DEFAULT_PROVIDER)) {
    problems.push(`DEFAULT_PROVIDER: "${env.DEFAULT_PROVIDER}" is not auto nor a known provider`)
  }
  if (refused.size > 0) {
    // A rule about a refused variable would only repeat it, judged on its default.
    const others = problems.filter((p) => ![...refused.keys()].some((v) => p.includes(v)))
    throw new ConfigError([...refused.values(), ...others])
  }
  if (problems.length > 0) throw new ConfigError(problems)

  const store = storeConfigOf(env)
  return {
    host: env.HOST,
    port: env.PORT,
    logLevel: env.LOG_LEVEL,
    store,
    apiKeys,
    openMode,
    jwt,
    corsOrigins,
    defaultProvider: env.DEFAULT_PROVIDER,
    providers,
    autoProviders,
    uploadTmpDir: resolve(env.UPLOAD_TMP_DIR ?? join(tmpdir(), 'filegate-uploads')),
    timeouts: {
      providerAttemptMs: env.PROVIDER_TIMEOUT_MS,
      uploadMs: env.UPLOAD_TIMEOUT_MS,
      requestMs: env.REQUEST_TIMEOUT_MS,
      shutdownMs: env.SHUTDOWN_TIMEOUT_MS,
    },
    maxConnections: env.MAX_CONNECTIONS,
    claimLeaseSeconds: env.CLAIM_LEASE_SECONDS,
    retry: {
      maxAttempts: env.RETRY_MAX_ATTEMPTS,
      baseDelayMs: env.RETRY_BASE_DELAY_MS,
      maxDelayMs: env.RETRY_MAX_DELAY_MS,
    },
    circuit: { failureThreshold: env.CIRCUIT_FAILURE_THRESHOLD, resetMs: env.CIRCUIT_RESET_MS },
    providerMaxConcurrentUploads: env.PROVIDER_MAX_CONCURRENT_UPLOADS,
    cleanup: {
      retentionDays: env.RETENTION_DAYS,
      orphanAgeDays: env.ORPHAN_AGE_DAYS,
      stuckUploadMinutes: env.STUCK_UPLOAD_MINUTES,
      cron: env.CLEANUP_CRON,
      enabled: env.CLEANUP_ENABLED,
      batchSize: env.CLEANUP_BATCH_SIZE,
      concurrency: env.CLEANUP_CONCURRENCY,
      reconcileDeleteUnknown: env.RECONCILE_DELETE_UNKNOWN,
      reconcileGraceMinutes: env.RECONCILE_GRACE_MINUTES,
      reconcileCron: env.RECONCILE_CRON,
      auditRetentionDays: env.AUDIT_RETENTION_DAYS,
    },
    metricsPort: env.METRICS_PORT,
    metricsTokenSha256: env.METRICS_TOKEN === undefined ? undefined : apiKeyDigest(env.METRICS_TOKEN),
    rateLimitPerMinute: env.RATE_LIMIT_PER_MINUTE,
    shutdownDrainMs: env.SHUTDOWN_DRAIN_MS,
    tracing: {
      endpoint: env.OTEL_EXPORTER_OTLP_ENDPOINT,
      serviceName: env.OTEL_SERVICE_NAME,
      protocol: tracesProtocol,
    },
    tenantQuotas,
    originals: originalsOf(env),
    resumable: { ttlSeconds: env.RESUMABLE_TTL_SECONDS, retrySeconds: env.RESUMABLE_RETRY_SECONDS },
  }
}
