/**
 * Hostile credentials and the edges of access: oversized, NUL-bearing and forged bearer tokens are
 * 401 (or 431 when the head is over Node's 16 KiB, over real HTTP), never 5xx; failed
 * authentications from one address turn into 429 and are counted; a route that declares no scope
 * (or a public one under /v1) stops start-up; CORS_ORIGINS answers preflights with the headers a
 * browser and a tus client need.
 */
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { describe, it } from 'node:test'
import { buildApp } from '../../src/app.js'
import { startFakeIssuer } from '../fakes/jwks-server.js'
import { auth, build, pgliteDataDir, testConfig, testKeys } from '../helper.js'
import { createKey } from './access-support.js'
import { metric } from './uploads-support.js'

/** One request written by hand (a client library would refuse such headers); the status line and body. */
function rawRequest(port: number, head: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(head))
    let text = ''
    socket.on('data', (chunk) => {
      text += String(chunk)
    })
    // A reset once the answer is in (the server closes on the rest of an oversized head) is not an error.
    socket.on('error', (err) => (text.includes('\r\n\r\n') ? undefined : reject(err)))
    socket.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1])
      resolve({ status, body: text.slice(text.indexOf('\r\n\r\n') + 4) })
    })
  })
}

const withBearer = (token: Buffer) =>
  Buffer.concat([
    Buffer.from('GET /v1/files HTTP/1.1\r\nHost: filegate\r\nAuthorization: Bearer '),
    token,
    Buffer.from('\r\nConnection: close\r\n\r\n'),
  ])

describe('hostile credentials', () => {
  it('answer 401 (431 for a head over 16 KiB over HTTP), never 5xx, and are counted', async (t) => {
    const issuer = await startFakeIssuer()
    t.after(() => issuer.close())
    const app = await build(t, { DATA_DIR: await pgliteDataDir(t, 'filegate-hostile-'), JWT_ISSUER: issuer.url })
    const made = await createKey(app, { tenant: 'hostile' })
    const id = made.id
    const jwt = await issuer.sign({
      iss: issuer.url,
      sub: 'u',
      exp: Math.floor(Date.now() / 1000) + 60,
      pad: 'x'.repeat(100_000),
    })
    const tokens: Array<[string, string]> = [
      ['64 KB', 'a'.repeat(64 * 1024)],
      ['64 KB shaped like a key', `fg_${id}_${'a'.repeat(64 * 1024)}`],
      ['a valid id with a wrong secret', `fg_${id}_${'Z'.repeat(43)}`],
      ['a valid id, the secret one character short', made.key.slice(0, -1)],
      ['a valid id, NUL bytes in the secret', `fg_${id}_${'\u0000'.repeat(43)}`],
      ['NUL bytes', 'abc\u0000def'],
      ['the key with a NUL appended', `${made.key}\u0000`],
      ['an id of another shape', `fg_${id.toUpperCase()}_${made.key.slice(-43)}`],
      ['a quote in the id', `fg_'or'1'='1'--xxxxx_${'a'.repeat(43)}`],
      ['a 100 KB JWT', jwt],
      ['a JWT of one character per part', 'a.b.c'],
      ['three dots', '...'],
      ['the env admin key with a suffix', `${testKeys.admin}x`],
    ]
    const before = await metric(app, 'filegate_auth_failures_total', { reason: 'invalid' })
    for (const [what, token] of tokens) {
      const res = await app.inject({ method: 'GET', url: '/v1/files', headers: { authorization: `Bearer ${token}` } })
      assert.equal(res.statusCode, 401, `${what}: ${res.body.slice(0, 200)}`)
      assert.equal(res.json().code, 'UNAUTHORIZED', what)
    }
    for (const header of [`Bearer  ${made.key} trailing`, `Basic ${made.key}`, made.key, 'Bearer', '']) {
      const res = await app.inject({ method: 'GET', url: '/v1/files', headers: { authorization: header } })
      assert.equal(res.statusCode, 401, `Authorization: ${header.slice(0, 40)}`)
    }
    assert.equal(
      (await metric(app, 'filegate_auth_failures_total', { reason: 'invalid' })) - before,
      tokens.length - 1,
      'each refusal counted (the JWT one as jwt)',
    )
    assert.equal(await metric(app, 'filegate_auth_failures_total', { reason: 'jwt' }), 1)

    // Over real HTTP: Node's limit on the head (16 KiB) answers first.
    await app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = app.server.address() as { port: number }
    for (const [what, token] of [
      ['64 KB', Buffer.alloc(64 * 1024, 'a')],
      ['a 100 KB JWT', Buffer.from(jwt)],
    ] as const) {
      const res = await rawRequest(port, withBearer(token))
      assert.equal(res.status, 431, `${what}: ${res.body.slice(0, 200)}`)
      assert.equal(JSON.parse(res.body).code, 'HEADERS_TOO_LARGE', what)
    }
    // A NUL byte never reaches filegate over HTTP: Node's parser refuses the head (400).
    const nul = await rawRequest(port, withBearer(Buffer.from(`fg_${id}_\u0000${'a'.repeat(42)}`)))
    assert.equal(nul.status, 400)
    const wrong = await rawRequest(port, withBearer(Buffer.from(`fg_${id}_${'Z'.repeat(43)}`)))
    assert.equal(wrong.status, 401)
    const right = await rawRequest(port, withBearer(Buffer.from(made.key)))
    assert.equal(right.status, 200, right.body)
  })

  it('limits failed authentications per address (429, counted rate_limited); a valid key still passes', async (t) => {
    const app = await build(t, { DATA_DIR: await pgliteDataDir(t, 'filegate-limit-'), RATE_LIMIT_PER_MINUTE: '5' })
    const made = await createKey(app, { tenant: 'limited' })
    const statuses = []
    for (let i = 0; i < 8; i++) {
      statuses.push(
        (await app.inject({ method: 'GET', url: '/v1/files', headers: auth(`fg_${made.id}_${'Q'.repeat(43)}`) }))
          .statusCode,
      )
    }
    assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429, 429, 429])
    assert.equal(await metric(app, 'filegate_auth_failures_total', { reason: 'rate_limited' }), 3)
    assert.equal((await app.inject({ method: 'GET', url: '/v1/files', headers: auth(made.key) })).statusCode, 200)
  })
})

