/**
 * Reading and deleting uploaded files: list filters and cursor pagination, GET one,
 * content, and DELETE (tombstone first, idempotent, provider failures left for the sweeper),
 * all scoped to the caller's tenant.
 */
import assert from 'node:assert/strict'
import { describe, type TestContext, test } from 'node:test'
import {
  as,
  assertProblem,
  filePart,
  freshTenant,
  metric,
  postFile,
  rowsOf,
  setupUploads,
  sha256,
  type UploadContext,
  useFileDatabase,
} from './uploads-support.js'

const database = useFileDatabase()
const setup = (t: TestContext, env: Record<string, string> = {}) => setupUploads(t, database, env)

interface FileJson {
  id: string
  provider: string
  status: string
  sha256: string
  purpose: string
  created_at: string
  deleted_at: string | null
  deletion_reason: string | null
  provider_deleted: boolean
  provider_file_id: string | null
}

async function uploadOne(
  ctx: UploadContext,
  tenant: string,
  content: string,
  provider = 'kimi',
  opts: { purpose?: string; filename?: string } = {},
) {
  const parts: Parameters<typeof postFile>[2] = [['provider', provider]]
  if (opts.purpose) parts.push(['purpose', opts.purpose])
  parts.push(filePart(content, opts.filename ?? 'doc.txt'))
  const res = await postFile(ctx.app, tenant, parts)
  assert.equal(res.statusCode, 201, res.body)
  return res.json() as FileJson
}

const get = (ctx: UploadContext, tenant: string, url: string) =>
  ctx.app.inject({ method: 'GET', url, headers: as(tenant) })
const del = (ctx: UploadContext, tenant: string, id: string) =>
  ctx.app.inject({ method: 'DELETE', url: `/v1/files/${id}`, headers: as(tenant) })

