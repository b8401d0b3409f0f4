/**
 * POST /v1/files/{id}/copies: the same content at another provider, from the kept original, over
 * the real app, Postgres, fake providers on loopback and a real originals store (a local directory;
 * one case on s3rver).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import type { FileRow } from '../../src/domain/file-record.js'
import { postgresSuiteSkip, requirePostgres } from '../helper.js'
import { content, copy, keptApp, originalRow, uploadKept, useKeptDatabase } from './originals-kept-support.js'
import {
  as,
  assertProblem,
  filePart,
  freshTenant,
  metric,
  postFile,
  rowsOf,
  sha256,
  spoolEntries,
} from './uploads-support.js'

const db = useKeptDatabase()
const skip = await postgresSuiteSkip()

describe('POST /v1/files/{id}/copies', { skip }, () => {
  it('puts the same content at another provider without the client sending it: 201, then 200 deduplicated', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db())
    const tenant = freshTenant('copy')
    const bytes = content('copy me')
    const source = await uploadKept(ctx, tenant, bytes, [
      ['provider', 'kimi'],
      ['metadata', '{"conversation":"c-1"}'],
    ])
    assert.equal(source.provider, 'kimi')

    const res = await copy(ctx.app, as(tenant), source.id, { provider: 'glm' })
    assert.equal(res.statusCode, 201, res.body)
    const made = res.json() as FileRow & { deduplicated: boolean }
    assert.notEqual(made.id, source.id)
    assert.equal(made.provider, 'glm')
    assert.equal(made.deduplicated, false)
    assert.equal(made.status, 'completed')
    assert.equal(made.sha256, source.sha256)
    assert.equal(made.bytes, bytes.length)
    assert.equal(made.filename, source.filename)
    assert.equal(made.mime_type, source.mime_type)
    assert.deepEqual(made.metadata, { conversation: 'c-1' })
    assert.equal(made.original_stored, true, 'the copy shares the kept original')
    assert.equal(ctx.fakes.glm.uploads.length, 1)
    assert.equal(ctx.fakes.glm.uploads[0]?.sha256, sha256(bytes), 'the provider got the original bytes')
    assert.equal(ctx.fakes.glm.uploads[0]?.id, made.provider_file_id)
    assert.equal(await metric(ctx.app, 'filegate_copies_total', { provider: 'glm', outcome: 'created' }), 1)

    const again = await copy(ctx.app, as(tenant), source.id, { provider: 'glm' })
    assert.equal(again.statusCode, 200, again.body)
    const dup = again.json() as FileRow & { deduplicated: boolean }
    assert.equal(dup.deduplicated, true)
    assert.equal(dup.id, made.id)
    assert.equal(ctx.fakes.glm.uploads.length, 1, 'no second upload')
    assert.equal(await metric(ctx.app, 'filegate_copies_total', { provider: 'glm', outcome: 'deduplicated' }), 1)

    // One original for both rows; nothing left in the spool.
    assert.ok((await originalRow(ctx, tenant, source.sha256))?.stored_at)
    assert.deepEqual(await spoolEntries(ctx.spoolDir), [])
  })

  it('applies the target provider limits: 413 and 415, nothing sent', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db(), { env: { GLM_MAX_FILE_BYTES: '64' } })
    const tenant = freshTenant('copy-limits')
    const source = await uploadKept(ctx, tenant, Buffer.alloc(200, 'a'))

    const tooLarge = assertProblem(
      await copy(ctx.app, as(tenant), source.id, { provider: 'glm' }),
      413,
      'FILE_TOO_LARGE',
    )
    assert.equal(tooLarge.provider, 'glm')
    // GLM's file-extract takes pdf, docx, ... but not txt (docs.bigmodel.cn 上传文件).
    const small = await uploadKept(ctx, tenant, Buffer.from('small text'))
    assertProblem(
      await copy(ctx.app, as(tenant), small.id, { provider: 'glm', purpose: 'file-extract' }),
      415,
      'UNSUPPORTED_FILE_TYPE',
    )
    assertProblem(
      await copy(ctx.app, as(tenant), small.id, { provider: 'glm', purpose: 'no-such-purpose' }),
      400,
      'UNSUPPORTED_PURPOSE',
    )
    assertProblem(await copy(ctx.app, as(tenant), small.id, { provider: 'nope' }), 400, 'UNKNOWN_PROVIDER')
    assertProblem(await copy(ctx.app, as(tenant), small.id, {}), 400, 'VALIDATION_FAILED')
    assert.equal(ctx.fakes.glm.uploads.length, 0)
    assert.equal((await rowsOf(ctx.app, tenant)).filter((r) => r.provider === 'glm').length, 0, 'no row at glm')
    // Refused while planning (type, purpose, provider name): requests refused, not copies that failed.
    assert.equal(await metric(ctx.app, 'filegate_copies_total', { provider: 'glm', outcome: 'failed' }), 1)
  })

  it('answers 409 ORIGINAL_UNAVAILABLE without an original, 404 for another tenant, and for a deleted file', async (t) => {
    if (!(await requirePostgres(t))) return
    const off = await keptApp(t, db(), { off: true })
    const tenant = freshTenant('copy-none')
    const plain = await postFile(off.app, tenant, [['provider', 'kimi'], filePart('kept nowhere')])
    assert.equal(plain.statusCode, 201)
    const id = (plain.json() as FileRow).id
    assertProblem(await copy(off.app, as(tenant), id, { provider: 'glm' }), 409, 'ORIGINAL_UNAVAILABLE')

    // Originals on, but this row's content was never kept.
    const on = await keptApp(t, db())
    assertProblem(await copy(on.app, as(tenant), id, { provider: 'glm' }), 409, 'ORIGINAL_UNAVAILABLE')

    const kept = await uploadKept(on, tenant, content('mine'))
    assertProblem(await copy(on.app, as(freshTenant('other')), kept.id, { provider: 'glm' }), 404, 'NOT_FOUND')
    assert.equal(
      (await on.app.inject({ method: 'DELETE', url: `/v1/files/${kept.id}`, headers: as(tenant) })).statusCode,
      200,
    )
    assertProblem(await copy(on.app, as(tenant), kept.id, { provider: 'glm' }), 409, 'ORIGINAL_UNAVAILABLE')
    assert.equal(on.fakes.glm.uploads.length + off.fakes.glm.uploads.length, 0)
  })

  it('never sends a corrupt or missing original: 409, nothing at the target', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db())
    const tenant = freshTenant('copy-corrupt')
    const bytes = content('to be damaged')
    const source = await uploadKept(ctx, tenant, bytes)
    // Same length, other bytes: only the hash can tell.
    const damaged = Buffer.from(bytes)
    damaged[0] = damaged[0] === 0x41 ? 0x42 : 0x41
    await ctx.corrupt(tenant, source.sha256, damaged)
    const body = assertProblem(
      await copy(ctx.app, as(tenant), source.id, { provider: 'glm' }),
      409,
      'ORIGINAL_UNAVAILABLE',
    )
    assert.match(String(body.detail), /SHA-256/)
    assert.equal(ctx.fakes.glm.uploads.length, 0, 'nothing was sent')
    assert.equal(ctx.fakes.glm.requests.upload, 0, 'not even an attempt')
    assert.equal((await rowsOf(ctx.app, tenant)).length, 1, 'no row for the copy')

    await ctx.app.originals?.remove({ tenant, sha256: source.sha256 })
    assertProblem(await copy(ctx.app, as(tenant), source.id, { provider: 'glm' }), 409, 'ORIGINAL_UNAVAILABLE')
    assert.equal(ctx.fakes.glm.requests.upload, 0)
  })

  it('copies from an original kept on an S3-protocol server (s3rver)', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, db(), { kind: 's3' })
    const tenant = freshTenant('copy-s3')
    // Larger than the in-memory spool: the copy is spooled to a file.
    const bytes = Buffer.from(randomBytes(150 * 1024).toString('hex'))
    const source = await uploadKept(ctx, tenant, bytes)
    const ok = await copy(ctx.app, as(tenant), source.id, { provider: 'glm' })
    assert.equal(ok.statusCode, 201, ok.body)
    assert.equal(ctx.fakes.glm.uploads.at(-1)?.sha256, sha256(bytes))
    assert.equal(ctx.fakes.glm.uploads.at(-1)?.bytes, bytes.length)
    assert.deepEqual(await spoolEntries(ctx.spoolDir), [])
  })
})