describe('every route declares its scope', () => {
  it('a route without one, or a public one under /v1, stops start-up', async (t) => {
    // The database is never reached: the routes are refused as they are declared.
    const app = await buildApp(testConfig({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' }), { logger: false })
    t.after(() => app.close())
    for (const [what, options, url] of [
      ['no scope', {}, '/v1/new-route'],
      ['no scope, outside /v1', {}, '/new-probe'],
      ['public under /v1', { config: { scope: 'public' as const } }, '/v1/open-route'],
      ['public under /providers', { config: { scope: 'public' as const } }, '/providers/kimi/v1/open'],
      ['an unknown scope', { config: { scope: 'files:everything' as never } }, '/v1/odd'],
    ] as const) {
      assert.throws(() => app.get(url, options, async () => 'x'), /declares no scope|cannot be public/, what)
    }
    // A declared one is taken.
    app.get('/v1/declared', { config: { scope: 'files:read' } }, async () => 'x')
  })
})

describe('CORS_ORIGINS', () => {
  it('answers a browser preflight from an allowed origin with the API, tus and id headers; others get none', async (t) => {
    const app = await build(t, {
      DATA_DIR: await pgliteDataDir(t, 'filegate-cors-'),
      CORS_ORIGINS: 'https://app.example.com,http://localhost:5173',
    })
    const preflight = await app.inject({
      method: 'OPTIONS',
      url: '/v1/uploads',
      headers: {
        origin: 'https://app.example.com',
        'access-control-request-method': 'PATCH',
        'access-control-request-headers': 'authorization,tus-resumable,upload-offset,content-type',
      },
    })
    assert.equal(preflight.statusCode, 204, preflight.body)
    assert.equal(preflight.headers['access-control-allow-origin'], 'https://app.example.com')
    const allowed = String(preflight.headers['access-control-allow-headers']).toLowerCase().split(/,\s*/)
    for (const h of [
      'authorization',
      'x-request-id',
      'tus-resumable',
      'upload-offset',
      'upload-length',
      'upload-metadata',
    ]) {
      assert.ok(allowed.includes(h), `allows ${h}`)
    }
    assert.match(String(preflight.headers['access-control-allow-methods']), /PATCH/)

    const actual = await app.inject({
      method: 'GET',
      url: '/v1/files',
      headers: { origin: 'https://app.example.com', ...auth(testKeys.alice) },
    })
    assert.equal(actual.statusCode, 200)
    const exposed = String(actual.headers['access-control-expose-headers']).toLowerCase().split(/,\s*/)
    for (const h of [
      'x-request-id',
      'location',
      'upload-offset',
      'upload-length',
      'tus-resumable',
      'filegate-file-id',
    ]) {
      assert.ok(exposed.includes(h), `exposes ${h}`)
    }
    const refused = await app.inject({ method: 'GET', url: '/v1/files', headers: { origin: 'https://evil.example' } })
    assert.equal(refused.statusCode, 401, 'a browser gets the answer, without CORS headers')
    assert.equal(refused.headers['access-control-allow-origin'], undefined)
    const unauthorized = await app.inject({
      method: 'GET',
      url: '/v1/files',
      headers: { origin: 'http://localhost:5173' },
    })
    assert.equal(unauthorized.headers['access-control-allow-origin'], 'http://localhost:5173', 'errors carry them too')
  })

  it('sends no CORS headers when CORS_ORIGINS is unset', async (t) => {
    const app = await build(t, { DATA_DIR: await pgliteDataDir(t, 'filegate-nocors-') })
    const res = await app.inject({ method: 'GET', url: '/healthz', headers: { origin: 'https://app.example.com' } })
    assert.equal(res.headers['access-control-allow-origin'], undefined)
  })
})
