/**
 * Repository contract: the same cases against every transport of the call port —
 * PGlite in-process, the machine's Postgres, and the Supabase transport (supabase-js .rpc())
 * pointed at a PostgREST-protocol endpoint over the same real Postgres.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import postgres from 'postgres'
import { applyMigrations, latestVersion, loadMigrations } from '../../src/store/migrations.js'
import type { StorePort } from '../../src/store/port.js'
import { createPostgresStore } from '../../src/store/postgres.js'
import { schemaVersion } from '../../src/store/queries.js'
import { createSupabaseStore } from '../../src/store/supabase.js'
import { startFakePostgrest } from '../fakes/postgrest.js'
import { createTestDatabase, isCI, postgresAvailable } from '../helper.js'
import { type Harness, openPglite, openPostgres } from './store-harness.js'

interface FileJson {
  id: string
  tenant_id: string
  provider: string
  provider_file_id: string | null
  status: string
  bytes: number
  sha256: string
  metadata: Record<string, unknown>
  created_at: string
  last_used_at: string
  deleted_at: string | null
  deletion_reason: string | null
  provider_deleted: boolean
  error: string | null
}
interface Claim {
  outcome: 'claimed' | 'duplicate' | 'in_progress' | 'quota_exceeded'
  claim_token?: string
  file?: FileJson
}

/** Microseconds since the epoch: Postgres keeps them, Date.parse would drop them. */
const micros = (ts: string): bigint => {
  const m = /\.(\d{1,6})/.exec(ts)
  return BigInt(Date.parse(ts.replace(/\.\d+/, ''))) * 1000n + BigInt((m?.[1] ?? '0').padEnd(6, '0'))
}

const sha = (n: number | string) =>
  String(n)
    .padStart(64, '0')
    .slice(-64)
    .replace(/[^0-9a-f]/g, 'a')

const claimArgs = (over: Record<string, unknown> = {}) => ({
  p_tenant_id: 't1',
  p_provider: 'kimi',
  p_purpose: 'file-extract',
  p_sha256: sha(1),
  p_bytes: 100,
  p_filename: 'a.pdf',
  p_mime_type: 'application/pdf',
  p_metadata: { project: 'x' },
  ...over,
})

const pgOk = await postgresAvailable()
if (!pgOk && isCI) throw new Error('CI=true but Postgres is not reachable')
if (!pgOk) console.log('# NOTICE: Postgres not reachable; the postgres and supabase contract suites are skipped')

const transports: Array<{ name: string; skip: boolean; open: () => Promise<Harness> }> = [
  { name: 'pglite', skip: false, open: openPglite },
  { name: 'postgres', skip: !pgOk, open: () => openPostgres('filegate_contract_pg') },
  {
    name: 'supabase',
    skip: !pgOk,
    open: async () => {
      const db = await createTestDatabase('filegate_contract_sb')
      const direct = createPostgresStore(db.url, { max: 1 })
      await applyMigrations(direct.migrator as NonNullable<StorePort['migrator']>, await loadMigrations())
      await direct.close()
      const serviceRoleKey = `service-role-${randomUUID()}`
      const fake = await startFakePostgrest({ databaseUrl: db.url, serviceRoleKey })
      const store = createSupabaseStore(fake.url, serviceRoleKey)
      return {
        store,
        close: async () => {
          await store.close()
          await fake.close()
          await db.drop()
        },
      }
    },
  },
]

