/**
 * The SQL of the originals job and of healing, through the typed queries, on PGlite and the
 * machine's Postgres: an original is claimed for deletion only when nothing of its tenant uses it,
 * a delete and an upload of the same content never both win (reference_original answers `deleting`
 * while a delete holds it), an object no row knows is held the same way, and heal claims exclude
 * each other.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import type { StorePort } from '../../src/store/port.js'
import {
  claimHeal,
  claimOriginalDeletes,
  claimUnknownOriginal,
  claimUpload,
  completeHeal,
  completeUpload,
  findOriginalDeletes,
  finishOriginalDelete,
  markOriginalStored,
  markProviderDeleted,
  reconcileVanishedFile,
  referenceOriginal,
  releaseHeal,
  releaseOriginalDelete,
  softDeleteFile,
  unknownOriginals,
} from '../../src/store/queries.js'
import { isCI, postgresAvailable } from '../helper.js'
import { openPglite, openPostgres } from './store-harness.js'

const pgOk = await postgresAvailable()
if (!pgOk && isCI) throw new Error('CI=true but Postgres is not reachable')

const transports = [
  { name: 'pglite', skip: false, open: openPglite },
  { name: 'postgres', skip: !pgOk, open: () => openPostgres('filegate_contract_orig') },
]

let seq = 0
const sha = () => (++seq).toString(16).padStart(8, '0').repeat(8)

for (const transport of transports) {
  describe(`originals and heal SQL: ${transport.name}`, { skip: transport.skip }, () => {
    let store: StorePort
    let close: () => Promise<void>
    before(async () => {
      ;({ store, close } = await transport.open())
    })
    after(() => close())

    /** A completed live row of (tenant, sha256) at kimi. */
    async function liveRow(tenant: string, sha256: string) {
      const claim = await claimUpload(store, {
        tenantId: tenant,
        provider: 'kimi',
        purpose: 'file-extract',
        sha256,
        bytes: 10,
        filename: 'a.txt',
        mimeType: 'text/plain',
        metadata: {},
        expiresAt: undefined,
        stuckMinutes: 30,
        maxFiles: null,
        maxBytes: null,
        maxPurposeFiles: undefined,
        owner: 'test',
        leaseSeconds: 60,
        tenantMaxFiles: null,
        tenantMaxBytes: null,
      })
      assert.equal(claim.outcome, 'claimed')
      if (claim.outcome !== 'claimed') throw new Error('not claimed')
      const ref = { id: claim.file.id, claimToken: claim.claim_token }
      const done = await completeUpload(store, ref, {
        providerFileId: `file-${randomUUID()}`,
        bytes: 10,
        originalStored: true,
      })
      assert.equal(done.outcome, 'completed')
      return done.file
    }

    async function deleteRow(id: string) {
      await softDeleteFile(store, id, 'manual')
      await markProviderDeleted(store, id)
    }

    const deletes = (graceSeconds = 0) => claimOriginalDeletes(store, { graceSeconds, leaseSeconds: 600, limit: 1000 })

    it('claims an original only when no live row and no owed provider delete uses it', async () => {
      const tenant = `t-${randomUUID().slice(0, 8)}`
      const key = { tenantId: tenant, sha256: sha() }
      assert.deepEqual(await referenceOriginal(store, key, 10), { outcome: 'referenced', stored: false })
      assert.equal(await markOriginalStored(store, key), true)
      assert.deepEqual(await referenceOriginal(store, key, 10), { outcome: 'referenced', stored: true })
      const row = await liveRow(tenant, key.sha256)
      const mine = async (g = 0) => (await deletes(g)).filter((o) => o.tenant_id === tenant)
      assert.deepEqual(await mine(), [], 'a live row uses it')
      await softDeleteFile(store, row.id, 'manual')
      assert.deepEqual(await mine(), [], 'its provider delete is still owed')
      await markProviderDeleted(store, row.id)
      assert.deepEqual(await mine(3600), [], 'within the grace')
      const found = (await findOriginalDeletes(store, { graceSeconds: 0, limit: 1000 })).filter(
        (o) => o.tenant_id === tenant,
      )
      assert.equal(found.length, 1, 'the dry run sees it')
      const claimed = await mine()
      assert.equal(claimed.length, 1, 'the dry run did not claim it')
      assert.equal(claimed[0]?.stored, true)
      assert.deepEqual(await mine(), [], 'held by the first claim')
      assert.equal(await finishOriginalDelete(store, key), true)
      assert.deepEqual(await unknownOriginals(store, [{ tenant_id: tenant, sha256: key.sha256 }]), [
        { tenant_id: tenant, sha256: key.sha256 },
      ])
    })

    it('makes an upload wait while a delete holds the original, then start afresh', async () => {
      const tenant = `t-${randomUUID().slice(0, 8)}`
      const key = { tenantId: tenant, sha256: sha() }
      await referenceOriginal(store, key, 10)
      await markOriginalStored(store, key)
      await deleteRow((await liveRow(tenant, key.sha256)).id)
      assert.equal((await deletes()).filter((o) => o.tenant_id === tenant).length, 1)
      const during = await referenceOriginal(store, key, 10)
      assert.equal(during.outcome, 'deleting')
      assert.equal(await markOriginalStored(store, key), false, 'not while a delete holds it')
      assert.equal(await finishOriginalDelete(store, key), true)
      assert.deepEqual(await referenceOriginal(store, key, 10), { outcome: 'referenced', stored: false })

      // A delete whose lease ran out: the upload takes the original over (it may be gone: not stored),
      // and the late delete's finish leaves the row alone.
      await markOriginalStored(store, key)
      await referenceOriginal(store, key, 10)
      const expired = await claimOriginalDeletes(store, { graceSeconds: 0, leaseSeconds: 0, limit: 1000 })
      assert.equal(expired.filter((o) => o.tenant_id === tenant).length, 1)
      assert.deepEqual(await referenceOriginal(store, key, 10), { outcome: 'referenced', stored: false })
      assert.equal(await finishOriginalDelete(store, key), false)

      // A failed removal lets go at once.
      await markOriginalStored(store, key)
      assert.equal((await deletes()).filter((o) => o.tenant_id === tenant).length, 1)
      assert.equal(await releaseOriginalDelete(store, key), true)
      assert.deepEqual(await referenceOriginal(store, key, 10), { outcome: 'referenced', stored: true })
    })

    it('holds an object no row knows like a claimed delete', async () => {
      const tenant = `t-${randomUUID().slice(0, 8)}`
      const key = { tenantId: tenant, sha256: sha() }
      assert.equal(await claimUnknownOriginal(store, key, { bytes: 5, leaseSeconds: 600 }), true)
      assert.equal(await claimUnknownOriginal(store, key, { bytes: 5, leaseSeconds: 600 }), false, 'known now')
      assert.equal((await referenceOriginal(store, key, 5)).outcome, 'deleting')
      assert.equal(await finishOriginalDelete(store, key), true)
      assert.deepEqual(await referenceOriginal(store, key, 5), { outcome: 'referenced', stored: false })
      assert.equal(await claimUnknownOriginal(store, key, { bytes: 5, leaseSeconds: 600 }), false, 'a row knows it')
    })

    it('lets one caller at a time heal a file, and records the replaced provider id', async () => {
      const tenant = `t-${randomUUID().slice(0, 8)}`
      const row = await liveRow(tenant, sha())
      const first = await claimHeal(store, tenant, row.id, 60)
      assert.equal(first.outcome, 'claimed')
      if (first.outcome !== 'claimed') return
      assert.equal((await claimHeal(store, tenant, row.id, 60)).outcome, 'in_progress')
      assert.deepEqual(await claimHeal(store, 'someone-else', row.id, 60), { outcome: 'not_live', file: null })
      const healed = await completeHeal(
        store,
        { id: row.id, healToken: first.heal_token },
        { providerFileId: 'file-new' },
      )
      assert.equal(healed.outcome, 'healed')
      assert.equal(healed.file.provider_file_id, 'file-new')
      assert.equal((healed.file as unknown as Record<string, unknown>).heal_token, undefined, 'kept out of the row')
      // The same completion again (its first answer lost in a database cut) answers the same.
      const repeated = await completeHeal(
        store,
        { id: row.id, healToken: first.heal_token },
        { providerFileId: 'file-new' },
      )
      assert.equal(repeated.outcome, 'healed', 'the live copy is not made an orphan')
      assert.equal(repeated.file.provider_file_id, 'file-new')
      // A second completion with the spent token is an orphan.
      const late = await completeHeal(
        store,
        { id: row.id, healToken: first.heal_token },
        { providerFileId: 'file-late' },
      )
      assert.equal(late.outcome, 'lost')
      if (late.outcome === 'lost') assert.equal(late.orphan.deletion_reason, 'orphaned')

      const again = await claimHeal(store, tenant, row.id, 60)
      assert.equal(again.outcome, 'claimed')
      if (again.outcome !== 'claimed') return
      assert.equal(
        (await releaseHeal(store, { id: row.id, healToken: again.heal_token }))?.provider_file_id,
        'file-new',
      )
      const last = await claimHeal(store, tenant, row.id, 60)
      if (last.outcome !== 'claimed') return assert.fail(last.outcome)
      const tomb = await reconcileVanishedFile(store, { id: row.id, healToken: last.heal_token })
      assert.equal(tomb.deletion_reason, 'reconciled')
      assert.equal(tomb.provider_deleted, true)
      assert.equal((await claimHeal(store, tenant, row.id, 60)).outcome, 'not_live')
    })
  })
}
