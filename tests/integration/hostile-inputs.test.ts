/**
 * Bad input is the client's 400, never a 500 (which the OpenAI facade would also mark
 * x-should-retry: true): prototype names as purposes, NUL bytes in query, path and metadata,
 * forged pagination cursors and a multipart Content-Type without a boundary each answer 400
 * with a catalogue code, and leave nothing behind. tests/integration/hostile-property.test.ts
 * proves the class with generated inputs; these are the cases found by hand.
 */
import assert from 'node:assert/strict'
import { describe, type TestContext, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { AppError } from '../../src/errors.js'
import { multipart } from '../helper.js'
import {
  as,
  assertNothingLeft,
  assertProblem,
  filePart,
  freshTenant,
  postFile,
  setupUploads,
  useFileDatabase,
} from './uploads-support.js'

const database = useFileDatabase()

function assertOpenAiError(
  res: { statusCode: number; headers: Record<string, unknown>; json(): unknown },
  status: number,
  code: string,
) {
  const body = res.json() as { error?: { code?: string; type?: string; message?: string } }
  assert.equal(res.statusCode, status, JSON.stringify(body))
  assert.match(String(res.headers['content-type']), /^application\/json/)
  assert.equal(body.error?.code, code)
  assert.equal(body.error?.type, 'invalid_request_error')
  assert.equal(res.headers['x-should-retry'], 'false')
}

const cursor = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

async function withOneFile(t: TestContext) {
  const ctx = await setupUploads(t, database)
  if (!ctx) return undefined
  // A row of another tenant, so that forged values reach the SQL that compares them.
  const owner = freshTenant('owner')
  const res = await postFile(ctx.app, owner, [['provider', 'kimi'], filePart('a file to page past')])
  assert.equal(res.statusCode, 201, res.body)
  ctx.fakes.kimi.reset()
  return { ...ctx, owner, file: res.json() as { id: string; provider_file_id: string } }
}

const facadeUpload = (app: FastifyInstance, tenant: string, purpose: string) => {
  const body = multipart([
    ['purpose', purpose],
    ['file', { filename: 'a.txt', content: 'x' }],
  ])
  return app.inject({
    method: 'POST',
    url: '/providers/kimi/v1/files',
    headers: { ...as(tenant), ...body.headers },
    payload: body.payload,
  })
}

describe('hostile inputs answer 400, never 500', () => {
  test('purpose toString, __proto__, hasOwnProperty: 400 UNSUPPORTED_PURPOSE on both faces', async (t) => {
    const ctx = await setupUploads(t, database)
    if (!ctx) return
    for (const purpose of ['toString', '__proto__', 'hasOwnProperty', 'constructor', 'valueOf']) {
      for (const provider of ['kimi', 'glm', 'auto']) {
        const tenant = freshTenant('proto')
        const res = await postFile(ctx.app, tenant, [['provider', provider], ['purpose', purpose], filePart('x')])
        assertProblem(res, 400, 'UNSUPPORTED_PURPOSE')
        await assertNothingLeft(ctx, tenant)
      }
      const tenant = freshTenant('proto')
      assertOpenAiError(await facadeUpload(ctx.app, tenant, purpose), 400, 'unsupported_purpose')
      await assertNothingLeft(ctx, tenant)
    }
  })

  test('an extension named like a prototype member is just an extension', async (t) => {
    const ctx = await setupUploads(t, database)
    if (!ctx) return
    const tenant = freshTenant('ext')
    for (const name of ['a.constructor', 'a.__proto__', 'a.toString']) {
      const res = await postFile(ctx.app, tenant, [['provider', 'glm'], filePart('x', name)])
      assertProblem(res, 415, 'UNSUPPORTED_FILE_TYPE')
    }
    await assertNothingLeft(ctx, tenant)
  })

  test('a NUL byte in a query, a path or metadata: 400', async (t) => {
    const ctx = await withOneFile(t)
    if (!ctx) return
    const tenant = freshTenant('nul')
    for (const url of ['/v1/files?purpose=%00', '/v1/files?provider=a%00b', '/v1/files/a%00']) {
      assertProblem(await ctx.app.inject({ method: 'GET', url, headers: as(tenant) }), 400, 'VALIDATION_FAILED')
    }
    for (const url of [
      '/providers/kimi/v1/files/a%00',
      '/providers/kimi/v1/files/a%00/content',
      '/providers/kimi/v1/files?after=a%00',
      '/providers/kimi/v1/files?purpose=%00',
    ]) {
      assertOpenAiError(await ctx.app.inject({ method: 'GET', url, headers: as(tenant) }), 400, 'validation_failed')
    }
    assertOpenAiError(
      await ctx.app.inject({ method: 'DELETE', url: '/providers/kimi/v1/files/a%00', headers: as(tenant) }),
      400,
      'validation_failed',
    )
    for (const metadata of ['{"a":"x\\u0000y"}', '{"a\\u0000":1}', '{"a":{"b":["\\u0000"]}}']) {
      const res = await postFile(ctx.app, tenant, [['provider', 'kimi'], ['metadata', metadata], filePart('x')])
      const body = assertProblem(res, 400, 'VALIDATION_FAILED')
      assert.match(String(body.detail), /NUL/)
    }
    const deep = `${'{"a":'.repeat(40)}1${'}'.repeat(40)}`
    assertProblem(
      await postFile(ctx.app, tenant, [['provider', 'kimi'], ['metadata', deep], filePart('x')]),
      400,
      'VALIDATION_FAILED',
    )
    await assertNothingLeft({ ...ctx, fakes: ctx.fakes }, tenant)
  })

  test('a forged after cursor: 400, whatever it decodes to', async (t) => {
    const ctx = await withOneFile(t)
    if (!ctx) return
    const id = ctx.file.id
    const forged = [
      cursor(['1', id]),
      cursor(['-271821-04-20T00:00:00Z', id]),
      cursor(['275760-09-13T00:00:00Z', id]),
      cursor(['2026-02-30T00:00:00+00:00', id]),
      cursor(['0000-01-01T00:00:00+00:00', id]),
      cursor(['2026-01-01T00:00:00+00:00', 'not-a-uuid']),
      cursor(['2026-01-01T00:00:00+00:00', id, 'extra']),
      cursor({ 0: '2026-01-01T00:00:00+00:00', 1: id }),
      'not base64 at all!',
      'A'.repeat(300),
    ]
    for (const after of forged) {
      const res = await ctx.app.inject({
        method: 'GET',
        url: `/v1/files?after=${encodeURIComponent(after)}`,
        headers: as(ctx.owner),
      })
      assertProblem(res, 400, 'VALIDATION_FAILED')
    }
    // a cursor the service issued still pages
    await postFile(ctx.app, ctx.owner, [['provider', 'kimi'], filePart('a second file')])
    const first = await ctx.app.inject({ method: 'GET', url: '/v1/files?limit=1', headers: as(ctx.owner) })
    const next = (first.json() as { next_cursor: string }).next_cursor
    const second = await ctx.app.inject({
      method: 'GET',
      url: `/v1/files?limit=1&after=${next}`,
      headers: as(ctx.owner),
    })
    assert.equal(second.statusCode, 200, second.body)
    assert.deepEqual(
      (second.json() as { data: Array<{ id: string }> }).data.map((f) => f.id),
      [id],
    )
  })

  test('multipart/form-data without a boundary, or broken framing: 400 on both faces', async (t) => {
    const ctx = await setupUploads(t, database)
    if (!ctx) return
    const tenant = freshTenant('frame')
    const bodies: Array<[string, string]> = [
      ['multipart/form-data', 'abc'],
      ['multipart/form-data; charset=utf-8', 'abc'],
      ['multipart/form-data; boundary=xyz', 'hello world'],
      ['multipart/form-data; boundary=xyz', '--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"'],
      [
        'multipart/form-data; boundary=xyz',
        '--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nabc',
      ],
      [
        'multipart/form-data; boundary=xyz',
        '--xyz\r\nContent-Disposition: form-data; name="provider"\r\n\r\nkimi\r\n--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nabc',
      ],
    ]
    for (const [contentType, payload] of bodies) {
      const res = await ctx.app.inject({
        method: 'POST',
        url: '/v1/files',
        headers: { ...as(tenant), 'content-type': contentType },
        payload,
      })
      assertProblem(res, 400, 'VALIDATION_FAILED')
      const facade = await ctx.app.inject({
        method: 'POST',
        url: '/providers/kimi/v1/files',
        headers: { ...as(tenant), 'content-type': contentType },
        payload,
      })
      assertOpenAiError(facade, 400, 'validation_failed')
    }
    await assertNothingLeft(ctx, tenant)
  })

  test('a malformed URL or an over-long path parameter: 400 in the face of its path; unknown paths 404 alike', async (t) => {
    const ctx = await setupUploads(t, database)
    if (!ctx) return
    const tenant = freshTenant('url')
    const long = 'x'.repeat(5000)
    for (const url of ['/v1/files/%E0%A4%A', `/v1/files/${long}`, `/v1/files/${long}/content`]) {
      assertProblem(await ctx.app.inject({ method: 'GET', url, headers: as(tenant) }), 400, 'VALIDATION_FAILED')
    }
    for (const url of [
      '/providers/kimi/v1/files/%E0%A4%A',
      `/providers/kimi/v1/files/${long}`,
      `/providers/${long}/v1/files`,
    ]) {
      assertOpenAiError(await ctx.app.inject({ method: 'GET', url, headers: as(tenant) }), 400, 'validation_failed')
    }
    const unknown = await ctx.app.inject({ method: 'GET', url: '/providers/kimi/v1/nothing', headers: as(tenant) })
    assert.equal(unknown.statusCode, 404)
    assert.equal((unknown.json() as { error: { code: string } }).error.code, 'not_found')
    assertProblem(await ctx.app.inject({ method: 'GET', url: '/v1/nothing', headers: as(tenant) }), 404, 'NOT_FOUND')
  })

  test('the store refuses a value Postgres cannot hold as the client’s 400, not a 500', async (t) => {
    const ctx = await setupUploads(t, database)
    if (!ctx) return
    for (const [fn, args] of [
      ['list_files', { p_tenant_id: 'a\u0000b' }],
      ['get_file_by_provider_id', { p_tenant_id: 'a', p_provider: 'kimi', p_provider_file_id: 'a\u0000' }],
      ['get_file', { p_tenant_id: 'a', p_id: 'not-a-uuid' }],
    ] as const) {
      await assert.rejects(
        ctx.app.store.call(fn, args),
        (err) => err instanceof AppError && err.code === 'VALIDATION_FAILED' && err.status === 400,
        `${fn} ${JSON.stringify(args)}`,
      )
    }
  })
})
