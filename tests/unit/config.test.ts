import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, it } from 'node:test'
import { ConfigError, isLoopbackHost, loadConfig, tenantQuotaOf } from '../../src/config.js'

const problemsOf = (env: Record<string, string>): string[] => {
  try {
    loadConfig(env)
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`)
    return err.problems
  }
  assert.fail('expected the configuration to be refused')
}

describe('config', () => {
  it('starts with no environment at all: PGlite, open mode on loopback, the documented defaults', () => {
    const c = loadConfig({})
    assert.equal(c.host, '127.0.0.1')
    assert.equal(c.port, 8080)
    assert.equal(c.store.transport, 'pglite')
    assert.equal(c.openMode, true)
    assert.equal(c.defaultProvider, 'auto')
    assert.equal(c.cleanup.retentionDays, 30)
    assert.equal(c.cleanup.orphanAgeDays, 7)
    assert.equal(c.cleanup.reconcileDeleteUnknown, false)
    const kimi = c.providers.find((p) => p.name === 'kimi')
    const glm = c.providers.find((p) => p.name === 'glm')
    assert.equal(kimi?.maxFileBytes, 104857600)
    assert.equal(kimi?.maxFiles, 1000)
    assert.equal(glm?.maxFileBytes, 20971520)
    assert.equal(kimi?.configured, false)
  })

  it('MAX_CONNECTIONS and CLAIM_LEASE_SECONDS: defaults 512 and 10, a lease under 2 s refused', () => {
    const c = loadConfig({})
    assert.equal(c.maxConnections, 512)
    assert.equal(c.claimLeaseSeconds, 10)
    assert.equal(loadConfig({ MAX_CONNECTIONS: '64', CLAIM_LEASE_SECONDS: '3' }).claimLeaseSeconds, 3)
    const problems = problemsOf({ MAX_CONNECTIONS: '0', CLAIM_LEASE_SECONDS: '1' })
    assert.ok(problems.some((p) => p.startsWith('MAX_CONNECTIONS')))
    assert.ok(problems.some((p) => p.startsWith('CLAIM_LEASE_SECONDS')))
  })

  it('RECONCILE_CRON: off unless set; a bad expression is refused by name, like CLEANUP_CRON', () => {
    assert.equal(loadConfig({}).cleanup.reconcileCron, undefined)
    assert.equal(loadConfig({ RECONCILE_CRON: '0 0 * * * *' }).cleanup.reconcileCron, '0 0 * * * *')
    const problems = problemsOf({ RECONCILE_CRON: 'every hour', CLEANUP_CRON: '99 * * * *' })
    assert.ok(
      problems.some((p) => p.startsWith('RECONCILE_CRON: "every hour"')),
      problems.join('\n'),
    )
    assert.ok(problems.some((p) => p.startsWith('CLEANUP_CRON')))
  })

  it('default purposes: GLM agent, Kimi file-extract; each can be set, and must be a purpose of its provider', () => {
    const c = loadConfig({})
    assert.equal(c.providers.find((p) => p.name === 'glm')?.defaultPurpose, 'agent')
    assert.equal(c.providers.find((p) => p.name === 'kimi')?.defaultPurpose, 'file-extract')
    const set = loadConfig({ GLM_DEFAULT_PURPOSE: 'file-extract', KIMI_DEFAULT_PURPOSE: 'image' })
    assert.equal(set.providers.find((p) => p.name === 'glm')?.defaultPurpose, 'file-extract')
    assert.equal(set.providers.find((p) => p.name === 'kimi')?.defaultPurpose, 'image')
    const problems = problemsOf({ GLM_DEFAULT_PURPOSE: 'vision', KIMI_DEFAULT_PURPOSE: 'toString' })
    assert.ok(
      problems.some((p) => p.startsWith('GLM_DEFAULT_PURPOSE: "vision" is not a glm purpose')),
      String(problems),
    )
    assert.ok(
      problems.some((p) => p.startsWith('KIMI_DEFAULT_PURPOSE: "toString"')),
      String(problems),
    )
  })

  it("the operator's caps stay 20 MB (GLM) and 100 MB (Kimi); raising GLM's lets documented caps show", () => {
    const c = loadConfig({ GLM_MAX_FILE_BYTES: String(100 * 1024 * 1024) })
    const glm = c.providers.find((p) => p.name === 'glm')
    assert.equal(glm?.maxFileBytes, 100 * 1024 * 1024)
    assert.equal(glm?.purposes['file-extract']?.documentedMaxFileBytes, 50 * 1024 * 1024)
  })

  it('reports every bad variable in one error, by name', () => {
    const problems = problemsOf({
      PORT: 'eighty',
      LOG_LEVEL: 'loud',
      RETENTION_DAYS: '-1',
      CLEANUP_ENABLED: 'maybe',
      KIMI_BASE_URL: 'ftp://x',
    })
    const text = problems.join('\n')
    for (const name of ['PORT', 'LOG_LEVEL', 'RETENTION_DAYS', 'CLEANUP_ENABLED', 'KIMI_BASE_URL']) {
      assert.match(text, new RegExp(`^${name}:`, 'm'), `${name} should be named in:\n${text}`)
    }
  })

  it('OTLP protocol: the traces variable wins over the general one; http/protobuf by default; grpc is refused by name', () => {
    const protocolOf = (env: Record<string, string>) => loadConfig(env).tracing.protocol
    assert.equal(protocolOf({}), 'http/protobuf')
    assert.equal(protocolOf({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }), 'http/json')
    assert.equal(
      protocolOf({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json' }),
      'http/json',
    )
    assert.equal(
      protocolOf({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf' }),
      'http/protobuf',
    )
    // The general variable may say grpc for other signals: traces follow their own.
    assert.equal(
      protocolOf({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json' }),
      'http/json',
    )
    const grpc = problemsOf({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })
    assert.deepEqual(
      grpc.filter((p) => p.includes('OTEL')),
      [
        'OTEL_EXPORTER_OTLP_PROTOCOL: grpc is not supported; filegate exports OTLP over HTTP: use http/protobuf or http/json',
      ],
    )
    assert.match(
      problemsOf({ OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc' }).join('\n'),
      /^OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: grpc/m,
    )
    // A value the spec does not name is refused like any bad variable, in the one message.
    const text = problemsOf({ OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'json', PORT: 'eighty' }).join('\n')
    assert.match(text, /^OTEL_EXPORTER_OTLP_TRACES_PROTOCOL:/m)
    assert.match(text, /^PORT:/m)
  })

  it('refuses timeouts that do not nest', () => {
    const problems = problemsOf({
      PROVIDER_TIMEOUT_MS: '5000',
      UPLOAD_TIMEOUT_MS: '4000',
      REQUEST_TIMEOUT_MS: '300000',
    })
    assert.ok(problems.some((p) => p.startsWith('UPLOAD_TIMEOUT_MS: must be greater than PROVIDER_TIMEOUT_MS')))
    const second = problemsOf({ REQUEST_TIMEOUT_MS: '500000', SHUTDOWN_TIMEOUT_MS: '400000' })
    assert.ok(second.some((p) => p.startsWith('SHUTDOWN_TIMEOUT_MS:')))
  })

  it('refuses open mode off loopback, and accepts it on loopback addresses', () => {
    const problems = problemsOf({ HOST: '0.0.0.0' })
    assert.ok(problems.some((p) => p.startsWith('API_KEYS: required')))
    for (const host of ['127.0.0.1', '127.0.0.2', '::1', 'localhost']) assert.ok(isLoopbackHost(host), host)
    for (const host of ['0.0.0.0', '::', '10.0.0.1', 'example.com']) assert.ok(!isLoopbackHost(host), host)
    const c = loadConfig({ HOST: '0.0.0.0', API_KEYS: 'acme:0123456789abcdef0123' })
    assert.equal(c.openMode, false)
  })

  it('parses API_KEYS: plain keys are kept only as SHA-256, sha256: keys as given, * is admin', () => {
    const digest = createHash('sha256').update('another-secret-key-42').digest('hex')
    const c = loadConfig({ API_KEYS: `acme:plain-secret-key-0001, *:sha256:${digest.toUpperCase()}` })
    assert.deepEqual(c.apiKeys, [
      { tenant: 'acme', keySha256: createHash('sha256').update('plain-secret-key-0001').digest('hex') },
      { tenant: '*', keySha256: digest },
    ])
    assert.ok(!JSON.stringify(c).includes('plain-secret-key-0001'))
  })

  it('never echoes a key in an API_KEYS error', () => {
    const problems = problemsOf({ API_KEYS: 'bad tenant:supersecretvalue123456,acme:short' })
    const text = problems.join('\n')
    assert.match(text, /entry 1/)
    assert.match(text, /entry 2 \(tenant acme\) key is shorter/)
    assert.ok(!text.includes('supersecretvalue123456'))
    assert.ok(!text.includes('short\n') && !text.endsWith('short'))
  })

  it('selects the transport: DATABASE_URL → postgres, SUPABASE_* → supabase (both needed)', () => {
    const pg = loadConfig({ DATABASE_URL: 'postgres://x@h/db' }).store
    assert.deepEqual(pg, { transport: 'postgres', databaseUrl: 'postgres://x@h/db', poolMax: 4 })
    const sized = loadConfig({ DATABASE_URL: 'postgres://x@h/db', DATABASE_POOL_MAX: '12' }).store
    assert.equal(sized.transport === 'postgres' && sized.poolMax, 12)
    assert.ok(problemsOf({ DATABASE_POOL_MAX: '0' }).some((p) => p.startsWith('DATABASE_POOL_MAX')))
    const s = loadConfig({ SUPABASE_URL: 'https://p.supabase.co', SUPABASE_SERVICE_ROLE_KEY: 'k' })
    assert.equal(s.store.transport, 'supabase')
    assert.ok(
      problemsOf({ SUPABASE_URL: 'https://p.supabase.co' }).some((p) => p.includes('SUPABASE_SERVICE_ROLE_KEY')),
    )
  })

  it('reads extra OpenAI-compatible providers and validates them', () => {
    const c = loadConfig({
      EXTRA_PROVIDERS: JSON.stringify([
        { name: 'acme', base_url: 'https://api.acme.example/v1', api_key: 'sk-x', max_file_bytes: 1000 },
      ]),
      DEFAULT_PROVIDER: 'acme',
    })
    const p = c.providers.find((x) => x.name === 'acme')
    assert.equal(p?.kind, 'openai')
    assert.equal(p?.maxFileBytes, 1000)
    assert.equal(p?.configured, true)
    assert.ok(
      problemsOf({ EXTRA_PROVIDERS: '[{"name":"kimi","base_url":"http://x"}]' }).some((x) => x.includes('reserved')),
    )
    // `openai` is the native OpenAI provider now (OPENAI_API_KEY), no longer a free name.
    assert.ok(
      problemsOf({ EXTRA_PROVIDERS: '[{"name":"openai","base_url":"http://x"}]' }).some((x) => x.includes('reserved')),
    )
    assert.ok(problemsOf({ EXTRA_PROVIDERS: 'not json' }).some((x) => x.startsWith('EXTRA_PROVIDERS')))
    assert.ok(problemsOf({ DEFAULT_PROVIDER: 'nope' }).some((x) => x.startsWith('DEFAULT_PROVIDER')))
  })

  it('ALLOWED_EXTENSIONS narrows every provider', () => {
    const c = loadConfig({ ALLOWED_EXTENSIONS: '.pdf, txt' })
    const kimi = c.providers.find((p) => p.name === 'kimi')
    assert.deepEqual(kimi?.purposes['file-extract']?.extensions, ['pdf', 'txt'])
  })

  it('treats empty strings as unset', () => {
    assert.equal(loadConfig({ DATABASE_URL: '', PORT: '' }).store.transport, 'pglite')
  })

  it('reads only the source it is given, never process.env behind its back', () => {
    const saved = process.env.DATABASE_URL
    process.env.DATABASE_URL = 'postgres://leak@127.0.0.1/nope'
    try {
      assert.equal(loadConfig({}).store.transport, 'pglite')
    } finally {
      if (saved === undefined) delete process.env.DATABASE_URL
      else process.env.DATABASE_URL = saved
    }
  })

  it('lists schema and cross-field problems in the same message', () => {
    const problems = problemsOf({ PORT: 'abc', HOST: '0.0.0.0' })
    assert.ok(problems.some((p) => p.startsWith('PORT:')))
    assert.ok(problems.some((p) => p.startsWith('API_KEYS: required')))
  })

  it("TENANT_MAX_SHARE: a tenant's share of shared accounts, in (0, 1]; who shares, and who keeps the whole account", () => {
    const plain = loadConfig({}).tenantQuotas
    assert.equal(plain.share, 0.5)
    assert.equal(plain.sharedByConfig, false, 'open mode: one tenant')
    const keys = (entries: string) => loadConfig({ API_KEYS: entries }).tenantQuotas.sharedByConfig
    assert.equal(keys('solo:solo-key-0123456789abcdef,*:admin-key-0123456789abcdef'), false, 'one tenant and an admin')
    assert.equal(keys('a:a-key-0123456789abcdef,b:b-key-0123456789abcdef'), true, 'two tenants')
    assert.equal(keys('a:a-key-0123456789abcdef,a:a-key-0123456789abcdeg'), false, 'two keys of one tenant')
    const whole = loadConfig({ TENANT_QUOTAS: '{"vip": {"max_files": 0}, "big": {"max_files": 5, "max_bytes": 0}}' })
    assert.deepEqual(whole.tenantQuotas.wholeAccount.get('vip'), { files: true, bytes: false })
    assert.deepEqual(whole.tenantQuotas.wholeAccount.get('big'), { files: false, bytes: true })
    assert.equal(whole.tenantQuotas.wholeAccount.get('other'), undefined)
    assert.equal(loadConfig({ TENANT_MAX_SHARE: '1' }).tenantQuotas.share, 1)
    for (const bad of ['0', '-0.5', '1.5', 'half']) {
      assert.match(problemsOf({ TENANT_MAX_SHARE: bad }).join('\n'), /TENANT_MAX_SHARE/, bad)
    }
  })

  it('tenant quotas: defaults (0 = none), per-tenant overrides, and refusals by name', () => {
    assert.deepEqual(tenantQuotaOf(loadConfig({}).tenantQuotas, 'anyone'), { maxFiles: null, maxBytes: null })
    const c = loadConfig({
      TENANT_MAX_FILES: '10',
      TENANT_MAX_BYTES: '1000',
      TENANT_QUOTAS: '{"acme": {"max_files": 100, "max_bytes": 1073741824}, "free": {"max_bytes": 0}}',
    })
    assert.deepEqual(tenantQuotaOf(c.tenantQuotas, 'acme'), { maxFiles: 100, maxBytes: 1073741824 })
    assert.deepEqual(tenantQuotaOf(c.tenantQuotas, 'free'), { maxFiles: 10, maxBytes: null })
    assert.deepEqual(tenantQuotaOf(c.tenantQuotas, 'other'), { maxFiles: 10, maxBytes: 1000 })
    assert.deepEqual(tenantQuotaOf(c.tenantQuotas, 'toString'), { maxFiles: 10, maxBytes: 1000 })
    assert.match(problemsOf({ TENANT_QUOTAS: '{nope' }).join('\n'), /TENANT_QUOTAS: not valid JSON/)
    assert.match(problemsOf({ TENANT_QUOTAS: '{"acme": {"max_files": -1}}' }).join('\n'), /TENANT_QUOTAS/)
    assert.match(problemsOf({ TENANT_QUOTAS: '{"acme": {"files": 1}}' }).join('\n'), /TENANT_QUOTAS/)
    assert.match(problemsOf({ TENANT_QUOTAS: '{"bad tenant!": {}}' }).join('\n'), /TENANT_QUOTAS/)
    assert.match(problemsOf({ TENANT_MAX_FILES: '-2' }).join('\n'), /TENANT_MAX_FILES/)
  })

  it('METRICS_TOKEN: at least 16 characters; kept only as its digest', () => {
    assert.match(problemsOf({ METRICS_TOKEN: 'short' }).join('\n'), /METRICS_TOKEN/)
    const c = loadConfig({ METRICS_TOKEN: 'metrics-token-0123456789' })
    assert.equal(c.metricsTokenSha256, createHash('sha256').update('metrics-token-0123456789').digest('hex'))
    assert.ok(!JSON.stringify(c).includes('metrics-token-0123456789'))
    assert.equal(loadConfig({}).metricsTokenSha256, undefined)
  })

  it('JWT_*: off without JWT_ISSUER, asymmetric algorithms by default, HS256 only with JWT_SECRET, never none', () => {
    assert.equal(loadConfig({}).jwt, undefined)
    const c = loadConfig({ JWT_ISSUER: 'https://ref.supabase.co/auth/v1', JWT_AUDIENCE: 'authenticated' })
    assert.deepEqual(c.jwt, {
      issuer: 'https://ref.supabase.co/auth/v1',
      jwksUrl: 'https://ref.supabase.co/auth/v1/.well-known/jwks.json',
      audience: 'authenticated',
      tenantClaim: ['sub'],
      scopesClaim: ['scope'],
      algorithms: ['RS256', 'ES256', 'EdDSA'],
      secret: undefined,
      jwksCooldownMs: 30_000,
      cacheMs: 60_000,
      cacheSize: 10_000,
    })
    assert.equal(c.openMode, false, 'a JWT issuer is a credential: no open mode')
    const claims = loadConfig({
      JWT_ISSUER: 'https://idp.example.com/',
      JWT_JWKS_URL: 'https://idp.example.com/keys',
      JWT_TENANT_CLAIM: 'app_metadata.tenant_id',
      JWT_SCOPES_CLAIM: 'https://filegate/scopes',
    }).jwt
    assert.deepEqual(claims?.tenantClaim, ['app_metadata', 'tenant_id'])
    assert.equal(claims?.jwksUrl, 'https://idp.example.com/keys')
    const hs = loadConfig({ JWT_ISSUER: 'https://idp', JWT_SECRET: 's'.repeat(32), JWT_ALGORITHMS: 'HS256,RS256' }).jwt
    assert.deepEqual(hs?.algorithms, ['RS256'], 'HS256 goes through JWT_SECRET, never the JWKS')
    assert.match(
      problemsOf({ JWT_ISSUER: 'https://idp', JWT_ALGORITHMS: 'HS256' }).join('\n'),
      /HS256 needs JWT_SECRET/,
    )
    assert.match(problemsOf({ JWT_ISSUER: 'https://idp', JWT_ALGORITHMS: 'none' }).join('\n'), /never none/)
    assert.match(problemsOf({ JWT_ISSUER: 'https://idp', JWT_ALGORITHMS: 'HS512' }).join('\n'), /JWT_ALGORITHMS/)
    assert.match(problemsOf({ JWT_ISSUER: 'https://idp', JWT_SECRET: 'short' }).join('\n'), /JWT_SECRET/)
    assert.match(problemsOf({ JWT_AUDIENCE: 'authenticated' }).join('\n'), /JWT_AUDIENCE: needs JWT_ISSUER/)
    assert.match(problemsOf({ JWT_ISSUER: 'ftp://idp' }).join('\n'), /JWT_ISSUER/)
    assert.match(problemsOf({ JWT_ISSUER: 'https://idp', JWT_TENANT_CLAIM: 'a..b' }).join('\n'), /JWT_TENANT_CLAIM/)
    // Off loopback a JWT issuer, like API_KEYS, is enough to start (never open).
    assert.equal(loadConfig({ HOST: '0.0.0.0', JWT_ISSUER: 'https://idp' }).openMode, false)
  })

  it('JWT_CACHE_SECONDS and JWT_CACHE_SIZE: 60 s and 10,000 tokens by default, 0 s turns the cache off', () => {
    const set = loadConfig({ JWT_ISSUER: 'https://idp', JWT_CACHE_SECONDS: '5', JWT_CACHE_SIZE: '100' }).jwt
    assert.equal(set?.cacheMs, 5_000)
    assert.equal(set?.cacheSize, 100)
    assert.equal(loadConfig({ JWT_ISSUER: 'https://idp', JWT_CACHE_SECONDS: '0' }).jwt?.cacheMs, 0)
    const problems = problemsOf({ JWT_ISSUER: 'https://idp', JWT_CACHE_SECONDS: '-1', JWT_CACHE_SIZE: '0' })
    assert.ok(
      problems.some((p) => p.startsWith('JWT_CACHE_SECONDS')),
      problems.join('\n'),
    )
    assert.ok(
      problems.some((p) => p.startsWith('JWT_CACHE_SIZE')),
      problems.join('\n'),
    )
  })

  it('CORS_ORIGINS: origins as browsers send them, or * alone; AUDIT_RETENTION_DAYS: 90 by default', () => {
    assert.deepEqual(loadConfig({}).corsOrigins, [])
    assert.deepEqual(loadConfig({ CORS_ORIGINS: 'https://app.example.com, http://localhost:5173' }).corsOrigins, [
      'https://app.example.com',
      'http://localhost:5173',
    ])
    assert.deepEqual(loadConfig({ CORS_ORIGINS: '*' }).corsOrigins, ['*'])
    for (const bad of [
      'app.example.com',
      'https://app.example.com/',
      'https://app.example.com/path',
      '*,https://a.b',
    ]) {
      assert.match(problemsOf({ CORS_ORIGINS: bad }).join('\n'), /CORS_ORIGINS/, bad)
    }
    assert.equal(loadConfig({}).cleanup.auditRetentionDays, 90)
    assert.match(problemsOf({ AUDIT_RETENTION_DAYS: '0' }).join('\n'), /AUDIT_RETENTION_DAYS/)
  })

  it('tenant ids: 1-128 of letters, digits and . _ : @ | - (API_KEYS, TENANT_QUOTAS)', () => {
    const wide = 'auth0|5f1c.user_01@example.com'
    const c = loadConfig({ API_KEYS: `${wide}:0123456789abcdef0123`, TENANT_QUOTAS: `{"${wide}": {"max_files": 3}}` })
    assert.equal(c.apiKeys[0]?.tenant, wide)
    assert.equal(tenantQuotaOf(c.tenantQuotas, wide).maxFiles, 3)
    assert.ok(loadConfig({ API_KEYS: `${'a'.repeat(128)}:0123456789abcdef0123` }))
    for (const bad of ['a'.repeat(129), '-leading', 'a/b', 'a b', '.hidden']) {
      assert.match(problemsOf({ API_KEYS: `${bad}:0123456789abcdef0123` }).join('\n'), /API_KEYS: entry 1/, bad)
    }
  })
})
