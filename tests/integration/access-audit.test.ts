/**
 * The audit, on Postgres and on PGlite: each change recorded once, in the transaction of the change,
 * with its actor, the request id the response carried and the client address; GET /v1/audit with
 * its filters, cursor and tenant isolation; the table append-only (the database refuses an update
 * or a delete); AUDIT_RETENTION_DAYS applied by the audit job once across two replicas; and, after
 * the run, no secret in clear anywhere in the database.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import type { FastifyInstance } from 'fastify'
import type { AuditEvent } from '../../src/domain/audit.js'
import { auth, tempDir, testKeys } from '../helper.js'
import {
  accessApp,
  admin,
  assertNoSecretStored,
  createKey,
  forbidden,
  skipOf,
  sql,
  suiteApp,
  transports,
  uploadWith,
} from './access-support.js'

async function events(app: FastifyInstance, query: string, headers = admin): Promise<AuditEvent[]> {
  const res = await app.inject({ method: 'GET', url: `/v1/audit?limit=100&${query}`, headers })
  assert.equal(res.statusCode, 200, res.body)
  return res.json().data
}

for (const transport of transports) {
  const skip = await skipOf(transport)
  describe(`the audit on ${transport}`, { skip }, () => {
    const ctx = suiteApp(transport, async (scope) => ({
      ORIGINALS_URL: `file://${await tempDir(scope, 'filegate-audit-originals-')}`,
      AUDIT_RETENTION_DAYS: '30',
    }))
    const secrets: string[] = []

    it('records each change once with its actor, request id and client address', async () => {
      const { app, fakes } = ctx()
      const made = await createKey(app, { tenant: 'aud', name: 'auditor' }, { ...admin, 'x-request-id': 'aud-create' })
      secrets.push(made.key)
      const [created] = await events(app, `target=${made.id}`)
      assert.deepEqual(
        { ...created, id: undefined, at: undefined },
        {
          id: undefined,
          at: undefined,
          tenant_id: 'aud',
          actor: 'env:*',
          action: 'key.create',
          target: made.id,
          request_id: 'aud-create',
          ip: '127.0.0.1',
          detail: { name: 'auditor', scopes: ['files:read', 'files:write'], providers: null, expires_at: null },
        },
      )

      const content = `audited ${randomUUID()}`
      const up = await uploadWith(app, made.key, content)
      assert.equal(up.statusCode, 201, up.body)
      const file = up.json()
      const [uploaded] = await events(app, `target=${file.id}`)
      assert.equal(uploaded?.action, 'file.upload')
      assert.equal(uploaded?.actor, `key:${made.id}`)
      assert.equal(uploaded?.request_id, up.headers['x-request-id'], "the response's x-request-id")
      assert.deepEqual(uploaded?.detail, {
        provider: 'kimi',
        purpose: file.purpose,
        bytes: file.bytes,
        sha256: file.sha256,
      })

      const dup = await uploadWith(app, made.key, content, undefined, { 'x-request-id': 'aud-dup' })
      assert.equal(dup.statusCode, 200)
      assert.equal((await events(app, `target=${file.id}`)).length, 1, 'a dedup hit changes nothing')

      const copy = await app.inject({
        method: 'POST',
        url: `/v1/files/${file.id}/copies`,
        headers: { ...auth(made.key), 'x-request-id': 'aud-copy' },
        payload: { provider: 'glm' },
      })
      assert.equal(copy.statusCode, 201, copy.body)
      const [copied] = await events(app, `target=${copy.json().id}`)
      assert.equal(copied?.action, 'file.copy')
      assert.equal(copied?.detail.source_id, file.id)
      assert.equal(copied?.request_id, 'aud-copy')

      assert.ok(fakes.kimi.forget(file.provider_file_id))
      const healed = await app.inject({
        method: 'POST',
        url: `/v1/files/${file.id}/ensure`,
        headers: { ...auth(made.key), 'x-request-id': 'aud-heal' },
      })
      assert.equal(healed.statusCode, 200, healed.body)
      const [heal] = await events(app, `target=${file.id}&action=file.heal`)
      assert.equal(heal?.request_id, 'aud-heal')
      assert.equal(heal?.detail.replaced_provider_file_id, file.provider_file_id)

      for (const rid of ['aud-del', 'aud-del-again']) {
        const del = await app.inject({
          method: 'DELETE',
          url: `/v1/files/${file.id}`,
          headers: { ...auth(made.key), 'x-request-id': rid },
        })
        assert.equal(del.statusCode, 200)
      }
      const deletes = await events(app, `target=${file.id}&action=file.delete`)
      assert.equal(deletes.length, 1, 'a second delete of the tombstone records nothing')
      assert.equal(deletes[0]?.request_id, 'aud-del')
      assert.equal(deletes[0]?.detail.reason, 'manual')

      const rotated = await app.inject({
        method: 'POST',
        url: `/v1/keys/${made.id}/rotate`,
        headers: { ...admin, 'x-request-id': 'aud-rot' },
        payload: { grace_seconds: 60 },
      })
      secrets.push(rotated.json().key)
      await app.inject({
        method: 'DELETE',
        url: `/v1/keys/${made.id}`,
        headers: { ...admin, 'x-request-id': 'aud-rev' },
      })
      const keyEvents = await events(app, `target=${made.id}`)
      assert.deepEqual(
        keyEvents.map((e) => [e.action, e.request_id]),
        [
          ['key.revoke', 'aud-rev'],
          ['key.rotate', 'aud-rot'],
          ['key.create', 'aud-create'],
        ],
        'newest first',
      )
      assert.equal(keyEvents[1]?.detail.grace_seconds, 60)
    })

    it('records the sweeps as system and a cleanup someone asked for as its actor, under one request id', async () => {
      const { app } = ctx()
      const made = await createKey(app, { tenant: 'aud-sweep' })
      secrets.push(made.key)
      const up = await uploadWith(app, made.key, `expiring ${randomUUID()}`, [
        ['provider', 'kimi'],
        ['expires_in', '1'],
      ])
      assert.equal(up.statusCode, 201, up.body)
      await new Promise((resolve) => setTimeout(resolve, Date.parse(up.json().expires_at) - Date.now() + 50))
      const dry = await app.inject({
        method: 'POST',
        url: '/v1/cleanup',
        headers: { ...admin, 'x-request-id': 'aud-dry' },
        payload: { jobs: ['expired'] },
      })
      assert.equal(dry.statusCode, 200)
      const run = await app.inject({
        method: 'POST',
        url: '/v1/cleanup',
        headers: { ...admin, 'x-request-id': 'aud-clean' },
        payload: { dry_run: false, jobs: ['expired'] },
      })
      assert.equal(run.statusCode, 200, run.body)
      const [expired] = await events(app, `target=${up.json().id}&action=file.expire`)
      assert.equal(expired?.actor, 'system')
      assert.equal(expired?.request_id, 'aud-clean')
      assert.equal(expired?.tenant_id, 'aud-sweep')
      const runs = await events(app, 'action=cleanup.run')
      assert.deepEqual(
        runs.map((e) => e.request_id),
        ['aud-clean'],
        'a dry run is not recorded',
      )
      assert.equal(runs[0]?.actor, 'env:*')
      assert.equal(runs[0]?.tenant_id, null)
      assert.deepEqual(runs[0]?.detail, {
        jobs: { expired: { status: 'completed', candidates: 1, deleted: 1, failed: 0 } },
      })
    })

    it('serves GET /v1/audit with filters and a cursor, each tenant its own events only', async () => {
      const { app } = ctx()
      const manager = await createKey(app, { tenant: 'aud-iso', scopes: ['keys', 'files:read', 'files:write'] })
      const other = await createKey(app, { tenant: 'aud-other', scopes: ['keys'] })
      secrets.push(manager.key, other.key)
      const since = new Date().toISOString()
      for (let i = 0; i < 3; i++)
        assert.equal((await uploadWith(app, manager.key, `iso ${i} ${randomUUID()}`)).statusCode, 201)

      const own = await events(app, '', auth(manager.key))
      assert.ok(own.length >= 4)
      for (const e of own) assert.equal(e.tenant_id, 'aud-iso')
      for (const e of await events(app, '', auth(other.key))) assert.equal(e.tenant_id, 'aud-other')
      assert.equal(
        forbidden(
          await app.inject({ method: 'GET', url: '/v1/audit?tenant=aud-other', headers: auth(manager.key) }),
          'another tenant',
        ).required_scope,
        'admin',
      )
      const reader = await createKey(app, { tenant: 'aud-iso', scopes: ['files:read'] })
      secrets.push(reader.key)
      assert.equal(
        forbidden(await app.inject({ method: 'GET', url: '/v1/audit', headers: auth(reader.key) }), 'files:read only')
          .required_scope,
        'keys',
      )

      const uploads = await events(app, `tenant=aud-iso&action=file.upload&since=${encodeURIComponent(since)}`)
      assert.equal(uploads.length, 3)
      const pages: string[] = []
      let after: string | null = null
      do {
        const res: Awaited<ReturnType<typeof app.inject>> = await app.inject({
          method: 'GET',
          url: `/v1/audit?tenant=aud-iso&action=file.upload&since=${encodeURIComponent(since)}&limit=1${after ? `&after=${after}` : ''}`,
          headers: admin,
        })
        pages.push(...res.json().data.map((e: AuditEvent) => e.id))
        after = res.json().next_cursor
      } while (after)
      assert.deepEqual(
        pages,
        uploads.map((e) => e.id),
        'the cursor walks the same events, newest first',
      )
      assert.equal(
        (await app.inject({ method: 'GET', url: '/v1/audit?action=DROP%20TABLE', headers: admin })).statusCode,
        400,
      )
      assert.equal(
        (await app.inject({ method: 'GET', url: '/v1/audit?since=yesterday', headers: admin })).statusCode,
        400,
      )
    })

    it('is append-only, and the audit job removes events past AUDIT_RETENTION_DAYS once across two replicas', async () => {
      const { app, fakes, where } = ctx()
      const refusal = /append-only/
      await assert.rejects(sql(app, "update audit_events set actor = 'someone else'"), refusal)
      await assert.rejects(sql(app, 'delete from audit_events'), refusal)
      await assert.rejects(sql(app, 'truncate audit_events'), refusal)

      const before = Number((await sql<{ n: number }>(app, 'select count(*)::int as n from audit_events'))[0]?.n)
      await sql(
        app,
        `insert into audit_events (at, tenant_id, actor, action, target)
         select now() - make_interval(days => 31 + i), 'aud-old', 'system', 'file.expire', 'old-' || i
           from generate_series(1, 7) as i`,
      )
      const dry = await app.inject({ method: 'POST', url: '/v1/cleanup', headers: admin, payload: { jobs: ['audit'] } })
      assert.equal(dry.json().jobs.audit.providers.audit_events.candidates, 7, dry.body)
      const replica = await accessApp(
        { after() {} },
        where,
        fakes,
        { AUDIT_RETENTION_DAYS: '30', CLEANUP_BATCH_SIZE: '2' },
        transport === 'pglite' ? { store: app.store } : {},
      )
      try {
        const runs = await Promise.all(
          [app, replica].map((a) =>
            a.inject({
              method: 'POST',
              url: '/v1/cleanup',
              headers: admin,
              payload: { dry_run: false, jobs: ['audit'] },
            }),
          ),
        )
        const deleted = runs.map((r) => r.json().jobs.audit.providers.audit_events?.deleted ?? 0)
        assert.equal(deleted[0] + deleted[1], 7, `removed once in all: ${deleted.join(' + ')}`)
      } finally {
        await replica.close()
      }
      const left = await sql<{ n: number }>(
        app,
        "select count(*)::int as n from audit_events where tenant_id = 'aud-old'",
      )
      assert.equal(Number(left[0]?.n), 0)
      const after = Number((await sql<{ n: number }>(app, 'select count(*)::int as n from audit_events'))[0]?.n)
      assert.ok(after >= before, 'the recent events stay (and the two runs were recorded)')
    })

    it('holds no secret in clear in any column of any table after the run', async (t) => {
      const { app } = ctx()
      assert.ok(secrets.length >= 6)
      const all = [...secrets, ...secrets.map((k) => k.slice(20)), ...Object.values(testKeys)]
      const searched = await assertNoSecretStored(app, all)
      t.diagnostic(`${searched} text columns searched for ${all.length} secrets`)
    })
  })
}
