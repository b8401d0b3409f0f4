/**
 * One bound for a TTL wherever a client may name one: `expires_in` on an upload and on a copy (at
 * most 10 years, maxExpiresInSeconds), the facade's `expires_after[seconds]` within OpenAI's own
 * narrower range. Past it: 400 VALIDATION_FAILED, never a 500 from a date the store cannot hold,
 * never an expiry centuries away; nothing is made.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { maxExpiresInSeconds } from '../../src/schemas.js'
import { multipart, postgresSuiteSkip, requirePostgres, testKeys } from '../helper.js'
import { copy, keptApp, uploadKept, useKeptDatabase } from './originals-kept-support.js'
import { as, assertProblem, filePart, freshTenant, postFile, rowsOf } from './uploads-support.js'

const db = useKeptDatabase()
const skip = await postgresSuiteSkip()

/** Past the date range (1e308, 2^53 - 1, 8.64e12 s), a thousand years, one second past the bound. */
const pastTheBound = [1e308, 9007199254740991, 8640000000000, 31536000000, maxExpiresInSeconds + 1]

describe('expires_in: one bound on every route', { skip }, () => {
  it('POST /v1/files/{id}/copies: past the bound is 400 and makes nothing; the bound itself is taken', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db())
    const tenant = freshTenant('ttl-copy')
    const source = await uploadKept(ctx, tenant, Buffer.from('a copy with a ttl'), [['provider', 'kimi']])
    for (const expires_in of pastTheBound) {
      const res = await copy(ctx.app, as(tenant), source.id, { provider: 'glm', expires_in })
      assertProblem(res, 400, 'VALIDATION_FAILED')
    }
    assert.equal(ctx.fakes.glm.uploads.length, 0, 'nothing reached the target provider')
    assert.equal((await rowsOf(ctx.app, tenant)).length, 1, 'no row was made')

    const atBound = await copy(ctx.app, as(tenant), source.id, { provider: 'glm', expires_in: maxExpiresInSeconds })
    assert.equal(atBound.statusCode, 201, atBound.body)
    const expiresAt = Date.parse((atBound.json() as { expires_at: string }).expires_at)
    assert.ok(Math.abs(expiresAt - (Date.now() + maxExpiresInSeconds * 1000)) < 60_000, 'ten years from now')
  })

  it('the upload form and the facade: past their bound is 400, nothing uploaded', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db())
    const tenant = freshTenant('ttl-form')
    for (const value of pastTheBound) {
      const res = await postFile(ctx.app, tenant, [
        ['provider', 'kimi'],
        ['expires_in', String(value)],
        filePart('ttl form'),
      ])
      assertProblem(res, 400, 'VALIDATION_FAILED')
    }
    const facade = multipart([
      ['purpose', 'file-extract'],
      ['expires_after[anchor]', 'created_at'],
      ['expires_after[seconds]', '2592001'],
      ['file', { filename: 'doc.txt', content: 'ttl facade', type: 'text/plain' }],
    ])
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/providers/kimi/v1/files',
      headers: { authorization: `Bearer ${testKeys.alice}`, ...facade.headers },
      payload: facade.payload,
    })
    assert.equal(res.statusCode, 400, res.body)
    assert.equal(ctx.fakes.kimi.uploads.length, 0, 'nothing reached the provider')
  })
})
