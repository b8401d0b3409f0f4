/**
 * The verdicts JwtVerifier keeps on tokens that passed (domain/jwt.ts), against a JWKS server on
 * loopback (tests/fakes/jwks-server.ts) and a clock of the test's own. That a verdict was kept is
 * observed from outside: the key that signed the token is withdrawn at the issuer and jose has
 * fetched the key set without it (a token of a newly published key makes it fetch again), so
 * verifying that token anew would fail (401, or 503 AUTH_UNAVAILABLE once the issuer is down), and
 * only a kept verdict lets it pass. Each test checks a bound on a kept verdict: `exp` plus the 30 s
 * leeway, the cache lifetime, the number of entries (least recently used evicted), a tampered token,
 * failures never kept, a caller that is the request's own.
 */
import assert from 'node:assert/strict'
import { describe, it, type TestContext } from 'node:test'
import type { JWTPayload } from 'jose'
import type { JwtConfig } from '../../src/config.js'
import { JwtVerifier } from '../../src/domain/jwt.js'
import { AppError } from '../../src/errors.js'
import { type FakeIssuer, type IssuerKey, startFakeIssuer } from '../fakes/jwks-server.js'

interface Setup {
  issuer: FakeIssuer
  verifier: JwtVerifier
  /** The first published ES256 key, which signs the tokens under test. */
  key: IssuerKey
  clock: { ms: number }
  sign(over?: JWTPayload): Promise<string>
  /** Withdraws `key` and has jose fetch the key set without it. */
  forgetKey(): Promise<void>
}

async function setup(t: TestContext, cache: { cacheMs?: number; cacheSize?: number } = {}): Promise<Setup> {
  const issuer = await startFakeIssuer()
  t.after(() => issuer.close())
  const clock = { ms: Date.now() }
  const config: JwtConfig = {
    issuer: issuer.url,
    jwksUrl: `${issuer.url}/.well-known/jwks.json`,
    audience: 'authenticated',
    tenantClaim: ['tenant'],
    scopesClaim: ['scope'],
    algorithms: ['ES256', 'RS256'],
    secret: undefined,
    jwksCooldownMs: 0,
    cacheMs: cache.cacheMs ?? 60_000,
    cacheSize: cache.cacheSize ?? 10_000,
  }
  const verifier = new JwtVerifier(config, { now: () => clock.ms })
  const key = issuer.keys.find((k) => k.alg === 'ES256')
  assert.ok(key)
  const seconds = () => Math.floor(clock.ms / 1000)
  const sign = (over: JWTPayload = {}) =>
    issuer.sign(
      { iss: issuer.url, aud: 'authenticated', sub: 'user-1', tenant: 'acme', exp: seconds() + 300, ...over },
      { key },
    )
  const forgetKey = async () => {
    issuer.withdraw(key)
    const rotated = await issuer.rotateIn('ES256')
    const fetches = issuer.fetches
    const other = await issuer.sign(
      { iss: issuer.url, aud: 'authenticated', sub: 'u', tenant: 'acme', exp: seconds() + 300 },
      { key: rotated },
    )
    await verifier.verify(other)
    assert.equal(issuer.fetches, fetches + 1, 'jose fetched the key set without the withdrawn key')
  }
  return { issuer, verifier, key, clock, sign, forgetKey }
}

/** The error code a verification fails with, or 'ok'. */
async function outcome(verifier: JwtVerifier, token: string): Promise<string> {
  try {
    await verifier.verify(token)
    return 'ok'
  } catch (err) {
    assert.ok(err instanceof AppError, String(err))
    return `${err.code}: ${err.detail}`
  }
}

