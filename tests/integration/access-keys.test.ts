/**
 * Keys kept in the database, scopes and the per-key providers allowlist, on Postgres and on PGlite
 * (one app per transport for the whole suite): keys shown once and stored as digests only, every
 * operation of the API against every scope (the operations are read from the OpenAPI document the
 * app serves, so a route added later is covered), no escalation, revocation, rotation with a grace
 * period, expiry, last_used_at, and the refusals counted by reason.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { scopes } from '../../src/domain/caller.js'
import { auth, multipart, tempDir, testKeys } from '../helper.js'
import {
  accessApp,
  admin,
  createKey,
  forbidden,
  skipOf,
  sql,
  statusWith,
  suiteApp,
  transports,
  uploadWith,
} from './access-support.js'
import { metric } from './uploads-support.js'

const keyShape = /^fg_([a-z0-9]{16})_[A-Za-z0-9]{43}$/

/** A request to every operation of the served OpenAPI document, with the scope it declares. */
function operations(app: FastifyInstance): Array<{ method: string; url: string; scope: string; multipart: boolean }> {
  const doc = app.swagger() as {
    paths: Record<string, Record<string, { security?: Array<Record<string, string[]>>; requestBody?: unknown }>>
  }
  const found = []
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const scope = op.security?.[0]?.apiKey?.[0]
      if (scope === undefined) continue
      const url = path
        .replace('{id}', randomUUID())
        .replace('{provider}', 'kimi')
        .replace('{file_id}', 'file-none')
        .replace(/\{[^}]+\}/g, 'x')
      const isMultipart = JSON.stringify(op.requestBody ?? {}).includes('multipart/form-data')
      found.push({ method: method.toUpperCase(), url, scope, multipart: isMultipart })
    }
  }
  return found
}