for (const transport of transports) {
  describe(`store contract: ${transport.name}`, { skip: transport.skip }, () => {
    let h: Harness
    let store: StorePort
    before(async () => {
      h = await transport.open()
      store = h.store
    })
    after(() => h?.close())

    it('reports the schema version the code expects', async () => {
      assert.equal(await schemaVersion(store), latestVersion(await loadMigrations()))
      assert.equal(store.transport, transport.name)
    })

    it('re-running migrations is a no-op', { skip: transport.name === 'supabase' }, async () => {
      const again = await applyMigrations(store.migrator as NonNullable<StorePort['migrator']>, await loadMigrations())
      assert.deepEqual(again.applied, [])
    })

    it('claims, completes and deduplicates per tenant, with JSON types alike on every transport', async () => {
      const first = await store.call<Claim>('claim_upload', claimArgs({ p_sha256: sha(10) }))
      assert.equal(first.outcome, 'claimed')
      assert.ok(first.claim_token)
      assert.equal(first.file?.status, 'uploading')
      assert.equal(typeof first.file?.bytes, 'number')
      assert.deepEqual(first.file?.metadata, { project: 'x' })
      assert.ok(!Number.isNaN(Date.parse(first.file?.created_at ?? '')))
      assert.equal('claim_token' in (first.file ?? {}), false, 'the token never leaves in a file')

      const busy = await store.call<Claim>('claim_upload', claimArgs({ p_sha256: sha(10) }))
      assert.equal(busy.outcome, 'in_progress')

      const done = await store.call<{ outcome: string; file: FileJson }>('complete_upload', {
        p_id: first.file?.id,
        p_claim_token: first.claim_token,
        p_provider_file_id: 'prov-10',
      })
      assert.equal(done.outcome, 'completed')
      assert.equal(done.file.provider_file_id, 'prov-10')

      const dup = await store.call<Claim>('claim_upload', claimArgs({ p_sha256: sha(10) }))
      assert.equal(dup.outcome, 'duplicate')
      assert.equal(dup.file?.id, first.file?.id)
      assert.ok(Date.parse(dup.file?.last_used_at ?? '') >= Date.parse(done.file.last_used_at))

      const other = await store.call<Claim>('claim_upload', claimArgs({ p_sha256: sha(10), p_tenant_id: 't2' }))
      assert.equal(other.outcome, 'claimed', 'another tenant never sees the first tenant’s file')
    })

    it('answers a batch of dedup probes in order: hits, misses, other tenants, provider preference', async () => {
      const make = async (over: Record<string, unknown>, providerFileId: string) => {
        const c = await store.call<Claim>('claim_upload', claimArgs(over))
        await store.call('complete_upload', {
          p_id: c.file?.id,
          p_claim_token: c.claim_token,
          p_provider_file_id: providerFileId,
        })
        return c.file?.id
      }
      const kimi = await make({ p_sha256: sha(80) }, 'b-kimi')
      const glm = await make({ p_sha256: sha(80), p_provider: 'glm' }, 'b-glm')
      const pending = await store.call<Claim>('claim_upload', claimArgs({ p_sha256: sha(81) }))
      assert.equal(pending.outcome, 'claimed')
      const probe = (over: Record<string, unknown>) => ({
        tenant_id: 't1',
        providers: ['kimi'],
        purpose: 'file-extract',
        sha256: sha(80),
        ...over,
      })
      const answers = await store.call<Array<FileJson | null>>('find_live_duplicates', {
        p_batch: {
          probes: [
            probe({}),
            probe({ tenant_id: 't2' }),
            probe({ providers: ['glm', 'kimi'] }),
            probe({ sha256: sha(81) }),
            probe({ purpose: 'assistants' }),
            probe({ providers: ['openai', 'kimi'] }),
          ],
        },
      })
      assert.deepEqual(
        answers.map((a) => a?.id ?? null),
        [kimi, null, glm, null, null, kimi],
        'in the order asked; another tenant, an upload in flight and another purpose are misses',
      )
      assert.equal(answers[0]?.provider_file_id, 'b-kimi')
      assert.equal(typeof answers[0]?.bytes, 'number')
      assert.deepEqual(await store.call('find_live_duplicates', { p_batch: { probes: [] } }), [])
    })

    it('lets exactly one of many concurrent claims win', async () => {
      const results = await Promise.all(
        Array.from({ length: 20 }, () => store.call<Claim>('claim_upload', claimArgs({ p_sha256: sha(20) }))),
      )
      assert.equal(results.filter((r) => r.outcome === 'claimed').length, 1)
      assert.equal(results.filter((r) => r.outcome === 'in_progress').length, 19)
    })

    it('a claim whose lease ran out is taken over by exactly one of many racing claims; the old owner has lost it', async () => {
      const lease = { p_sha256: sha(25), p_lease_seconds: 1 }
      const first = await store.call<Claim & { file: { claimed_until: string } }>(
        'claim_upload',
        claimArgs({ ...lease, p_owner: 'host-a:1' }),
      )
      assert.equal(first.outcome, 'claimed')
      assert.ok(first.file.claimed_until, 'the lease is on the row')
      assert.equal('claim_owner' in first.file, false, 'the owner stays bookkeeping')
      const renewed = await store.call('renew_upload_claim', {
        p_id: first.file.id,
        p_claim_token: first.claim_token,
        p_lease_seconds: 1,
      })
      assert.equal(renewed, true)
      const busy = await store.call<Claim>('claim_upload', claimArgs({ ...lease, p_owner: 'host-b:2' }))
      assert.equal(busy.outcome, 'in_progress', 'a live lease is respected')

      await new Promise((r) => setTimeout(r, 1_200))
      const racing = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          store.call<Claim & { taken_over?: boolean }>(
            'claim_upload',
            claimArgs({ ...lease, p_lease_seconds: 30, p_owner: `host-b:${i}` }),
          ),
        ),
      )
      const winners = racing.filter((r) => r.outcome === 'claimed')
      assert.equal(winners.length, 1, JSON.stringify(racing.map((r) => r.outcome)))
      assert.equal(winners[0]?.taken_over, true)
      assert.equal(winners[0]?.file?.id, first.file.id)
      assert.equal(racing.filter((r) => r.outcome === 'in_progress').length, 9)

      assert.equal(
        await store.call('renew_upload_claim', { p_id: first.file.id, p_claim_token: first.claim_token }),
        false,
        'the old owner learns it lost the claim',
      )
      const lost = await store.call<{ outcome: string; orphan: FileJson }>('complete_upload', {
        p_id: first.file.id,
        p_claim_token: first.claim_token,
        p_provider_file_id: 'prov-old-owner',
      })
      assert.equal(lost.outcome, 'lost')
      const done = await store.call<{ outcome: string }>('complete_upload', {
        p_id: first.file.id,
        p_claim_token: winners[0]?.claim_token,
        p_provider_file_id: 'prov-new-owner',
      })
      assert.equal(done.outcome, 'completed')
    })

    it('a failed row never blocks a retry; a lost claim leaves an orphan tombstone, not a leak', async () => {
      const a = await store.call<Claim>('claim_upload', claimArgs({ p_sha256: sha(30) }))
      const failed = await store.call<FileJson>('fail_upload', {
        p_id: a.file?.id,
        p_claim_token: a.claim_token,
        p_error: 'provider said no',
      })
      assert.equal(failed.status, 'failed')
      const retry = await store.call<Claim>('claim_upload', claimArgs({ p_sha256: sha(30) }))
      assert.equal(retry.outcome, 'claimed')
      assert.notEqual(retry.file?.id, a.file?.id)
      const old = await store.call<FileJson>('get_file', { p_tenant_id: 't1', p_id: a.file?.id })
      assert.equal(old.status, 'deleted')
      assert.equal(old.deletion_reason, 'orphaned')
      assert.equal(old.provider_deleted, true, 'nothing at the provider to delete')

      // Taken over after the stuck threshold (0 minutes here): the first claimant's completion is lost.
      const takeover = await store.call<Claim>('claim_upload', claimArgs({ p_sha256: sha(30), p_stuck_minutes: 0 }))
      assert.equal(takeover.outcome, 'claimed')
      assert.equal(takeover.file?.id, retry.file?.id)
      const lost = await store.call<{ outcome: string; orphan: FileJson }>('complete_upload', {
        p_id: retry.file?.id,
        p_claim_token: retry.claim_token,
        p_provider_file_id: 'prov-lost',
      })
      assert.equal(lost.outcome, 'lost')
      assert.equal(lost.orphan.provider_file_id, 'prov-lost')
      assert.equal(lost.orphan.provider_deleted, false)
      const claimed = await store.call<FileJson | null>('claim_provider_delete', { p_id: lost.orphan.id })
      assert.equal(claimed?.id, lost.orphan.id)
    })

    it('a failure with a provider copy recorded after the claim was taken over: the copy gets a tombstone owing its delete, once', async () => {
      const a = await store.call<Claim>('claim_upload', claimArgs({ p_sha256: sha(34) }))
      // The upload outlived the stuck threshold (0 minutes here): another caller took the row over.
      const takeover = await store.call<Claim>('claim_upload', claimArgs({ p_sha256: sha(34), p_stuck_minutes: 0 }))
      assert.equal(takeover.outcome, 'claimed')
      assert.equal(takeover.file?.id, a.file?.id)
      const fail = {
        p_id: a.file?.id,
        p_claim_token: a.claim_token,
        p_error: 'store hung',
        p_provider_file_id: 'prov-late',
      }
      const tomb = await store.call<FileJson | null>('fail_upload', fail)
      assert.ok(tomb, 'the late copy is named by a row')
      assert.notEqual(tomb.id, a.file?.id, 'a tombstone beside the row the new owner holds')
      assert.equal(tomb.provider_file_id, 'prov-late')
      assert.equal(tomb.status, 'deleted')
      assert.equal(tomb.deletion_reason, 'orphaned')
      assert.equal(tomb.provider_deleted, false)
      const again = await store.call<FileJson | null>('fail_upload', fail)
      assert.equal(again?.id, tomb.id, 'a repeated call answers the same tombstone')
      const row = await store.call<FileJson>('get_file', { p_tenant_id: 't1', p_id: a.file?.id })
      assert.equal(row.status, 'uploading', "the new owner's claim is left alone")
      const claimed = await store.call<FileJson | null>('claim_provider_delete', { p_id: tomb.id })
      assert.equal(claimed?.id, tomb.id)
    })

    it('a settle repeated after it committed answers the same, never a lost claim nor a second tombstone', async () => {
      const a = await store.call<Claim>('claim_upload', claimArgs({ p_sha256: sha(31) }))
      const settle = { p_id: a.file?.id, p_claim_token: a.claim_token, p_provider_file_id: 'prov-once', p_bytes: 100 }
      const first = await store.call<{ outcome: string; file: FileJson }>('complete_upload', settle)
      const again = await store.call<{ outcome: string; file: FileJson; orphan?: FileJson }>('complete_upload', settle)
      assert.equal(first.outcome, 'completed')
      assert.equal(again.outcome, 'completed', 'the copy stays the live one')
      assert.equal(again.orphan, undefined)
      assert.equal(again.file.provider_file_id, 'prov-once')
      const recorded = await store.call<{ outcome: string; file: FileJson }>('record_unsettled_copy', {
        p_id: a.file?.id,
        p_provider_file_id: 'prov-once',
        p_why: 'not answered',
        p_claim_token: a.claim_token,
      })
      assert.equal(recorded.outcome, 'settled', 'a copy the row holds is left alone')
      assert.equal(recorded.file.status, 'completed')

      const b = await store.call<Claim>('claim_upload', claimArgs({ p_sha256: sha(32) }))
      const fail = { p_id: b.file?.id, p_claim_token: b.claim_token, p_error: 'mismatch', p_provider_file_id: 'prov-x' }
      const tomb = await store.call<FileJson>('fail_upload', fail)
      const tombAgain = await store.call<FileJson>('fail_upload', fail)
      assert.equal(tomb.status, 'deleted')
      assert.equal(tombAgain?.id, tomb.id, 'the tombstone it made, its delete still owed')
      assert.equal(tombAgain.provider_deleted, false)
    })

    it('records a copy whose settle never answered: the claim becomes its tombstone, once; a claim taken over leaves one beside', async () => {
      const a = await store.call<Claim>('claim_upload', claimArgs({ p_sha256: sha(33) }))
      const copy = {
        p_id: a.file?.id,
        p_provider_file_id: 'prov-unsettled',
        p_why: 'unreachable',
        p_claim_token: a.claim_token,
      }
      const first = await store.call<{ outcome: string; file: FileJson }>('record_unsettled_copy', copy)
      const again = await store.call<{ outcome: string; file: FileJson }>('record_unsettled_copy', copy)
      assert.equal(first.outcome, 'orphan')
      assert.equal(first.file.id, a.file?.id, 'the claimed row itself')
      assert.equal(first.file.status, 'deleted')
      assert.equal(first.file.deletion_reason, 'orphaned')
      assert.equal(first.file.provider_deleted, false)
      assert.equal(again.file.id, first.file.id, 'recorded once')

      const b = await store.call<Claim>('claim_upload', claimArgs({ p_sha256: sha(34) }))
      const takeover = await store.call<Claim>('claim_upload', claimArgs({ p_sha256: sha(34), p_stuck_minutes: 0 }))
      assert.equal(takeover.outcome, 'claimed')
      const beside = await store.call<{ outcome: string; file: FileJson }>('record_unsettled_copy', {
        p_id: b.file?.id,
        p_provider_file_id: 'prov-old-claim',
        p_why: 'unreachable',
        p_claim_token: b.claim_token,
      })
      assert.equal(beside.outcome, 'orphan')
      assert.notEqual(beside.file.id, b.file?.id, 'the new claim is left alone')
      assert.equal(beside.file.provider_file_id, 'prov-old-claim')
      const live = await store.call<FileJson>('get_file', { p_tenant_id: 't1', p_id: b.file?.id })
      assert.equal(live.status, 'uploading')
    })

    it('refuses a claim that would break the account cap, counting every tenant', async () => {
      const capped = { p_provider: 'capped', p_max_files: 2, p_max_bytes: 1000 }
      const one = await store.call<Claim>('claim_upload', claimArgs({ ...capped, p_sha256: sha(40) }))
      const two = await store.call<Claim>('claim_upload', claimArgs({ ...capped, p_sha256: sha(41), p_tenant_id: 'x' }))
      const three = await store.call<Claim>('claim_upload', claimArgs({ ...capped, p_sha256: sha(42) }))
      assert.deepEqual([one.outcome, two.outcome, three.outcome], ['claimed', 'claimed', 'quota_exceeded'])
      const big = await store.call<Claim>(
        'claim_upload',
        claimArgs({ p_provider: 'capped2', p_max_bytes: 1000, p_bytes: 1001, p_sha256: sha(43) }),
      )
      assert.equal(big.outcome, 'quota_exceeded')
      const usage = await store.call<Array<{ provider: string; files: number; bytes: number }>>('provider_usage', {
        p_provider: 'capped',
      })
      assert.deepEqual(usage, [{ provider: 'capped', files: 2, bytes: 200 }])
    })

    it("refuses a claim that would break the tenant's own cap at a provider, counting only that tenant", async () => {
      const capped = { p_provider: 'tenantcap', p_tenant_max_files: 2, p_tenant_max_bytes: 250 }
      const one = await store.call<Claim>(
        'claim_upload',
        claimArgs({ ...capped, p_tenant_id: 'tq', p_sha256: sha(60) }),
      )
      const two = await store.call<Claim>(
        'claim_upload',
        claimArgs({ ...capped, p_tenant_id: 'tq', p_sha256: sha(61) }),
      )
      const other = await store.call<Claim>(
        'claim_upload',
        claimArgs({ ...capped, p_tenant_id: 'tq2', p_sha256: sha(62) }),
      )
      const three = await store.call<Claim & { files?: number; bytes?: number; max_files?: number }>(
        'claim_upload',
        claimArgs({ ...capped, p_tenant_id: 'tq', p_sha256: sha(63) }),
      )
      assert.deepEqual(
        [one.outcome, two.outcome, other.outcome, three.outcome],
        ['claimed', 'claimed', 'claimed', 'tenant_quota_exceeded'],
      )
      assert.equal(Number(three.files), 2)
      assert.equal(Number(three.bytes), 200)
      assert.equal(three.max_files, 2)
      // the byte cap alone, and another provider account of the same tenant is its own
      const bytes = await store.call<Claim>(
        'claim_upload',
        claimArgs({
          p_provider: 'tenantcap',
          p_tenant_id: 'tq2',
          p_tenant_max_bytes: 250,
          p_bytes: 151,
          p_sha256: sha(64),
        }),
      )
      assert.equal(bytes.outcome, 'tenant_quota_exceeded')
      const elsewhere = await store.call<Claim>(
        'claim_upload',
        claimArgs({ ...capped, p_provider: 'tenantcap2', p_tenant_id: 'tq', p_sha256: sha(65) }),
      )
      assert.equal(elsewhere.outcome, 'claimed')
      const usage = await store.call<Array<{ provider: string; files: number; bytes: number }>>('tenant_usage', {
        p_tenant_id: 'tq',
      })
      assert.deepEqual(
        usage
          .map((u) => ({ ...u, files: Number(u.files), bytes: Number(u.bytes) }))
          .sort((a, b) => (a.provider < b.provider ? -1 : 1)),
        [
          { provider: 'tenantcap', files: 2, bytes: 200 },
          { provider: 'tenantcap2', files: 1, bytes: 100 },
        ],
      )
    })

    it('counts files per purpose: a new file past the cap is refused, content already claimed is not', async () => {
      const purposeCap = (over: Record<string, unknown>) =>
        store.call<Claim & { scope?: string; max_files?: number }>(
          'claim_upload_within_purpose_cap',
          claimArgs({ p_provider: 'perpurpose', p_purpose: 'file-extract', p_max_purpose_files: 2, ...over }),
        )
      const one = await purposeCap({ p_sha256: sha(44) })
      const two = await purposeCap({ p_sha256: sha(45), p_tenant_id: 'x' })
      const three = await purposeCap({ p_sha256: sha(46) })
      assert.deepEqual([one.outcome, two.outcome, three.outcome], ['claimed', 'claimed', 'quota_exceeded'])
      assert.equal(three.scope, 'purpose')
      assert.equal(three.max_files, 2)
      // The same content again is not a new file: claim_upload answers it (here: still in flight).
      assert.equal((await purposeCap({ p_sha256: sha(44) })).outcome, 'in_progress')
      // Another purpose of the same provider is counted apart.
      assert.equal((await purposeCap({ p_sha256: sha(47), p_purpose: 'agent' })).outcome, 'claimed')
      // The account caps still apply inside it.
      assert.equal(
        (await purposeCap({ p_sha256: sha(48), p_purpose: 'batch', p_max_files: 3 })).outcome,
        'quota_exceeded',
      )
      const usage = await store.call<Array<{ provider: string; purpose: string; files: number }>>('purpose_usage', {
        p_provider: 'perpurpose',
      })
      assert.deepEqual(usage.map((u) => [u.purpose, Number(u.files)]).sort(), [
        ['agent', 1],
        ['file-extract', 2],
      ])
    })

    it('lists newest first with keyset pagination and filters', async () => {
      const ids: string[] = []
      // Rows land well under a millisecond apart: a cursor cut to milliseconds would skip some.
      for (let i = 0; i < 12; i++) {
        const c = await store.call<Claim>('claim_upload', claimArgs({ p_tenant_id: 'lister', p_sha256: sha(100 + i) }))
        ids.push(c.file?.id ?? '')
      }
      const seen: string[] = []
      let cursor: { created_at: string; id: string } | undefined
      for (let page = 0; page < 12; page++) {
        const res = await store.call<{ data: FileJson[]; has_more: boolean }>('list_files', {
          p_tenant_id: 'lister',
          p_limit: 2,
          p_after_created_at: cursor?.created_at,
          p_after_id: cursor?.id,
        })
        seen.push(...res.data.map((f) => f.id))
        const last = res.data.at(-1)
        if (!res.has_more || !last) break
        cursor = { created_at: last.created_at, id: last.id }
      }
      const whole = await store.call<{ data: FileJson[] }>('list_files', { p_tenant_id: 'lister', p_limit: 100 })
      assert.deepEqual(
        seen,
        whole.data.map((f) => f.id),
        'pages of 2 read the same order as one page',
      )
      assert.deepEqual([...seen].sort(), [...ids].sort(), 'each file exactly once')
      const keys = whole.data.map((f) => [micros(f.created_at), f.id] as const)
      for (let i = 1; i < keys.length; i++) {
        const [prev, cur] = [keys[i - 1], keys[i]]
        assert.ok(prev && cur && (prev[0] > cur[0] || (prev[0] === cur[0] && prev[1] > cur[1])), 'newest first')
      }
      const filtered = await store.call<{ data: FileJson[] }>('list_files', {
        p_tenant_id: 'lister',
        p_sha256: sha(102),
      })
      assert.deepEqual(
        filtered.data.map((f) => f.id),
        [ids[2]],
      )
      const none = await store.call<{ data: FileJson[]; has_more: boolean }>('list_files', { p_tenant_id: 'nobody' })
      assert.deepEqual(none, { data: [], has_more: false })
    })

    it('soft-deletes idempotently and hands each provider delete to one claimant', async () => {
      const c = await store.call<Claim>('claim_upload', claimArgs({ p_sha256: sha(50) }))
      await store.call('complete_upload', {
        p_id: c.file?.id,
        p_claim_token: c.claim_token,
        p_provider_file_id: 'p-50',
      })
      const t1 = await store.call<FileJson>('soft_delete_file', { file_id: c.file?.id, reason: 'manual' })
      const t2 = await store.call<FileJson>('soft_delete_file', { file_id: c.file?.id, reason: 'expired' })
      assert.equal(t1.status, 'deleted')
      assert.equal(t2.deletion_reason, 'manual', 'the first tombstone stands')
      assert.equal(t2.deleted_at, t1.deleted_at)
      const claims = await Promise.all(
        Array.from({ length: 5 }, () => store.call<FileJson | null>('claim_provider_delete', { p_id: c.file?.id })),
      )
      assert.equal(claims.filter(Boolean).length, 1)
      const marked = await store.call<FileJson>('mark_provider_deleted', { p_id: c.file?.id })
      assert.equal(marked.provider_deleted, true)
      assert.equal(await store.call('mark_provider_deleted', { p_id: c.file?.id }), null)
      assert.equal(await store.call('soft_delete_file', { file_id: randomUUID(), reason: 'manual' }), null)
    })

    it('sweeps expired, stuck and orphaned rows; find_* reports what sweep_* then takes', async () => {
      const past = new Date(Date.now() - 60_000)
      const c = await store.call<Claim>(
        'claim_upload',
        claimArgs({ p_tenant_id: 'sweep', p_sha256: sha(60), p_expires_at: past }),
      )
      await store.call('complete_upload', {
        p_id: c.file?.id,
        p_claim_token: c.claim_token,
        p_provider_file_id: 'p-60',
      })
      const inflight = await store.call<Claim>(
        'claim_upload',
        claimArgs({ p_tenant_id: 'sweep', p_sha256: sha(61), p_expires_at: past }),
      )
      const found = await store.call<FileJson[]>('find_expired_files', { retention_days: 30, p_limit: 100 })
      assert.ok(found.some((f) => f.id === c.file?.id))
      assert.ok(!found.some((f) => f.id === inflight.file?.id), 'in-flight rows are never candidates')
      const swept = await store.call<FileJson[]>('sweep_expired_files', { retention_days: 30, p_limit: 100 })
      assert.deepEqual(swept.map((f) => f.id).sort(), found.map((f) => f.id).sort())
      assert.equal(swept.find((f) => f.id === c.file?.id)?.deletion_reason, 'expired')
      assert.deepEqual(await store.call('sweep_expired_files', { retention_days: 30, p_limit: 100 }), [])
      // Claimed by the sweep for its own provider delete: nobody else may take it now.
      assert.equal(await store.call('claim_provider_delete', { p_id: c.file?.id }), null)

      const stuck = await store.call<FileJson[]>('fail_stuck_uploads', { stuck_minutes: 0, p_limit: 1000 })
      assert.ok(stuck.some((f) => f.id === inflight.file?.id))
      assert.ok(stuck.every((f) => f.status === 'failed'))
      const orphans = await store.call<FileJson[]>('find_orphaned_files', { orphan_age_days: 0, p_limit: 1000 })
      assert.ok(orphans.some((f) => f.id === inflight.file?.id))
      const tomb = await store.call<FileJson[]>('sweep_orphaned_files', { orphan_age_days: 0, p_limit: 1000 })
      assert.equal(tomb.find((f) => f.id === inflight.file?.id)?.deletion_reason, 'orphaned')
    })

    it('hands a job lease to one holder at a time', async () => {
      const job = `job-${randomUUID()}`
      assert.equal(await store.call('acquire_job_lease', { p_job: job, p_holder: 'a', p_ttl_seconds: 60 }), true)
      assert.equal(await store.call('acquire_job_lease', { p_job: job, p_holder: 'b', p_ttl_seconds: 60 }), false)
      assert.equal(await store.call('acquire_job_lease', { p_job: job, p_holder: 'a', p_ttl_seconds: 60 }), true)
      assert.equal(await store.call('release_job_lease', { p_job: job, p_holder: 'b' }), false)
      assert.equal(await store.call('release_job_lease', { p_job: job, p_holder: 'a' }), true)
      assert.equal(await store.call('acquire_job_lease', { p_job: job, p_holder: 'b', p_ttl_seconds: 0 }), true)
      // A dead holder's lease (ttl 0) has expired: another takes it.
      assert.equal(await store.call('acquire_job_lease', { p_job: job, p_holder: 'c', p_ttl_seconds: 60 }), true)
    })

    it('reconcile finds provider files unknown to the database and rows whose provider file is gone', async () => {
      const c = await store.call<Claim>('claim_upload', claimArgs({ p_provider: 'rec', p_sha256: sha(70) }))
      await store.call('complete_upload', { p_id: c.file?.id, p_claim_token: c.claim_token, p_provider_file_id: 'r-1' })
      const unknown = await store.call<string[]>('find_unknown_provider_files', {
        p_provider: 'rec',
        p_provider_file_ids: ['r-1', 'r-2', 'r"3,'],
      })
      assert.deepEqual(unknown.sort(), ['r"3,', 'r-2'])
      const later = new Date(Date.now() + 60_000)
      const gone = await store.call<FileJson[]>('reconcile_gone_files', {
        p_provider: 'rec',
        p_provider_file_ids: ['r-2'],
        p_listed_before: later,
        p_apply: true,
      })
      assert.deepEqual(
        gone.map((f) => [f.id, f.deletion_reason, f.provider_deleted]),
        [[c.file?.id, 'reconciled', true]],
      )
    })
  })
}

