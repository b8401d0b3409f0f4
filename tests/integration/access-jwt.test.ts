/**
 * JWTs from an identity provider, against a JWKS server on loopback (tests/fakes/jwks-server.ts)
 * with tokens signed by jose (ES256 and RS256), set up as for Supabase Auth (issuer
 * <base>/auth/v1, audience `authenticated`, the tenant in app_metadata.tenant_id): a good token acts
 * for its claim's tenant with its scopes; every failed check is 401 (wrong aud or iss, expired, not
 * yet valid, alg none, HS256 without JWT_SECRET, an unknown key, a bad signature, a tenant claim that
 * is no tenant id, a 100 KB token); a key rotated in at the issuer is fetched on first sight; a token
 * that passed is not verified again (its verdict is kept, domain-jwt-cache.test.ts tests the bounds);
 * the issuer down is 503 AUTH_UNAVAILABLE with Retry-After. The auth span names the subject, never the
 * token.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-node'
import type { FastifyInstance } from 'fastify'
import { type JWTPayload, SignJWT } from 'jose'
import { startTracing, type Tracing } from '../../src/tracing.js'
import { type FakeIssuer, startFakeIssuer } from '../fakes/jwks-server.js'
import { auth, build, multipart, pgliteDataDir, startFakes, testKeys } from '../helper.js'
import { forbidden, suiteScope } from './access-support.js'

const now = () => Math.floor(Date.now() / 1000)
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

describe('JWTs of an identity provider (Supabase Auth set-up, PGlite)', () => {
  const exporter = new InMemorySpanExporter()
  let tracing: Tracing
  let issuer: FakeIssuer
  let app: FastifyInstance
  let iss: string
  const scope = suiteScope()

  before(async () => {
    const started = startTracing(
      { endpoint: undefined, serviceName: 'filegate-test', protocol: 'http/protobuf' },
      { exporter },
    )
    assert.ok(started)
    tracing = started
    issuer = await startFakeIssuer()
    scope.after(() => issuer.close())
    iss = `${issuer.url}/auth/v1`
    const fakes = await startFakes(scope)
    app = await build(
      scope,
      {
        ...fakes.env,
        DATA_DIR: await pgliteDataDir(scope, 'filegate-jwt-'),
        JWT_ISSUER: iss,
        JWT_AUDIENCE: 'authenticated',
        JWT_TENANT_CLAIM: 'app_metadata.tenant_id',
        JWT_JWKS_COOLDOWN_SECONDS: '0',
      },
      { instrumentation: tracing.plugin },
    )
  })
  after(() => tracing?.shutdown())

  const claims = (over: JWTPayload = {}): JWTPayload => ({
    iss,
    aud: 'authenticated',
    sub: 'user-1',
    role: 'authenticated',
    iat: now(),
    exp: now() + 300,
    app_metadata: { tenant_id: 'jwt-tenant' },
    ...over,
  })
  const list = (token: string) => app.inject({ method: 'GET', url: '/v1/files', headers: auth(token) })

  it('acts for the tenant of its claim with files:read files:write, ES256 and RS256 alike', async () => {
    for (const alg of ['ES256', 'RS256'] as const) {
      const token = await issuer.sign(claims(), { alg })
      const res = await list(token)
      assert.equal(res.statusCode, 200, `${alg}: ${res.body}`)
    }
    const token = await issuer.sign(claims())
    const body = multipart([
      ['provider', 'kimi'],
      ['file', { filename: 'jwt.txt', content: 'uploaded with a JWT' }],
    ])
    const up = await app.inject({
      method: 'POST',
      url: '/v1/files',
      headers: { ...auth(token), ...body.headers },
      payload: body.payload,
    })
    assert.equal(up.statusCode, 201, up.body)
    assert.equal(up.json().tenant_id, 'jwt-tenant')
    const events = await app.inject({
      method: 'GET',
      url: `/v1/audit?target=${up.json().id}`,
      headers: { ...auth(testKeys.admin) },
    })
    assert.equal(events.json().data[0].actor, 'jwt:user-1')
    assert.equal(
      forbidden(await app.inject({ method: 'GET', url: '/v1/keys', headers: auth(token) }), 'keys').required_scope,
      'keys',
    )
    assert.equal((await list(testKeys.alice)).statusCode, 200, 'API_KEYS still work beside JWTs')
  })

  it('refuses with 401 every token that fails a check', async () => {
    const es = issuer.keys.find((k) => k.alg === 'ES256')
    assert.ok(es)
    const signed = (over: JWTPayload) => issuer.sign(claims(over))
    const stranger = await issuer.unpublished('ES256')
    const good = await signed({})
    const [h, p, s] = good.split('.')
    const cases: Array<[string, string]> = [
      ['wrong aud', await signed({ aud: 'someone-else' })],
      ['wrong iss', await signed({ iss: `${issuer.url}/other` })],
      ['expired (past the 30 s leeway)', await signed({ exp: now() - 60 })],
      ['not yet valid (past the leeway)', await signed({ nbf: now() + 60 })],
      ['no sub', await issuer.sign({ ...claims(), sub: undefined })],
      ['no exp', await issuer.sign({ ...claims(), exp: undefined })],
      ['no tenant claim', await signed({ app_metadata: {} })],
      ['a tenant claim that is no tenant id', await signed({ app_metadata: { tenant_id: '../etc' } })],
      ['a tenant claim that is not a string', await signed({ app_metadata: { tenant_id: 42 } })],
      ['a scopes claim that is a number', await signed({ scope: 7 })],
      ['alg none', `${b64({ alg: 'none', typ: 'JWT' })}.${p}.`],
      [
        'HS256 without JWT_SECRET',
        await new SignJWT(claims()).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('s'.repeat(32))),
      ],
      ['an unknown key', await issuer.sign(claims(), { key: stranger })],
      ['a published kid over another key', await issuer.sign(claims(), { key: { ...stranger, kid: es.kid } })],
      ['a changed payload', `${h}.${b64({ ...claims(), app_metadata: { tenant_id: 'victim' } })}.${s}`],
      ['a 100 KB token', await signed({ pad: 'x'.repeat(100_000) })],
      ['three parts of garbage', 'aaa.bbb.ccc'],
    ]
    for (const [what, token] of cases) {
      const res = await list(token)
      assert.equal(res.statusCode, 401, `${what}: ${res.body}`)
      assert.equal(res.json().code, 'UNAUTHORIZED', what)
      assert.match(String(res.headers['www-authenticate']), /^Bearer/, what)
      assert.ok(!res.body.includes(token.slice(-20)), `${what}: the token is not echoed`)
    }
    // Within the leeway: accepted.
    assert.equal((await list(await signed({ exp: now() - 10 }))).statusCode, 200)
    assert.equal((await list(await signed({ nbf: now() + 10 }))).statusCode, 200)
  })

  it('reads the scopes from the scope claim: a string or a list, unknown names ignored', async () => {
    const reader = await issuer.sign(claims({ scope: 'files:read openid' }))
    assert.equal((await list(reader)).statusCode, 200)
    const upload = await app.inject({ method: 'POST', url: '/v1/files', headers: auth(reader) })
    assert.equal(forbidden(upload, 'a reader uploading').required_scope, 'files:write')
    const manager = await issuer.sign(claims({ scope: ['keys', 'files:read'] }))
    const audit = await app.inject({ method: 'GET', url: '/v1/audit', headers: auth(manager) })
    assert.equal(audit.statusCode, 200, audit.body)
    for (const e of audit.json().data) assert.equal(e.tenant_id, 'jwt-tenant')
    const oidcOnly = await issuer.sign(claims({ scope: 'openid profile email' }))
    assert.equal(forbidden(await list(oidcOnly), 'no filegate scope').required_scope, 'files:read')
  })

  it('fetches the key set again for a key rotated in at the issuer', async () => {
    const fetched = issuer.fetches
    const rotated = await issuer.rotateIn('ES256')
    const res = await list(await issuer.sign(claims({ sub: 'user-rotated' }), { key: rotated }))
    assert.equal(res.statusCode, 200, res.body)
    assert.equal(issuer.fetches, fetched + 1, 'one fetch, on the unknown kid')
  })

  it('names the subject in the auth span, never the token', async () => {
    exporter.reset()
    const token = await issuer.sign(claims({ sub: 'user-traced' }))
    assert.equal((await list(token)).statusCode, 200)
    const spans = exporter.getFinishedSpans().filter((s) => s.name === 'filegate.auth')
    assert.equal(spans.length, 1)
    assert.equal(spans[0]?.attributes['filegate.auth.actor'], 'jwt:user-traced')
    assert.equal(spans[0]?.attributes['filegate.tenant'], 'jwt-tenant')
    const everything = JSON.stringify(exporter.getFinishedSpans().map((s) => s.attributes))
    assert.ok(!everything.includes(token.split('.')[2] as string), 'no signature in any span')
    assert.ok(!everything.includes(token.split('.')[1] as string), 'no token in any span')
  })

  it("verifies a client's token once: it keeps passing after its key is withdrawn, another token of that key does not", async () => {
    const key = await issuer.rotateIn('ES256')
    const token = await issuer.sign(claims({ sub: 'user-cached' }), { key })
    assert.equal((await list(token)).statusCode, 200)
    issuer.withdraw(key)
    // A token of a newer key makes jose fetch the key set, which no longer holds `key`.
    const fetched = issuer.fetches
    const newer = await issuer.rotateIn('ES256')
    assert.equal((await list(await issuer.sign(claims(), { key: newer }))).statusCode, 200)
    assert.equal(issuer.fetches, fetched + 1)
    const again = await list(token)
    assert.equal(again.statusCode, 200, `the verdict on the token was kept: ${again.body}`)
    const other = await list(await issuer.sign(claims({ sub: 'user-other' }), { key }))
    assert.equal(other.statusCode, 401, 'a token not verified before is judged against the keys published now')
  })

  it('answers 503 AUTH_UNAVAILABLE with Retry-After while the signing keys cannot be fetched', async () => {
    const cached = await issuer.sign(claims())
    assert.equal((await list(cached)).statusCode, 200)
    for (const mode of ['error', 'garbage', 'down'] as const) {
      if (mode === 'down') await issuer.close()
      else issuer.mode = mode
      const fresh = await issuer.rotateIn('RS256')
      const res = await list(await issuer.sign(claims(), { key: fresh }))
      assert.equal(res.statusCode, 503, `${mode}: ${res.body}`)
      assert.equal(res.json().code, 'AUTH_UNAVAILABLE', mode)
      assert.match(String(res.headers['retry-after']), /^\d+$/, mode)
      // A key already fetched still verifies; a bad token is still 401.
      assert.equal((await list(cached)).statusCode, 200, `${mode}: a cached key`)
      assert.equal((await list(await issuer.sign(claims({ aud: 'nope' })))).statusCode, 401, mode)
    }
  })
})

describe('JWT_SECRET: HS256 for older Supabase projects', () => {
  it('verifies HS256 with that secret only, and asymmetric tokens as before', async (t) => {
    const issuer = await startFakeIssuer()
    t.after(() => issuer.close())
    const secret = 'super-secret-jwt-token-with-at-least-32-characters-long'
    const fakes = await startFakes(t)
    const app = await build(t, {
      ...fakes.env,
      DATA_DIR: await pgliteDataDir(t, 'filegate-jwt-hs-'),
      JWT_ISSUER: issuer.url,
      JWT_AUDIENCE: 'authenticated',
      JWT_SECRET: secret,
    })
    const claims = { iss: issuer.url, aud: 'authenticated', sub: 'legacy-user', exp: now() + 60 }
    const hs = (key: string) =>
      new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(key))
    const list = (token: string) => app.inject({ method: 'GET', url: '/v1/files', headers: auth(token) })
    const ok = await list(await hs(secret))
    assert.equal(ok.statusCode, 200, ok.body)
    assert.equal((await list(await hs(`${secret}-not`))).statusCode, 401)
    assert.equal((await list(await issuer.sign(claims, { alg: 'RS256' }))).statusCode, 200)
    const hs512 = await new SignJWT(claims).setProtectedHeader({ alg: 'HS512' }).sign(new TextEncoder().encode(secret))
    assert.equal((await list(hs512)).statusCode, 401, 'HS512 never')
  })
})
