/**
 * A test identity provider on loopback: it publishes its signing keys as a JWK Set (RFC 7517 §5) at
 * `<any path>/.well-known/jwks.json`, as Supabase Auth does at
 * `https://<ref>.supabase.co/auth/v1/.well-known/jwks.json`
 * (https://supabase.com/docs/guides/auth/signing-keys) and OIDC issuers do at the `jwks_uri` of
 * their discovery document (https://openid.net/specs/openid-connect-discovery-1_0.html §3), and it
 * signs tokens with `jose` (ES256 and RS256 keys, each with its `kid`, RFC 7515 §4.1.4).
 *
 * Switches: `rotateIn(alg)` publishes one more key (a key rotation at the issuer), `withdraw(key)`
 * stops publishing one (a key rotated out) and `republish(key)` publishes it again, `mode` makes the
 * key set answer 500 or garbage, and `close()` takes the issuer down.
 */
import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose'

export type SigningAlg = 'ES256' | 'RS256'

export interface IssuerKey {
  kid: string
  alg: SigningAlg
  privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey']
}

export interface FakeIssuer {
  /** The server's base URL, e.g. http://127.0.0.1:43211 */
  url: string
  /** The keys it publishes. */
  keys: IssuerKey[]
  /** How many times the key set was fetched. */
  fetches: number
  mode: 'up' | 'error' | 'garbage'
  /** A signed token: `claims` over `key` (the first published key of `alg` by default). */
  sign(
    claims: JWTPayload,
    options?: { alg?: SigningAlg; key?: IssuerKey; header?: Record<string, unknown> },
  ): Promise<string>
  /** A key pair that is not published (a token signed with it names an unknown kid). */
  unpublished(alg: SigningAlg): Promise<IssuerKey>
  /** Publishes one more key. */
  rotateIn(alg: SigningAlg): Promise<IssuerKey>
  /** Stops publishing a key (and signing with it unless named). */
  withdraw(key: IssuerKey): void
  /** Publishes a withdrawn key again. */
  republish(key: IssuerKey): void
  close(): Promise<void>
}

async function newKey(alg: SigningAlg): Promise<IssuerKey & { publicJwk: Record<string, unknown> }> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true })
  const kid = randomBytes(8).toString('hex')
  return { kid, alg, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } }
}

export async function startFakeIssuer(): Promise<FakeIssuer> {
  const published: Array<Record<string, unknown>> = []
  const jwks = new Map<string, Record<string, unknown>>()
  const issuer: FakeIssuer = {
    url: '',
    keys: [],
    fetches: 0,
    mode: 'up',
    async sign(claims, options = {}) {
      const key = options.key ?? issuer.keys.find((k) => k.alg === (options.alg ?? 'ES256'))
      if (!key) throw new Error('no such key')
      return new SignJWT(claims)
        .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...options.header })
        .sign(key.privateKey)
    },
    async unpublished(alg) {
      return newKey(alg)
    },
    async rotateIn(alg) {
      const key = await newKey(alg)
      jwks.set(key.kid, key.publicJwk)
      published.push(key.publicJwk)
      issuer.keys.push(key)
      return key
    },
    withdraw(key) {
      published.splice(0, published.length, ...published.filter((jwk) => jwk.kid !== key.kid))
      issuer.keys = issuer.keys.filter((k) => k.kid !== key.kid)
    },
    republish(key) {
      const jwk = jwks.get(key.kid)
      if (!jwk) throw new Error('no such key')
      issuer.withdraw(key)
      published.push(jwk)
      issuer.keys.push(key)
    },
    close: async () => {},
  }
  await issuer.rotateIn('ES256')
  await issuer.rotateIn('RS256')

  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || !req.url?.endsWith('/.well-known/jwks.json')) {
      res.writeHead(404).end()
      return
    }
    issuer.fetches++
    if (issuer.mode === 'error') {
      res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"unavailable"}')
      return
    }
    res.writeHead(200, { 'content-type': 'application/jwk-set+json' })
    res.end(issuer.mode === 'garbage' ? '<html>maintenance</html>' : JSON.stringify({ keys: published }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  issuer.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  let closed = false
  issuer.close = () => {
    if (closed) return Promise.resolve()
    closed = true
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  }
  return issuer
}