describe('postgres transport: upgrading a running schema', { skip: !pgOk }, () => {
  it('a database at schema 1 takes migration 2 alone, and answers the batched probe after it', async () => {
    const db = await createTestDatabase('filegate_contract_upgrade')
    const store = createPostgresStore(db.url, { max: 1 })
    try {
      const all = await loadMigrations()
      const migrator = store.migrator as NonNullable<StorePort['migrator']>
      await applyMigrations(
        migrator,
        all.filter((m) => m.version === 1),
      )
      assert.equal(await schemaVersion(store), 1)
      const upgrade = await applyMigrations(migrator, all)
      assert.deepEqual(
        upgrade.applied,
        all.filter((m) => m.version > 1).map((m) => m.name),
      )
      assert.equal(await schemaVersion(store), latestVersion(all))
      assert.deepEqual(await store.call('find_live_duplicates', { p_batch: { probes: [] } }), [])
    } finally {
      await store.close()
      await db.drop()
    }
  })
})

describe('postgres transport: DATABASE_POOL_MAX', { skip: !pgOk }, () => {
  it('answers many concurrent calls over at most that many connections (pipelined beyond it)', async () => {
    const db = await createTestDatabase('filegate_contract_pool')
    const store = createPostgresStore(db.url, { max: 2 })
    // Not application_name 'filegate': this connection only watches the pool's.
    const watcher = postgres(db.url, { max: 1, onnotice: () => {} })
    try {
      await applyMigrations(store.migrator as NonNullable<StorePort['migrator']>, await loadMigrations())
      const claims = await Promise.all(
        Array.from({ length: 64 }, (_, i) =>
          store.call<Claim>('claim_upload', claimArgs({ p_provider: 'pool', p_sha256: sha(`pool-${i}`) })),
        ),
      )
      assert.equal(claims.filter((c) => c.outcome === 'claimed').length, 64)
      const [row] = await watcher<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity
        where datname = current_database() and application_name = 'filegate'`
      assert.ok(row && row.n >= 1 && row.n <= 2, `pool connections: ${row?.n}`)
    } finally {
      await store.close()
      await watcher.end()
      await db.drop()
    }
  })
})