for (const transport of transports) {
  const skip = await skipOf(transport)
  describe(`keys, scopes and providers on ${transport}`, { skip }, () => {
    const ctx = suiteApp(transport, async (scope) => ({
      ORIGINALS_URL: `file://${await tempDir(scope, 'filegate-access-originals-')}`,
    }))

    it('creates a key shown once (fg_<id>_<secret>), stores only its SHA-256, and it acts as its tenant', async () => {
      const { app } = ctx()
      const made = await createKey(app, { tenant: 'acme', name: 'first' })
      const [, id] = keyShape.exec(made.key) ?? []
      assert.equal(made.id, id, 'the public id is the second part of the key')
      assert.deepEqual(made.body.scopes, ['files:read', 'files:write'], 'the default scopes')
      assert.equal(made.body.providers, null)
      assert.equal(made.body.key_hint, made.key.slice(-4))
      assert.equal(made.body.created_by, 'env:*')
      assert.equal(made.body.tenant_id, 'acme')

      const shown = await app.inject({ method: 'GET', url: `/v1/keys/${made.id}`, headers: admin })
      assert.equal(shown.statusCode, 200)
      assert.equal(shown.json().key, undefined, 'the key is shown once, at creation')
      const [row] = await sql<{ key_sha256: string }>(app, 'select key_sha256 from filegate_api_keys where id = $1', [
        made.id,
      ])
      assert.match(String(row?.key_sha256), /^[0-9a-f]{64}$/)
      assert.ok(!JSON.stringify(row).includes(made.key.slice(20)))

      const up = await uploadWith(app, made.key, `acme ${randomUUID()}`, [['provider', 'kimi']])
      assert.equal(up.statusCode, 201, up.body)
      assert.equal(up.json().tenant_id, 'acme')
      assert.equal(await statusWith(app, `fg_${made.id}_${'A'.repeat(43)}`), 401, 'the right id with a wrong secret')
    })

    it('needs, on every operation, the scope it declares: 403 with required_scope without it', async () => {
      const { app } = ctx()
      const holders = Object.fromEntries(
        await Promise.all(
          scopes.map(async (s) => [s, (await createKey(app, { tenant: 'scoped', scopes: [s] })).key] as const),
        ),
      )
      const ops = operations(app)
      const declared = new Set(ops.map((o) => o.scope))
      assert.deepEqual([...declared].sort(), [...scopes].sort(), 'every scope guards some operation')
      assert.ok(ops.length >= 20, `${ops.length} operations`)
      for (const op of ops) {
        for (const held of scopes) {
          const body = op.multipart ? multipart([['file', { filename: 'a.txt', content: 'x' }]]) : undefined
          const res = await app.inject({
            method: op.method as 'GET',
            url: op.url,
            headers: {
              ...auth(holders[held] as string),
              ...(body ? body.headers : { 'content-type': 'application/json' }),
            },
            ...(body
              ? { payload: body.payload }
              : op.method === 'GET' || op.method === 'DELETE'
                ? {}
                : { payload: '{}' }),
          })
          const what = `${op.method} ${op.url} with ${held} (needs ${op.scope})`
          const may = held === 'admin' || held === op.scope
          if (may) {
            assert.notEqual(res.statusCode, 401, what)
            assert.ok(!(res.statusCode === 403 && res.body.includes('needs the scope')), `${what}: ${res.body}`)
            continue
          }
          assert.equal(res.statusCode, 403, `${what}: ${res.body}`)
          if (op.url.startsWith('/providers/')) {
            // The facade answers in OpenAI's error shape (permission_error), naming the scope.
            assert.equal(res.json().error.type, 'permission_error', what)
            assert.match(res.json().error.message, new RegExp(op.scope), what)
          } else {
            assert.equal(res.json().required_scope, op.scope, what)
          }
        }
      }
    })

    it('lets a keys key manage its own tenant only, never making or touching a stronger key', async () => {
      const { app } = ctx()
      const manager = await createKey(app, {
        tenant: 'esc',
        scopes: ['keys', 'files:read'],
        providers: ['kimi'],
        expires_in: 3600,
      })
      const as = auth(manager.key)
      const attempt = (payload: Record<string, unknown>) =>
        app.inject({ method: 'POST', url: '/v1/keys', headers: as, payload })

      assert.equal(
        forbidden(
          await attempt({ tenant: 'other', scopes: ['files:read'], providers: ['kimi'], expires_in: 60 }),
          'another tenant',
        ).required_scope,
        'admin',
      )
      const base = { providers: ['kimi'], expires_in: 60 }
      assert.equal(
        forbidden(await attempt({ ...base, scopes: ['files:write'] }), 'a scope it lacks').required_scope,
        'files:write',
      )
      assert.equal(forbidden(await attempt({ ...base, scopes: ['admin'] }), 'admin').required_scope, 'admin')
      assert.equal(
        forbidden(await attempt({ ...base }), 'the default scopes hold files:write').required_scope,
        'files:write',
      )
      forbidden(await attempt({ scopes: ['files:read'], expires_in: 60 }), 'every provider')
      forbidden(await attempt({ scopes: ['files:read'], providers: ['glm'], expires_in: 60 }), 'a provider it lacks')
      forbidden(await attempt({ scopes: ['files:read'], providers: ['kimi'] }), 'a key that outlives it')
      forbidden(await attempt({ scopes: ['files:read'], providers: ['kimi'], expires_in: 7200 }), 'outliving it')
      forbidden(
        await app.inject({ method: 'GET', url: '/v1/files', headers: { ...as, 'x-tenant-id': 'other' } }),
        'X-Tenant-Id',
      )

      const within = await attempt({ tenant: 'esc', scopes: ['files:read'], providers: ['kimi'], expires_in: 60 })
      assert.equal(within.statusCode, 201, within.body)
      const weaker = within.json() as { id: string; tenant_id: string; created_by: string }
      assert.equal(weaker.tenant_id, 'esc')
      assert.equal(weaker.created_by, `key:${manager.id}`)

      // A stronger key of its own tenant: visible, but neither rotated nor revoked by it.
      const stronger = await createKey(app, { tenant: 'esc', scopes: ['files:read', 'files:write'] })
      assert.equal((await app.inject({ method: 'GET', url: `/v1/keys/${stronger.id}`, headers: as })).statusCode, 200)
      forbidden(
        await app.inject({ method: 'POST', url: `/v1/keys/${stronger.id}/rotate`, headers: as, payload: {} }),
        'rotate stronger',
      )
      forbidden(await app.inject({ method: 'DELETE', url: `/v1/keys/${stronger.id}`, headers: as }), 'revoke stronger')
      assert.equal(await statusWith(app, stronger.key), 200, 'the stronger key still works')

      // Another tenant's key does not exist for it; its listing holds its own tenant only.
      const foreign = await createKey(app, { tenant: 'other' })
      for (const [method, url] of [
        ['GET', `/v1/keys/${foreign.id}`],
        ['DELETE', `/v1/keys/${foreign.id}`],
        ['POST', `/v1/keys/${foreign.id}/rotate`],
      ] as const) {
        const res = await app.inject({ method, url, headers: as, ...(method === 'POST' ? { payload: {} } : {}) })
        assert.equal(res.statusCode, 404, `${method} ${url}: ${res.body}`)
      }
      forbidden(await app.inject({ method: 'GET', url: '/v1/keys?tenant=other', headers: as }), 'list another tenant')
      const listed = (await app.inject({ method: 'GET', url: '/v1/keys?limit=100', headers: as })).json()
      assert.ok(listed.data.length >= 3)
      for (const k of listed.data) assert.equal(k.tenant_id, 'esc')
      assert.ok(listed.data.every((k: Record<string, unknown>) => k.key === undefined && !('key_sha256' in k)))

      // It revokes the weaker key it made (and itself, last).
      assert.equal((await app.inject({ method: 'DELETE', url: `/v1/keys/${weaker.id}`, headers: as })).statusCode, 200)
      assert.equal((await app.inject({ method: 'DELETE', url: `/v1/keys/${manager.id}`, headers: as })).statusCode, 200)
      assert.equal(await statusWith(app, manager.key), 401)
    })

    it('gives an API_KEYS tenant key files:read files:write keys, and the API_KEYS admin every tenant', async () => {
      const { app } = ctx()
      const alice = auth(testKeys.alice)
      const made = await createKey(app, { scopes: ['files:read', 'keys'] }, alice)
      assert.equal(made.body.tenant_id, 'alice')
      assert.equal(made.body.created_by, 'env:alice')
      forbidden(
        await app.inject({ method: 'POST', url: '/v1/keys', headers: alice, payload: { scopes: ['admin'] } }),
        'an admin key from a tenant key',
      )
      forbidden(await app.inject({ method: 'POST', url: '/v1/cleanup', headers: alice }), 'cleanup')
      // The admin names the tenant of a new key; without one it is 400.
      const nameless = await app.inject({ method: 'POST', url: '/v1/keys', headers: admin, payload: {} })
      assert.equal(nameless.statusCode, 400, nameless.body)
      const bad = await app.inject({ method: 'POST', url: '/v1/keys', headers: admin, payload: { tenant: 'no/slash' } })
      assert.equal(bad.statusCode, 400, bad.body)
      const wide = await createKey(app, { tenant: 'auth0|5f1c@example.com' })
      assert.equal(wide.body.tenant_id, 'auth0|5f1c@example.com', 'the widened tenant rule')
      const page = await app.inject({ method: 'GET', url: '/v1/keys?tenant=alice', headers: admin })
      assert.ok(page.json().data.some((k: { id: string }) => k.id === made.id))
      for (const k of page.json().data) assert.equal(k.tenant_id, 'alice')
    })

    it('pages the keys newest first with a cursor, and refuses a cursor it did not issue', async () => {
      const { app } = ctx()
      const ids = []
      for (let i = 0; i < 3; i++) ids.push((await createKey(app, { tenant: 'paged' })).id)
      const seen: string[] = []
      let after: string | null = null
      do {
        const res: Awaited<ReturnType<typeof app.inject>> = await app.inject({
          method: 'GET',
          url: `/v1/keys?tenant=paged&limit=1${after ? `&after=${after}` : ''}`,
          headers: admin,
        })
        assert.equal(res.statusCode, 200, res.body)
        seen.push(...res.json().data.map((k: { id: string }) => k.id))
        after = res.json().next_cursor
      } while (after)
      assert.deepEqual(seen, ids.reverse())
      const forged = await app.inject({ method: 'GET', url: '/v1/keys?after=bm9wZQ', headers: admin })
      assert.equal(forged.statusCode, 400)
    })

    it('revokes: 401 at once, idempotent (the same revoked_at), recorded once', async () => {
      const { app } = ctx()
      const made = await createKey(app, { tenant: 'rev' })
      assert.equal(await statusWith(app, made.key), 200)
      const first = await app.inject({ method: 'DELETE', url: `/v1/keys/${made.id}`, headers: admin })
      assert.equal(first.statusCode, 200)
      assert.ok(first.json().revoked_at)
      const refused = await app.inject({ method: 'GET', url: '/v1/files', headers: auth(made.key) })
      assert.equal(refused.statusCode, 401)
      assert.match(refused.json().detail, /revoked/)
      const second = await app.inject({ method: 'DELETE', url: `/v1/keys/${made.id}`, headers: admin })
      assert.equal(second.json().revoked_at, first.json().revoked_at)
      const events = await app.inject({
        method: 'GET',
        url: `/v1/audit?target=${made.id}&action=key.revoke`,
        headers: admin,
      })
      assert.equal(events.json().data.length, 1)
      const rotate = await app.inject({
        method: 'POST',
        url: `/v1/keys/${made.id}/rotate`,
        headers: admin,
        payload: {},
      })
      assert.equal(rotate.statusCode, 400, 'a revoked key is not rotated')
    })

    it('rotates: same id, a new secret; the old one works through the grace, then 401', async () => {
      const { app } = ctx()
      const made = await createKey(app, { tenant: 'rot' })
      const res = await app.inject({
        method: 'POST',
        url: `/v1/keys/${made.id}/rotate`,
        headers: admin,
        payload: { grace_seconds: 1 },
      })
      assert.equal(res.statusCode, 200, res.body)
      const rotated = res.json() as { id: string; key: string; previous_key_expires_at: string; rotated_at: string }
      assert.equal(rotated.id, made.id)
      assert.notEqual(rotated.key, made.key)
      assert.equal(keyShape.exec(rotated.key)?.[1], made.id)
      assert.ok(rotated.rotated_at)
      assert.equal(await statusWith(app, rotated.key), 200)
      assert.equal(await statusWith(app, made.key), 200, 'the old secret during the grace')
      const graceEnds = Date.parse(rotated.previous_key_expires_at)
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, graceEnds - Date.now()) + 50))
      assert.equal(await statusWith(app, made.key), 401, 'the old secret after the grace')
      assert.equal(await statusWith(app, rotated.key), 200)

      // Without a grace the previous secret stops at once.
      const again = await app.inject({ method: 'POST', url: `/v1/keys/${made.id}/rotate`, headers: admin })
      assert.equal(again.statusCode, 200, again.body)
      assert.equal(await statusWith(app, rotated.key), 401)
      assert.equal(await statusWith(app, again.json().key), 200)
      const tooLong = await app.inject({
        method: 'POST',
        url: `/v1/keys/${made.id}/rotate`,
        headers: admin,
        payload: { grace_seconds: 86_401 },
      })
      assert.equal(tooLong.statusCode, 400)
    })

    it('expires a key at expires_at: 401 expired', async () => {
      const { app } = ctx()
      const made = await createKey(app, { tenant: 'exp', expires_in: 1 })
      assert.equal(await statusWith(app, made.key), 200)
      await new Promise((resolve) => setTimeout(resolve, Date.parse(made.body.expires_at as string) - Date.now() + 50))
      const res = await app.inject({ method: 'GET', url: '/v1/files', headers: auth(made.key) })
      assert.equal(res.statusCode, 401)
      assert.match(res.json().detail, /expired/)
    })

    it('keeps a key to its providers: named outside 403, auto among the allowed only, facade, copies and heals too', async () => {
      const { app, fakes } = ctx()
      const kimiOnly = await createKey(app, { tenant: 'allow', providers: ['kimi'] })
      const glmUploads = fakes.glm.uploads.length
      const refused = forbidden(await uploadWith(app, kimiOnly.key, 'not for glm', [['provider', 'glm']]), 'named glm')
      assert.match(refused.detail, /glm/)
      // auto tries glm first (AUTO_PROVIDERS default glm,kimi): this key only ever reaches kimi.
      const auto = await uploadWith(app, kimiOnly.key, `auto ${randomUUID()}`, [['provider', 'auto']])
      assert.equal(auto.statusCode, 201, auto.body)
      assert.equal(auto.json().provider, 'kimi')
      assert.equal(fakes.glm.uploads.length, glmUploads, 'nothing reached glm')
      const glmOnly = await createKey(app, { tenant: 'allow', providers: [] })
      forbidden(await uploadWith(app, glmOnly.key, 'nowhere', [['provider', 'auto']]), 'auto with no provider allowed')

      const facade = multipart([
        ['purpose', 'agent'],
        ['file', { filename: 'a.txt', content: 'facade glm' }],
      ])
      const viaFacade = await app.inject({
        method: 'POST',
        url: '/providers/glm/v1/files',
        headers: { ...auth(kimiOnly.key), ...facade.headers },
        payload: facade.payload,
      })
      assert.equal(viaFacade.statusCode, 403, viaFacade.body)
      assert.equal(viaFacade.json().error.type, 'permission_error')

      const copy = await app.inject({
        method: 'POST',
        url: `/v1/files/${auto.json().id}/copies`,
        headers: auth(kimiOnly.key),
        payload: { provider: 'glm' },
      })
      forbidden(copy, 'a copy to glm')
      // A file at glm (uploaded by a key that may) is not healed by a kimi-only key.
      const anyProvider = await createKey(app, { tenant: 'allow' })
      const atGlm = await uploadWith(app, anyProvider.key, `glm ${randomUUID()}`, [['provider', 'glm']])
      assert.equal(atGlm.statusCode, 201, atGlm.body)
      forbidden(
        await app.inject({ method: 'POST', url: `/v1/files/${atGlm.json().id}/ensure`, headers: auth(kimiOnly.key) }),
        'a heal at glm',
      )
      // Reading it is not an upload: allowed.
      const read = await app.inject({ method: 'GET', url: `/v1/files/${atGlm.json().id}`, headers: auth(kimiOnly.key) })
      assert.equal(read.statusCode, 200)
      const unknown = await app.inject({
        method: 'POST',
        url: '/v1/keys',
        headers: admin,
        payload: { tenant: 'allow', providers: ['nosuch'] },
      })
      assert.equal(unknown.statusCode, 400)
      assert.equal(unknown.json().code, 'UNKNOWN_PROVIDER')
    })

    it('counts every refusal of access by reason (filegate_auth_failures_total)', async () => {
      const { app } = ctx()
      const before = Object.fromEntries(
        await Promise.all(
          ['missing', 'invalid', 'revoked', 'expired', 'forbidden'].map(
            async (reason) => [reason, await metric(app, 'filegate_auth_failures_total', { reason })] as const,
          ),
        ),
      )
      const revoked = await createKey(app, { tenant: 'count' })
      await app.inject({ method: 'DELETE', url: `/v1/keys/${revoked.id}`, headers: admin })
      const reader = await createKey(app, { tenant: 'count', scopes: ['files:read'] })
      await app.inject({ method: 'GET', url: '/v1/files' })
      await app.inject({ method: 'GET', url: '/v1/files', headers: auth('wrong-key-0123456789abcdef') })
      await app.inject({ method: 'GET', url: '/v1/files', headers: auth(revoked.key) })
      await app.inject({ method: 'POST', url: '/v1/cleanup', headers: auth(reader.key) })
      const expected: Record<string, number> = { missing: 1, invalid: 1, revoked: 1, expired: 0, forbidden: 1 }
      for (const [reason, n] of Object.entries(expected)) {
        assert.equal((await metric(app, 'filegate_auth_failures_total', { reason })) - (before[reason] ?? 0), n, reason)
      }
    })
  })
}

for (const transport of transports) {
  const skip = await skipOf(transport)
  describe(`last_used_at on ${transport}`, { skip }, () => {
    const ctx = suiteApp(transport)

    it('is written off the request path (in the background, and on close), at most once a minute', async (t) => {
      const { app, fakes, where } = ctx()
      const made = await createKey(app, { tenant: 'used' })
      const lastUsed = async () =>
        (
          await sql<{ last_used_at: Date | string | null }>(
            app,
            'select last_used_at from filegate_api_keys where id = $1',
            [made.id],
          )
        )[0]?.last_used_at ?? null
      // A second app on the same database (PGlite: the same store) uses the key and closes.
      const replica = await accessApp(
        { after() {} },
        where,
        fakes,
        {},
        transport === 'pglite' ? { store: app.store } : {},
      )
      assert.equal(await statusWith(replica, made.key), 200)
      await replica.close()
      const first = await lastUsed()
      assert.ok(first, 'written when the replica closed')
      // Used again within the minute: not written again.
      assert.equal(await statusWith(app, made.key), 200)
      await app.keyring.flushLastUsed()
      assert.equal(String(await lastUsed()), String(first))
      t.diagnostic(`last_used_at ${String(first)}`)
    })
  })
}