describe('list, get, content, delete', () => {
  test('cursor pagination over 25 files sees each once, newest first; filters narrow the list', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const tenant = freshTenant()
    const uploaded: FileJson[] = []
    for (let i = 0; i < 25; i++) uploaded.push(await uploadOne(ctx, tenant, `file number ${i}`, i % 3 ? 'kimi' : 'glm'))
    // another tenant's files never show up
    await uploadOne(ctx, freshTenant(), 'file number 0')

    const seen: FileJson[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const query: string = `/v1/files?limit=7${cursor ? `&after=${encodeURIComponent(cursor)}` : ''}`
      const res = await get(ctx, tenant, query)
      assert.equal(res.statusCode, 200, res.body)
      const page = res.json() as { data: FileJson[]; has_more: boolean; next_cursor: string | null }
      assert.ok(page.data.length <= 7)
      assert.equal(page.has_more, page.next_cursor !== null)
      seen.push(...page.data)
      cursor = page.next_cursor
      pages++
      assert.ok(pages <= 10, 'pagination terminates')
    } while (cursor)
    assert.equal(pages, 4)
    assert.equal(seen.length, 25)
    assert.equal(new Set(seen.map((f) => f.id)).size, 25, 'each file once')
    assert.deepEqual(new Set(seen.map((f) => f.id)), new Set(uploaded.map((f) => f.id)))
    const order = seen.map((f) => `${f.created_at}|${f.id}`)
    assert.deepEqual(order, [...order].sort().reverse(), 'newest first')

    const glm = (await get(ctx, tenant, '/v1/files?provider=glm&limit=100')).json().data as FileJson[]
    assert.equal(glm.length, 9)
    assert.ok(glm.every((f) => f.provider === 'glm'))
    const one = (await get(ctx, tenant, `/v1/files?sha256=${sha256('file number 4')}`)).json().data as FileJson[]
    assert.deepEqual(
      one.map((f) => f.id),
      [uploaded[4]?.id],
    )
    // Default purposes: Kimi file-extract (16 files), GLM agent (9).
    const byPurpose = (await get(ctx, tenant, '/v1/files?purpose=file-extract&status=completed&limit=100')).json()
      .data as FileJson[]
    assert.equal(byPurpose.length, 16)
    const agent = (await get(ctx, tenant, '/v1/files?purpose=agent&limit=100')).json().data as FileJson[]
    assert.equal(agent.length, 9)

    // deleted files only with include_deleted (or status=deleted)
    const gone = uploaded[0] as FileJson
    assert.equal((await del(ctx, tenant, gone.id)).statusCode, 200)
    const live = (await get(ctx, tenant, '/v1/files?limit=100')).json().data as FileJson[]
    assert.equal(live.length, 24)
    assert.ok(!live.some((f) => f.id === gone.id))
    const all = (await get(ctx, tenant, '/v1/files?limit=100&include_deleted=true')).json().data as FileJson[]
    assert.equal(all.length, 25)
    const deleted = (await get(ctx, tenant, '/v1/files?status=deleted')).json().data as FileJson[]
    assert.deepEqual(
      deleted.map((f) => f.id),
      [gone.id],
    )

    for (const bad of ['limit=0', 'limit=101', 'limit=abc', 'status=bogus', 'sha256=xyz', 'after=not-a-cursor']) {
      assertProblem(await get(ctx, tenant, `/v1/files?${bad}`), 400, 'VALIDATION_FAILED')
    }
  })

  test('DELETE tombstones, deletes at the provider once, and is idempotent', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const tenant = freshTenant()
    const file = await uploadOne(ctx, tenant, 'delete me')
    const labels = { provider: 'kimi', reason: 'manual' }
    const before = await metric(ctx.app, 'filegate_file_deletions_total', labels)
    const first = await del(ctx, tenant, file.id)
    assert.equal(first.statusCode, 200, first.body)
    const tomb = first.json() as FileJson
    assert.equal(tomb.status, 'deleted')
    assert.equal(tomb.deletion_reason, 'manual')
    assert.equal(tomb.provider_deleted, true)
    assert.ok(tomb.deleted_at)
    assert.deepEqual(ctx.fakes.kimi.deletes, [file.provider_file_id])
    assert.equal(await metric(ctx.app, 'filegate_file_deletions_total', labels), before + 1)

    const second = await del(ctx, tenant, file.id)
    assert.equal(second.statusCode, 200)
    assert.deepEqual(second.json(), tomb, 'the same tombstone')
    assert.equal(ctx.fakes.kimi.deletes.length, 1, 'no second provider delete')
    assert.equal(await metric(ctx.app, 'filegate_file_deletions_total', labels), before + 1)
    assert.deepEqual((await get(ctx, tenant, `/v1/files/${file.id}`)).json(), tomb)

    // the same content uploads afresh once the old file is gone
    const again = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('delete me')])
    assert.equal(again.statusCode, 201, again.body)
    assert.notEqual(again.json().id, file.id)
  })

  test('a provider delete failure leaves provider_deleted: false for the sweeper', async (t) => {
    const ctx = await setup(t, { RETRY_MAX_ATTEMPTS: '2' })
    if (!ctx) return
    const tenant = freshTenant()
    const file = await uploadOne(ctx, tenant, 'provider will not let go')
    const labels = { provider: 'kimi', reason: 'manual' }
    const before = await metric(ctx.app, 'filegate_file_deletions_total', labels)
    ctx.fakes.kimi.deleteFailNext(2, 500)
    const res = await del(ctx, tenant, file.id)
    assert.equal(res.statusCode, 200, res.body)
    const tomb = res.json() as FileJson
    assert.equal(tomb.status, 'deleted')
    assert.equal(tomb.deletion_reason, 'manual')
    assert.equal(tomb.provider_deleted, false)
    assert.equal(ctx.fakes.kimi.requests.delete, 2)
    assert.equal(ctx.fakes.kimi.files.size, 1, 'the provider still has it')
    assert.equal(await metric(ctx.app, 'filegate_file_deletions_total', labels), before, 'nothing deleted yet')
    const [row] = await rowsOf(ctx.app, tenant)
    assert.match(String(row?.last_delete_error), /PROVIDER_ERROR/)
    assert.equal(row?.delete_attempts, 1)
    // a second DELETE answers the same pending tombstone
    const again = await del(ctx, tenant, file.id)
    assert.equal(again.statusCode, 200)
    assert.equal(again.json().provider_deleted, false)
    assert.equal(again.json().deleted_at, tomb.deleted_at)
  })

  test('content: streamed for file-extract; 409 CONTENT_UNAVAILABLE without content or once deleted', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const tenant = freshTenant()
    const text = await uploadOne(ctx, tenant, 'extract this text')
    const content = await get(ctx, tenant, `/v1/files/${text.id}/content`)
    assert.equal(content.statusCode, 200, content.body)
    assert.match(content.body, /extract this text/)

    const image = await uploadOne(ctx, tenant, 'not really a png', 'kimi', { purpose: 'image', filename: 'pic.png' })
    const none = await get(ctx, tenant, `/v1/files/${image.id}/content`)
    assertProblem(none, 409, 'CONTENT_UNAVAILABLE')

    assert.equal((await del(ctx, tenant, text.id)).statusCode, 200)
    assertProblem(await get(ctx, tenant, `/v1/files/${text.id}/content`), 409, 'CONTENT_UNAVAILABLE')

    ctx.fakes.kimi.failNext(3, 500, 'upload')
    const failed = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('never uploaded')])
    assert.equal(failed.statusCode, 502)
    const failedRow = (await rowsOf(ctx.app, tenant)).find((r) => r.status === 'failed')
    assert.ok(failedRow)
    assertProblem(await get(ctx, tenant, `/v1/files/${failedRow.id}/content`), 409, 'CONTENT_UNAVAILABLE')
  })

  test("another tenant's file is 404 for GET, content and DELETE", async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const owner = freshTenant('owner')
    const other = freshTenant('other')
    const file = await uploadOne(ctx, owner, 'mine only')
    for (const url of [`/v1/files/${file.id}`, `/v1/files/${file.id}/content`]) {
      assertProblem(await get(ctx, other, url), 404, 'NOT_FOUND')
    }
    assertProblem(await del(ctx, other, file.id), 404, 'NOT_FOUND')
    assert.equal(ctx.fakes.kimi.deletes.length, 0)
    assert.equal((await get(ctx, owner, `/v1/files/${file.id}`)).json().status, 'completed')
    assertProblem(await get(ctx, owner, '/v1/files/not-a-uuid'), 404, 'NOT_FOUND')
    assertProblem(await get(ctx, owner, '/v1/files/00000000-0000-4000-8000-000000000000'), 404, 'NOT_FOUND')
  })

  test('GET /v1/limits: a purpose takes files up to the provider cap, tighter per-extension caps listed apart', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const res = await get(ctx, freshTenant(), '/v1/limits')
    assert.equal(res.statusCode, 200, res.body)
    const glm = (
      res.json() as {
        data: Array<{
          provider: string
          max_file_bytes: number
          purposes: Array<{ purpose: string; max_file_bytes: number; max_bytes_by_extension: Record<string, number> }>
        }>
      }
    ).data.find((p) => p.provider === 'glm')
    const agent = glm?.purposes.find((p) => p.purpose === 'agent')
    // GLM documents 20 MB for documents and 5 MB for images in the same purpose.
    assert.equal(agent?.max_file_bytes, glm?.max_file_bytes)
    assert.equal(agent?.max_file_bytes, 20 * 1024 * 1024)
    assert.equal(agent?.max_bytes_by_extension.png, 5 * 1024 * 1024)
  })
})
