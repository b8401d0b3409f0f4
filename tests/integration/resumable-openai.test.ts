/**
 * OpenAI Uploads on the facade with the official `openai` SDK (uploads.create, uploads.parts.create,
 * uploads.complete, uploads.cancel) against the running service on Postgres and fake providers:
 * parts in any order and concurrently, the bytes intact at the provider, N concurrent and retried
 * completes making one provider upload, dedup with POST /v1/files, size and md5 mismatches, cancel,
 * expiry, limits at creation, another tenant's 404, and nothing staged left behind.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import OpenAI, { toFile } from 'openai'
import { auth, multipart, postgresSuiteSkip, testKeys } from '../helper.js'
import {
  content,
  md5,
  metricValue,
  resumableRows,
  type Served,
  serve,
  sha256,
  stagedSegments,
  suiteDatabase,
} from './resumable-support.js'

const skip = await postgresSuiteSkip()
const db = suiteDatabase(skip)

const clientOf = (s: Served, key: string, provider = 'kimi') =>
  new OpenAI({ apiKey: key, baseURL: `${s.base}/providers/${provider}/v1`, maxRetries: 0 })

/** The error a call was expected to fail with. */
const failureOf = (call: Promise<unknown>) =>
  call.then(
    () => assert.fail('expected an error'),
    (e: unknown) => e as { status: number; error?: { code?: string; type?: string } },
  )

/** Creates an Upload and adds `bytes` as parts of `partBytes`, all at once; the part ids in file order. */
async function staged(openai: OpenAI, bytes: Buffer, partBytes: number, filename = 'doc.txt') {
  const upload = await openai.uploads.create({
    bytes: bytes.length,
    filename,
    mime_type: 'text/plain',
    purpose: 'file-extract' as never,
  })
  const chunks: Buffer[] = []
  for (let i = 0; i < bytes.length; i += partBytes) chunks.push(bytes.subarray(i, i + partBytes))
  // Sent concurrently, last first: the order is the complete call's.
  const parts = await Promise.all(
    chunks
      .map((chunk, i) =>
        openai.uploads.parts.create(upload.id, { data: chunk.length ? new File([chunk], `p${i}`) : new File([], 'p') }),
      )
      .reverse(),
  )
  return { upload, partIds: parts.reverse().map((p) => p.id) }
}

