/**
 * Revocation on every replica: two apps on one database (Postgres: two processes' worth of pools
 * and listeners; PGlite: one store shared, as two replicas of one process would), a key used on one
 * and revoked on the other is refused within a second (measured and printed); the same after the
 * listening connection broke (it listens again and drops its cache); open mode ends on every
 * replica within a second of the first key; on the Supabase transport (the fake PostgREST, no
 * notifications) within five.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { describe, it } from 'node:test'
import type { FastifyInstance } from 'fastify'
import postgres from 'postgres'
import { startFakePostgrest } from '../fakes/postgrest.js'
import { adminUrl, auth, startFakes } from '../helper.js'
import {
  accessApp,
  admin,
  createKey,
  type Place,
  place,
  skipOf,
  statusWith,
  suiteScope,
  transports,
  within,
} from './access-support.js'

/** Revokes a key on `on` and measures how long until `other`, which has it cached, refuses it. */
async function revokeAndMeasure(on: FastifyInstance, other: FastifyInstance, tenant: string): Promise<number> {
  const made = await createKey(on, { tenant })
  assert.equal(await statusWith(other, made.key), 200, 'the other replica accepts (and caches) the key')
  assert.equal(await statusWith(other, made.key), 200)
  const revoked = await on.inject({ method: 'DELETE', url: `/v1/keys/${made.id}`, headers: admin })
  assert.equal(revoked.statusCode, 200)
  return within(
    'the other replica refuses the revoked key',
    1000,
    async () => (await statusWith(other, made.key)) === 401,
    5,
  )
}

const replicaOf = (
  scope: { after(fn: () => Promise<void>): void },
  where: Place,
  first: FastifyInstance,
  fakes: Awaited<ReturnType<typeof startFakes>>,
  env: Record<string, string> = {},
) => accessApp(scope, where, fakes, env, where.transport === 'pglite' ? { store: first.store } : {})

for (const transport of transports) {
  const skip = await skipOf(transport)
  describe(`two replicas on one ${transport} database`, { skip }, () => {
    it('a key revoked on one is refused by the other within a second (5 rounds each way)', async (t) => {
      const scope = suiteScope()
      const where = await place(scope, transport)
      const fakes = await startFakes(scope)
      const a = await accessApp(scope, where, fakes)
      const b = await replicaOf(scope, where, a, fakes)
      await within('both replicas hear key changes', 5000, async () => a.keyring.announcing && b.keyring.announcing)
      const took: number[] = []
      for (let round = 0; round < 5; round++) {
        took.push(await revokeAndMeasure(a, b, `rep-${round}`))
        took.push(await revokeAndMeasure(b, a, `rep-back-${round}`))
      }
      t.diagnostic(
        `${transport}: revoked on one replica, refused by the other after ${took.map((ms) => ms.toFixed(1)).join(', ')} ms (max ${Math.max(...took).toFixed(1)} ms)`,
      )
      for (const ms of took) assert.ok(ms < 1000, `${ms} ms`)
      // A rotation without grace reaches the other replica the same way.
      const made = await createKey(a, { tenant: 'rep-rot' })
      assert.equal(await statusWith(b, made.key), 200)
      await a.inject({ method: 'POST', url: `/v1/keys/${made.id}/rotate`, headers: admin })
      const rotated = await within(
        'the old secret refused by the other replica',
        1000,
        async () => (await statusWith(b, made.key)) === 401,
        5,
      )
      t.diagnostic(
        `${transport}: rotated on one replica, old secret refused by the other after ${rotated.toFixed(1)} ms`,
      )
    })

    it('open mode ends on every replica within a second of the first key', async (t) => {
      const scope = suiteScope()
      const where = await place(scope, transport)
      const fakes = await startFakes(scope)
      const a = await accessApp(scope, where, fakes, { API_KEYS: '' })
      const b = await replicaOf(scope, where, a, fakes, { API_KEYS: '' })
      await within('both replicas hear key changes', 5000, async () => a.keyring.announcing && b.keyring.announcing)
      for (const app of [a, b]) {
        const open = await app.inject({ method: 'GET', url: '/v1/files' })
        assert.equal(open.statusCode, 200, 'open mode: no credentials needed')
      }
      // The first key, made in open mode (which holds every scope), ends it.
      const first = await a.inject({
        method: 'POST',
        url: '/v1/keys',
        payload: { tenant: 'acme', scopes: ['files:read', 'files:write', 'keys'] },
      })
      assert.equal(first.statusCode, 201, first.body)
      assert.equal(first.json().created_by, 'open')
      assert.equal(
        (await a.inject({ method: 'GET', url: '/v1/files' })).statusCode,
        401,
        'closed at once where it was made',
      )
      const took = await within(
        'the other replica leaves open mode',
        1000,
        async () => (await b.inject({ method: 'GET', url: '/v1/files' })).statusCode === 401,
        5,
      )
      t.diagnostic(`${transport}: open mode ended on the other replica ${took.toFixed(1)} ms after the first key`)
      assert.equal(await statusWith(b, first.json().key), 200, 'the key works there')
      // Revoking every key does not open the service again.
      await a.inject({ method: 'DELETE', url: `/v1/keys/${first.json().id}`, headers: auth(first.json().key) })
      assert.equal((await b.inject({ method: 'GET', url: '/v1/files' })).statusCode, 401)
    })
  })
}

