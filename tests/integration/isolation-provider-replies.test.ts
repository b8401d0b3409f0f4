/**
 * A provider reply that breaks the documented file object is the provider's fault, never the
 * client's: 502 PROVIDER_ERROR, the row failed at once (not left `uploading` for the stuck sweep),
 * the copy the upload made deleted at the provider, nothing left in the spool. Also for list and
 * retrieve replies: 502, whatever reads them.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { MalformedReply } from '../fakes/provider-server.js'
import { copy, ensure, keptApp, uploadKept, useKeptDatabase } from './originals-kept-support.js'
import {
  as,
  assertProblem,
  eventually,
  filePart,
  freshTenant,
  postFile,
  rowsOf,
  sha256,
  spoolEntries,
} from './uploads-support.js'

const db = useKeptDatabase()

const addressable: MalformedReply[] = ['id-nul', 'id-too-long', 'bytes-negative', 'bytes-not-a-number']

describe("a malformed provider reply is the provider's fault", () => {
  test('uploads answered with a malformed file object: 502, the row failed at once, the copy deleted', async (t) => {
    const ctx = await keptApp(t, db())
    for (const how of [...addressable, 'no-id', 'not-an-object'] as MalformedReply[]) {
      for (const streamed of [false, true]) {
        const tenant = freshTenant(`reply-${how}`)
        const content = `a reply ${how} ${streamed}`
        ctx.fakes.kimi.malformedNext(1, how)
        const res = await postFile(
          ctx.app,
          tenant,
          [['provider', 'kimi'], filePart(content)],
          streamed ? { 'x-content-sha256': sha256(content) } : {},
        )
        const problem = assertProblem(res, 502, 'PROVIDER_ERROR')
        assert.equal(problem.provider, 'kimi', how)
        assert.match(String(problem.detail), /unexpected response/, how)
        const rows = await rowsOf(ctx.app, tenant)
        assert.equal(rows.length, 1, how)
        assert.ok(['failed', 'deleted'].includes(rows[0]?.status as string), `${how}: ${rows[0]?.status}`)
        if (addressable.includes(how)) {
          await eventually(`${how}: the copy is deleted`, () => ctx.fakes.kimi.files.size === 0)
        }
        ctx.fakes.kimi.files.clear() // a copy without an id cannot be found again; start the next case clean
        assert.deepEqual(await spoolEntries(ctx.spoolDir), [], how)
        // The same content goes through once the provider answers as documented.
        const again = await postFile(
          ctx.app,
          tenant,
          [['provider', 'kimi'], filePart(content)],
          streamed ? { 'x-content-sha256': sha256(content) } : {},
        )
        assert.equal(again.statusCode, 201, `${how}: ${again.body}`)
        ctx.fakes.kimi.files.clear()
      }
    }
  })

  test('a copy that cannot be deleted at once is recorded on a tombstone for the sweeps', async (t) => {
    const ctx = await keptApp(t, db())
    const tenant = freshTenant('reply-stray')
    ctx.fakes.kimi.malformedNext(1, 'bytes-negative')
    ctx.fakes.kimi.deleteFailNext(100, 500)
    assertProblem(await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('stray')]), 502, 'PROVIDER_ERROR')
    const [copyId] = [...ctx.fakes.kimi.files.keys()]
    assert.ok(copyId, 'the provider kept the copy (its deletes fail)')
    const rows = await rowsOf(ctx.app, tenant)
    assert.equal(rows.length, 1)
    assert.equal(rows[0]?.status, 'deleted')
    assert.equal(rows[0]?.deletion_reason, 'orphaned')
    assert.equal(rows[0]?.provider_file_id, copyId, 'the copy is recorded for the provider_deletes sweep')
    assert.equal(rows[0]?.provider_deleted, false)
  })

  test('a malformed retrieve (ensure) or list reply is 502 PROVIDER_ERROR too', async (t) => {
    const ctx = await keptApp(t, db())
    const tenant = freshTenant('reply-reads')
    const file = await uploadKept(ctx, tenant, Buffer.from('reads of a broken provider'))
    ctx.fakes.kimi.malformedNext(1, 'id-nul', 'retrieve')
    assertProblem(await ensure(ctx.app, as(tenant), file.id), 502, 'PROVIDER_ERROR')
    // GLM has no retrieve: ensure finds the file by listing.
    const onGlm = await copy(ctx.app, as(tenant), file.id, { provider: 'glm' })
    assert.equal(onGlm.statusCode, 201, onGlm.body)
    ctx.fakes.glm.malformedNext(1, 'bytes-not-a-number', 'list')
    assertProblem(await ensure(ctx.app, as(tenant), (onGlm.json() as { id: string }).id), 502, 'PROVIDER_ERROR')
    // Answered as documented again, both are found.
    assert.equal((await ensure(ctx.app, as(tenant), file.id)).statusCode, 200)
  })
})