describe('OpenAI Uploads on the facade', { skip }, () => {
  it('create, parts in any order, complete with md5: the bytes intact at the provider, the File answered', async (t) => {
    const s = await serve(t, {}, db())
    const openai = clientOf(s, testKeys.alice)
    const bytes = content(300 * 1024 + 11, 'openai-basic')
    const { upload, partIds } = await staged(openai, bytes, 100 * 1024)
    assert.equal(upload.object, 'upload')
    assert.equal(upload.status, 'pending')
    assert.match(upload.id, /^upload_[0-9a-f]{32}$/)
    assert.ok(upload.expires_at - upload.created_at <= 3600, 'an hour at most')
    const done = await openai.uploads.complete(upload.id, { part_ids: partIds, md5: md5(bytes) })
    assert.equal(done.status, 'completed')
    assert.equal(done.file?.bytes, bytes.length)
    const [sent] = s.fakes.kimi.uploads
    assert.equal(sent?.sha256, sha256(bytes))
    assert.equal(done.file?.id, sent?.id, "the File's id is the provider's")
    // A retried complete answers the same File, with no second provider upload.
    const again = await openai.uploads.complete(upload.id, { part_ids: partIds })
    assert.equal(again.file?.id, done.file?.id)
    assert.equal(s.fakes.kimi.uploads.length, 1)
    assert.deepEqual(await stagedSegments(s.tmpDir), [])
    assert.equal(
      await metricValue(s.app, 'filegate_resumable_uploads_total', { protocol: 'openai', outcome: 'completed' }),
      1,
    )
    const read = await fetch(`${s.base}/providers/kimi/v1/uploads/${upload.id}`, { headers: auth(testKeys.alice) })
    const body = (await read.json()) as { status: string; parts: unknown[]; file: { id: string } }
    assert.equal(body.status, 'completed')
    assert.equal(body.file.id, done.file?.id)
  })

  it('N concurrent completes make one provider upload and answer the same File', async (t) => {
    const s = await serve(t, {}, db())
    const openai = clientOf(s, testKeys.alice)
    const bytes = content(200 * 1024, 'openai-concurrent')
    const { upload, partIds } = await staged(openai, bytes, 64 * 1024)
    s.fakes.kimi.latencyMs = 200
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => openai.uploads.complete(upload.id, { part_ids: partIds })),
    )
    assert.equal(s.fakes.kimi.uploads.length, 1, 'one provider upload')
    assert.equal(new Set(answers.map((a) => a.file?.id)).size, 1)
    assert.ok(answers.every((a) => a.status === 'completed'))
  })

  it('GET lists the parts received; parts whose total is not bytes, or a wrong md5, are 400 and the Upload stays pending', async (t) => {
    const s = await serve(t, {}, db())
    const openai = clientOf(s, testKeys.alice)
    const bytes = content(150 * 1024, 'openai-mismatch')
    const { upload, partIds } = await staged(openai, bytes, 50 * 1024)
    const listed = await fetch(`${s.base}/providers/kimi/v1/uploads/${upload.id}`, { headers: auth(testKeys.alice) })
    const view = (await listed.json()) as { parts: Array<{ id: string; bytes: number }> }
    assert.deepEqual(new Set(view.parts.map((p) => p.id)), new Set(partIds))
    assert.ok(view.parts.every((p) => p.bytes === 50 * 1024))
    const short = await failureOf(openai.uploads.complete(upload.id, { part_ids: partIds.slice(1) }))
    assert.equal(short.status, 400)
    const wrong = await failureOf(openai.uploads.complete(upload.id, { part_ids: partIds, md5: md5(Buffer.from('x')) }))
    assert.equal(wrong.status, 400)
    assert.equal(wrong.error?.code, 'checksum_mismatch')
    const swapped = await failureOf(
      openai.uploads.complete(upload.id, {
        part_ids: [partIds[1], partIds[0], partIds[2]] as string[],
        md5: md5(bytes),
      }),
    )
    assert.equal(swapped.status, 400, 'the md5 follows the order of part_ids')
    assert.equal(s.fakes.kimi.uploads.length, 0, 'no provider heard of it')
    const done = await openai.uploads.complete(upload.id, { part_ids: partIds, md5: md5(bytes) })
    assert.equal(done.status, 'completed')
    assert.equal(s.fakes.kimi.uploads[0]?.sha256, sha256(bytes))
  })

  it('dedup holds between POST /v1/files and an Upload', async (t) => {
    const s = await serve(t, {}, db())
    const openai = clientOf(s, testKeys.alice)
    const bytes = content(80 * 1024, 'openai-dedup')
    const form = multipart([
      ['provider', 'kimi'],
      ['purpose', 'file-extract'],
      ['file', { filename: 'a.txt', content: bytes }],
    ])
    const posted = await s.app.inject({
      method: 'POST',
      url: '/v1/files',
      headers: { ...auth(testKeys.alice), ...form.headers },
      payload: form.payload,
    })
    assert.equal(posted.statusCode, 201)
    const { upload, partIds } = await staged(openai, bytes, 40 * 1024)
    const done = await openai.uploads.complete(upload.id, { part_ids: partIds })
    assert.equal(done.file?.id, posted.json().provider_file_id)
    assert.equal(s.fakes.kimi.uploads.length, 1)
    assert.equal(
      await metricValue(s.app, 'filegate_resumable_uploads_total', { protocol: 'openai', outcome: 'deduplicated' }),
      1,
    )
  })

  it('cancel: status cancelled, the parts removed, no part accepted after', async (t) => {
    const s = await serve(t, {}, db())
    const openai = clientOf(s, testKeys.alice)
    const { upload } = await staged(openai, content(100 * 1024, 'openai-cancel'), 60 * 1024)
    assert.equal((await stagedSegments(s.tmpDir)).length, 2)
    const cancelled = await openai.uploads.cancel(upload.id)
    assert.equal(cancelled.status, 'cancelled')
    assert.deepEqual(await stagedSegments(s.tmpDir), [])
    const late = await failureOf(openai.uploads.parts.create(upload.id, { data: await toFile(Buffer.from('x'), 'p') }))
    assert.equal(late.status, 410)
    const complete = await failureOf(openai.uploads.complete(upload.id, { part_ids: ['part_0'] }))
    assert.ok([409, 410].includes(complete.status))
  })

  it('refuses at create: over the provider cap (413, OpenAI error shape), over 8 GB always', async (t) => {
    const s = await serve(t, {}, db())
    const openai = clientOf(s, testKeys.alice, 'glm')
    const big = await failureOf(
      openai.uploads.create({
        bytes: 20 * 1024 * 1024 + 1,
        filename: 'a.txt',
        mime_type: 'text/plain',
        purpose: 'agent' as never,
      }),
    )
    assert.equal(big.status, 413)
    assert.equal(big.error?.type, 'invalid_request_error')
    assert.equal(big.error?.code, 'file_too_large')
    const huge = await failureOf(
      clientOf(s, testKeys.alice).uploads.create({
        bytes: 8 * 1024 ** 3 + 1,
        filename: 'a.txt',
        mime_type: 'text/plain',
        purpose: 'file-extract' as never,
      }),
    )
    assert.equal(huge.status, 413)
  })

  it("another tenant's Upload is 404 (parts, complete, cancel, get); a part past the declared bytes is 413", async (t) => {
    const s = await serve(t, {}, db())
    const { upload, partIds } = await staged(clientOf(s, testKeys.alice), content(1000, 'openai-tenant'), 1000)
    const bob = clientOf(s, testKeys.bob)
    assert.equal(
      (await failureOf(bob.uploads.parts.create(upload.id, { data: await toFile(Buffer.from('x'), 'p') }))).status,
      404,
    )
    assert.equal((await failureOf(bob.uploads.complete(upload.id, { part_ids: partIds }))).status, 404)
    assert.equal((await failureOf(bob.uploads.cancel(upload.id))).status, 404)
    const read = await fetch(`${s.base}/providers/kimi/v1/uploads/${upload.id}`, { headers: auth(testKeys.bob) })
    assert.equal(read.status, 404)
    // At another provider's path it is not found either.
    const elsewhere = await fetch(`${s.base}/providers/glm/v1/uploads/${upload.id}`, { headers: auth(testKeys.alice) })
    assert.equal(elsewhere.status, 404)
    // A part past the declared bytes is refused (413) and not recorded.
    const over = await failureOf(
      clientOf(s, testKeys.alice).uploads.parts.create(upload.id, { data: await toFile(Buffer.alloc(10), 'p') }),
    )
    assert.equal(over.status, 413)
  })

  it('an Upload expires (status expired) and the sweep removes its parts and, past its expiry, its row', async (t) => {
    const s = await serve(t, { RESUMABLE_TTL_SECONDS: '1' })
    const openai = clientOf(s, testKeys.alice)
    const { upload, partIds } = await staged(openai, content(10 * 1024, 'openai-expire'), 5 * 1024)
    assert.equal(upload.expires_at - upload.created_at, 1)
    await new Promise((r) => setTimeout(r, 1100))
    const read = await fetch(`${s.base}/providers/kimi/v1/uploads/${upload.id}`, { headers: auth(testKeys.alice) })
    assert.equal(((await read.json()) as { status: string }).status, 'expired')
    assert.equal((await failureOf(openai.uploads.complete(upload.id, { part_ids: partIds }))).status, 410)
    await s.app.cleanup.run({ dryRun: false, jobs: ['resumable'] })
    assert.deepEqual(await stagedSegments(s.tmpDir), [])
    assert.deepEqual(await resumableRows(s.db), { uploads: 0, segments: 0 })
    assert.equal(
      await metricValue(s.app, 'filegate_resumable_uploads_total', { protocol: 'openai', outcome: 'expired' }),
      1,
    )
  })

  it('a failed provider upload leaves the Upload pending, and a retried complete succeeds', async (t) => {
    const s = await serve(t, { RETRY_MAX_ATTEMPTS: '1' }, db())
    const openai = clientOf(s, testKeys.alice)
    const bytes = content(70 * 1024, 'openai-retry')
    const { upload, partIds } = await staged(openai, bytes, 70 * 1024)
    s.fakes.kimi.failNext(1, 500, 'upload')
    const failed = await failureOf(openai.uploads.complete(upload.id, { part_ids: partIds }))
    assert.equal(failed.status, 502)
    const done = await openai.uploads.complete(upload.id, { part_ids: partIds })
    assert.equal(done.status, 'completed')
    assert.equal(s.fakes.kimi.uploads.at(-1)?.sha256, sha256(bytes))
  })
})