describe('listening again after the connection broke (Postgres)', { skip: await skipOf('postgres') }, () => {
  it('drops the cache when it listens again, so a revoke announced meanwhile is not missed', async (t) => {
    const scope = suiteScope()
    const where = await place(scope, 'postgres')
    const fakes = await startFakes(scope)
    const a = await accessApp(scope, where, fakes)
    const b = await accessApp(scope, where, fakes)
    await within('both replicas hear key changes', 5000, async () => a.keyring.announcing && b.keyring.announcing)
    const made = await createKey(a, { tenant: 'relisten' })
    // The creation's announcement is heard first, then B caches the key.
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal(await statusWith(b, made.key), 200)
    const dba = postgres(adminUrl, { max: 1, onnotice: () => {} })
    t.after(() => dba.end())
    // Every listening connection of this database is cut; the revoke follows at once, before they are back.
    const cut = await dba`select pg_terminate_backend(pid) as ok from pg_stat_activity
                           where datname = ${where.db?.name ?? ''} and application_name = 'filegate-listen'`
    assert.ok(cut.length >= 2, `${cut.length} listening connections cut`)
    await a.inject({ method: 'DELETE', url: `/v1/keys/${made.id}`, headers: admin })
    const took = await within(
      'the revoke is refused by the replica that was not listening',
      1000,
      async () => (await statusWith(b, made.key)) === 401,
      5,
    )
    await within('listening again', 5000, async () => b.keyring.announcing)
    t.diagnostic(`postgres: listening connections cut; revoke refused by the other replica after ${took.toFixed(1)} ms`)
    // And the announcements are heard again.
    const next = await revokeAndMeasure(a, b, `relisten-${randomUUID().slice(0, 8)}`)
    t.diagnostic(`postgres: after listening again, refused after ${next.toFixed(1)} ms`)
  })
})

describe('the Supabase transport (fake PostgREST): no notifications', { skip: await skipOf('postgres') }, () => {
  it('refuses a key revoked on another replica within 5 s, and manages keys through .rpc()', async (t) => {
    const scope = suiteScope()
    const where = await place(scope, 'postgres')
    const fakes = await startFakes(scope)
    const a = await accessApp(scope, where, fakes)
    const serviceRoleKey = `service-role-${randomUUID()}`
    const postgrest = await startFakePostgrest({ databaseUrl: where.db?.url as string, serviceRoleKey })
    scope.after(() => postgrest.close())
    const s = await accessApp(
      scope,
      { transport: 'postgres', env: { SUPABASE_URL: postgrest.url, SUPABASE_SERVICE_ROLE_KEY: serviceRoleKey } },
      fakes,
    )
    assert.equal(s.store.transport, 'supabase')
    assert.equal(s.keyring.announcing, false)

    // Made through .rpc() (text[] arguments through PostgREST), used on the Postgres replica.
    const viaRpc = await createKey(s, { tenant: 'sb', scopes: ['files:read', 'keys'], providers: ['kimi'] })
    assert.deepEqual(viaRpc.body.providers, ['kimi'])
    assert.equal(await statusWith(a, viaRpc.key), 200)
    assert.ok(postgrest.calls.some((c) => c.fn === 'create_api_key'))

    const took: number[] = []
    for (let round = 0; round < 2; round++) {
      const made = await createKey(a, { tenant: `sb-${round}` })
      assert.equal(await statusWith(s, made.key), 200)
      await a.inject({ method: 'DELETE', url: `/v1/keys/${made.id}`, headers: admin })
      took.push(
        await within(
          'the Supabase replica refuses the revoked key',
          5000,
          async () => (await statusWith(s, made.key)) === 401,
          20,
        ),
      )
    }
    t.diagnostic(
      `supabase transport: revoked elsewhere, refused after ${took.map((ms) => ms.toFixed(0)).join(', ')} ms`,
    )
    // Rotated and read through .rpc() as well; the audit names who did what.
    const rotated = await s.inject({
      method: 'POST',
      url: `/v1/keys/${viaRpc.id}/rotate`,
      headers: admin,
      payload: { grace_seconds: 30 },
    })
    assert.equal(rotated.statusCode, 200, rotated.body)
    assert.equal(await statusWith(s, rotated.json().key), 200)
    assert.equal(await statusWith(s, viaRpc.key), 200, 'the old secret within its grace')
    const audit = await s.inject({ method: 'GET', url: `/v1/audit?target=${viaRpc.id}&limit=1`, headers: admin })
    assert.equal(audit.statusCode, 200, audit.body)
    assert.equal(audit.json().data[0].action, 'key.rotate')
    const next = await s.inject({
      method: 'GET',
      url: `/v1/audit?target=${viaRpc.id}&limit=1&after=${audit.json().next_cursor}`,
      headers: admin,
    })
    assert.equal(next.json().data[0].action, 'key.create', 'the cursor through PostgREST')
    // A revoke made on it is refused there at once.
    const own = await createKey(s, { tenant: 'sb-own' })
    assert.equal(await statusWith(s, own.key), 200)
    await s.inject({ method: 'DELETE', url: `/v1/keys/${own.id}`, headers: admin })
    assert.equal(await statusWith(s, own.key), 401)
  })
})