describe('JwtVerifier keeps the verdict on a token that passed', () => {
  it('verifies a token once: the same token passes without jose, a different one is judged afresh', async (t) => {
    const s = await setup(t)
    const token = await s.sign()
    const first = await s.verifier.verify(token)
    assert.deepEqual(first, { subject: 'user-1', tenant: 'acme', scopes: ['files:read', 'files:write'] })
    await s.forgetKey()
    await s.issuer.close()
    const fetches = s.issuer.fetches
    const again = s.verifier.verify(token)
    assert.ok(!(again instanceof Promise), 'a kept verdict is answered at once')
    assert.deepEqual(again, first)
    // The same key, another token: jose must look the key up, and the issuer is down.
    assert.match(await outcome(s.verifier, await s.sign({ sub: 'user-2' })), /^AUTH_UNAVAILABLE/)
    assert.equal(s.issuer.fetches, fetches, 'no key set was served meanwhile')
  })

  it('refuses a kept token once its exp plus the 30 s leeway has passed', async (t) => {
    const s = await setup(t)
    const exp = Math.floor(s.clock.ms / 1000) + 5
    const token = await s.sign({ exp })
    assert.equal(await outcome(s.verifier, token), 'ok')
    await s.forgetKey()
    s.clock.ms = (exp + 30) * 1000 - 1
    assert.equal(await outcome(s.verifier, token), 'ok', 'kept until the last millisecond of the leeway')
    // The key published again: what refuses the token now is jose's own check of exp.
    s.issuer.republish(s.key)
    s.clock.ms = (exp + 30) * 1000
    assert.match(await outcome(s.verifier, token), /^UNAUTHORIZED: The token is not valid: it has expired/)
  })

  it('refuses a token with one character of its signature changed, while the original is kept', async (t) => {
    const s = await setup(t)
    const token = await s.sign()
    assert.equal(await outcome(s.verifier, token), 'ok')
    // A character in the middle: the last one of a base64url signature may carry only padding bits.
    const at = token.lastIndexOf('.') + 20
    const tampered = `${token.slice(0, at)}${token[at] === 'A' ? 'B' : 'A'}${token.slice(at + 1)}`
    assert.match(await outcome(s.verifier, tampered), /^UNAUTHORIZED: .*the signature does not verify/)
    await s.forgetKey()
    assert.equal(await outcome(s.verifier, token), 'ok', 'the original was kept all along')
    assert.match(await outcome(s.verifier, tampered), /^UNAUTHORIZED/)
  })

  it('keeps at most cacheSize tokens and evicts the least recently used first', async (t) => {
    const s = await setup(t, { cacheSize: 2 })
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((sub) => s.sign({ sub })))
    assert.ok(a && b && c)
    assert.equal(await outcome(s.verifier, a), 'ok')
    assert.equal(await outcome(s.verifier, b), 'ok')
    assert.equal(await outcome(s.verifier, a), 'ok', 'a used again: b is now the least recently used')
    assert.equal(await outcome(s.verifier, c), 'ok')
    await s.forgetKey() // its own token takes a place too, evicting a (c was used after a)
    assert.equal(await outcome(s.verifier, c), 'ok')
    assert.match(await outcome(s.verifier, b), /^UNAUTHORIZED: .*no signing key/, 'b was evicted when c came')
    assert.match(await outcome(s.verifier, a), /^UNAUTHORIZED: .*no signing key/, 'a was evicted when the third came')
  })

  it('verifies a token again once the cache lifetime after its verification has passed', async (t) => {
    const s = await setup(t, { cacheMs: 60_000 })
    const token = await s.sign({ exp: Math.floor(s.clock.ms / 1000) + 3600 })
    const verifiedAt = s.clock.ms
    assert.equal(await outcome(s.verifier, token), 'ok')
    await s.forgetKey()
    s.clock.ms = verifiedAt + 59_999
    assert.equal(await outcome(s.verifier, token), 'ok', 'a withdrawn key is accepted within the lifetime')
    s.clock.ms = verifiedAt + 60_000
    assert.match(await outcome(s.verifier, token), /^UNAUTHORIZED: .*no signing key/, 'and no longer after it')
  })

  it('keeps nothing with a lifetime of 0', async (t) => {
    const s = await setup(t, { cacheMs: 0 })
    const token = await s.sign()
    assert.equal(await outcome(s.verifier, token), 'ok')
    await s.forgetKey()
    assert.match(await outcome(s.verifier, token), /^UNAUTHORIZED: .*no signing key/)
  })

  it('never keeps a failure: 503 while the issuer fails, 401 while not yet valid, then the token passes', async (t) => {
    const s = await setup(t)
    const token = await s.sign()
    s.issuer.mode = 'error'
    assert.match(await outcome(s.verifier, token), /^AUTH_UNAVAILABLE/)
    s.issuer.mode = 'up'
    assert.equal(await outcome(s.verifier, token), 'ok', 'the 503 was not kept')
    const early = await s.sign({ sub: 'early', nbf: Math.floor(s.clock.ms / 1000) + 60 })
    assert.match(await outcome(s.verifier, early), /^UNAUTHORIZED: .*nbf/)
    s.clock.ms += 31_000
    assert.equal(await outcome(s.verifier, early), 'ok', 'the 401 was not kept')
    await s.forgetKey()
    assert.equal(await outcome(s.verifier, token), 'ok', 'the verdict on a token that passed is kept')
    assert.equal(await outcome(s.verifier, early), 'ok')
  })

  it('a request cannot change the kept verdict: the caller is frozen, its scopes too, and shared', async (t) => {
    const s = await setup(t)
    const token = await s.sign({ scope: 'files:read' })
    const first = await s.verifier.verify(token)
    assert.throws(() => (first.scopes as string[]).push('admin'), TypeError)
    assert.throws(() => {
      ;(first as { tenant: string }).tenant = 'victim'
    }, TypeError)
    await s.forgetKey()
    const second = await s.verifier.verify(token)
    assert.deepEqual(second, { subject: 'user-1', tenant: 'acme', scopes: ['files:read'] })
    assert.equal(second, first, 'a hit returns the object kept: it allocates nothing')
  })
})
