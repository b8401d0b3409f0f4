/**
 * POST /v1/files refusals: each bad input answers its catalogue code as problem+json,
 * counts one validation failure, and leaves no spool file, no row and no provider file behind.
 * Real app, real Postgres, fake providers on loopback.
 */
import assert from 'node:assert/strict'
import { describe, type TestContext, test } from 'node:test'
import { auth, multipart, testKeys } from '../helper.js'
import {
  as,
  assertNothingLeft,
  assertProblem,
  eventually,
  filePart,
  freshTenant,
  httpRequest,
  listen,
  metric,
  multipartFrame,
  type Part,
  postFile,
  readResponse,
  rowsOf,
  setupUploads,
  sha256,
  spoolEntries,
  type UploadContext,
  useFileDatabase,
} from './uploads-support.js'

type FileRowLike = Awaited<ReturnType<typeof rowsOf>>[number]
const database = useFileDatabase()
const activeUploads = (ctx: UploadContext) => metric(ctx.app, 'filegate_file_active_uploads')
const setup = (t: TestContext, env: Record<string, string> = {}) => setupUploads(t, database, env)

/** Sends `parts`, expects the refusal, and checks it counted once and left nothing. */
async function refused(
  ctx: UploadContext,
  parts: Part[],
  status: number,
  code: string,
  headers: Record<string, string> = {},
) {
  const tenant = freshTenant()
  const before = await metric(ctx.app, 'filegate_file_validation_failures_total', { reason: code })
  const res = await postFile(ctx.app, tenant, parts, headers)
  const body = assertProblem(res, status, code)
  assert.equal(await metric(ctx.app, 'filegate_file_validation_failures_total', { reason: code }), before + 1)
  await assertNothingLeft(ctx, tenant)
  return body
}

describe('POST /v1/files refusals', () => {
  test('no file part: 400 MISSING_FILE', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    await refused(ctx, [['provider', 'kimi']], 400, 'MISSING_FILE')
    await refused(ctx, [], 400, 'MISSING_FILE')
  })

  test('two file parts: 400 TOO_MANY_FILES', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    await refused(ctx, [['provider', 'kimi'], filePart('one'), filePart('two', 'b.txt')], 400, 'TOO_MANY_FILES')
    await refused(ctx, [filePart('one'), filePart('two', 'b.txt'), ['provider', 'kimi']], 400, 'TOO_MANY_FILES')
  })

  test('unknown provider: 400 UNKNOWN_PROVIDER, before or after the file part', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const body = await refused(ctx, [['provider', 'nope'], filePart('hello')], 400, 'UNKNOWN_PROVIDER')
    assert.equal(body.provider, 'nope')
    await refused(ctx, [filePart('hello'), ['provider', 'nope']], 400, 'UNKNOWN_PROVIDER')
  })

  test('unknown purpose: 400 UNSUPPORTED_PURPOSE', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    await refused(ctx, [['provider', 'kimi'], ['purpose', 'fine-tune'], filePart('hello')], 400, 'UNSUPPORTED_PURPOSE')
    await refused(ctx, [filePart('hello'), ['provider', 'glm'], ['purpose', 'nope']], 400, 'UNSUPPORTED_PURPOSE')
  })

  test('one byte over the provider limit: 413 FILE_TOO_LARGE with provider and limit_bytes', async (t) => {
    const ctx = await setup(t, { GLM_MAX_FILE_BYTES: '1000', KIMI_MAX_FILE_BYTES: '2000' })
    if (!ctx) return
    // provider first: enforced while streaming
    let body = await refused(ctx, [['provider', 'glm'], filePart(Buffer.alloc(1001, 'a'))], 413, 'FILE_TOO_LARGE')
    assert.equal(body.provider, 'glm')
    assert.equal(body.limit_bytes, 1000)
    body = await refused(ctx, [['provider', 'kimi'], filePart(Buffer.alloc(2001, 'a'))], 413, 'FILE_TOO_LARGE')
    assert.equal(body.provider, 'kimi')
    assert.equal(body.limit_bytes, 2000)
    // provider after the file: checked once the body is in
    body = await refused(ctx, [filePart(Buffer.alloc(1001, 'a')), ['provider', 'glm']], 413, 'FILE_TOO_LARGE')
    assert.equal(body.provider, 'glm')
    assert.equal(body.limit_bytes, 1000)
    // auto: too large for every provider
    body = await refused(ctx, [['provider', 'auto'], filePart(Buffer.alloc(2001, 'a'))], 413, 'FILE_TOO_LARGE')
    assert.equal(body.provider, 'kimi')
    assert.equal(body.limit_bytes, 2000)
    // exactly at the limit is accepted
    const ok = await postFile(ctx.app, freshTenant(), [['provider', 'glm'], filePart(Buffer.alloc(1000, 'a'))])
    assert.equal(ok.statusCode, 201, ok.body)
  })

  test('provider before the file: the request is cut off at the limit, not read to the end', async (t) => {
    const ctx = await setup(t, { KIMI_MAX_FILE_BYTES: '1000' })
    if (!ctx) return
    const { host, port } = await listen(ctx.app)
    const tenant = freshTenant()
    const frame = multipartFrame([['provider', 'kimi']], { filename: 'big.txt', type: 'text/plain' })
    const fileBytes = 64 * 1024 * 1024
    const total = frame.head.length + fileBytes + frame.tail.length
    const chunk = Buffer.alloc(16 * 1024, 'x')

    const outcome = await new Promise<{ res: Awaited<ReturnType<typeof readResponse>>; sent: number }>(
      (resolve, reject) => {
        let sent = 0
        let answered = false
        const req = httpRequest({
          host,
          port,
          method: 'POST',
          path: '/v1/files',
          headers: { ...as(tenant), 'content-type': frame.contentType, 'content-length': String(total) },
        })
        req.on('response', (res) => {
          answered = true
          readResponse(res).then((r) => resolve({ res: r, sent }), reject)
        })
        // A reset after the answer is the server closing the connection: expected.
        req.on('error', (err) => {
          if (!answered) reject(err)
        })
        req.write(frame.head)
        sent += frame.head.length
        // Slowly, one chunk per tick of the timer, until the server answers (or everything is sent).
        const pump = () => {
          if (answered || req.destroyed) return
          if (sent - frame.head.length >= fileBytes) {
            req.end(frame.tail)
            return
          }
          req.write(chunk, () => setTimeout(pump, 2))
          sent += chunk.length
        }
        pump()
      },
    )
    assert.equal(outcome.res.status, 413, outcome.res.body)
    const body = JSON.parse(outcome.res.body) as Record<string, unknown>
    assert.equal(body.code, 'FILE_TOO_LARGE')
    assert.equal(body.provider, 'kimi')
    assert.equal(body.limit_bytes, 1000)
    assert.ok(outcome.sent < total / 4, `answered after ${outcome.sent} of ${total} bytes, not at the end`)
    assert.deepEqual(await spoolEntries(ctx.spoolDir), [])
    assert.deepEqual(await rowsOf(ctx.app, tenant), [])
    assert.equal(ctx.fakes.kimi.uploads.length, 0)
    assert.equal(await metric(ctx.app, 'filegate_file_active_uploads'), 0)
  })

  test('disallowed extension: 415 UNSUPPORTED_FILE_TYPE with provider, extension, allowed', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const body = await refused(
      ctx,
      [['provider', 'kimi'], filePart('MZ...', 'setup.exe', 'application/octet-stream')],
      415,
      'UNSUPPORTED_FILE_TYPE',
    )
    assert.equal(body.provider, 'kimi')
    assert.equal(body.extension, 'exe')
    assert.ok(Array.isArray(body.allowed) && (body.allowed as string[]).includes('pdf'))
    const glm = await refused(ctx, [filePart('x', 'script.sh'), ['provider', 'glm']], 415, 'UNSUPPORTED_FILE_TYPE')
    assert.equal(glm.provider, 'glm')
    assert.equal(glm.extension, 'sh')
  })

  test('empty file: 400 EMPTY_FILE', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    await refused(ctx, [['provider', 'kimi'], filePart('')], 400, 'EMPTY_FILE')
    await refused(ctx, [filePart(''), ['provider', 'glm']], 400, 'EMPTY_FILE')
    await refused(ctx, [filePart('')], 400, 'EMPTY_FILE')
  })

  test('metadata not a JSON object, or over 4 KiB: 400 VALIDATION_FAILED', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    for (const metadata of ['not json', '[1,2]', '"text"', 'null', '42']) {
      await refused(ctx, [['provider', 'kimi'], ['metadata', metadata], filePart('hello')], 400, 'VALIDATION_FAILED')
      await refused(ctx, [filePart('hello'), ['metadata', metadata], ['provider', 'kimi']], 400, 'VALIDATION_FAILED')
    }
    const big = JSON.stringify({ note: 'x'.repeat(4097) })
    await refused(ctx, [['provider', 'kimi'], ['metadata', big], filePart('hello')], 400, 'VALIDATION_FAILED')
    const huge = JSON.stringify({ note: 'x'.repeat(20_000) })
    await refused(ctx, [['provider', 'kimi'], ['metadata', huge], filePart('hello')], 400, 'VALIDATION_FAILED')
    // just under the limit is fine and stored
    const fits = { note: 'y'.repeat(4000) }
    const ok = await postFile(ctx.app, freshTenant(), [
      ['provider', 'kimi'],
      ['metadata', JSON.stringify(fits)],
      filePart('hello'),
    ])
    assert.equal(ok.statusCode, 201, ok.body)
    assert.deepEqual(ok.json().metadata, fits)
  })

  test('missing or wrong bearer key: 401 UNAUTHORIZED', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const body = multipart([['provider', 'kimi'], filePart('hello')])
    for (const headers of [{}, auth('wrong-key-0123456789abcdef'), { authorization: `Basic ${testKeys.alice}` }]) {
      const res = await ctx.app.inject({
        method: 'POST',
        url: '/v1/files',
        headers: { ...body.headers, ...headers },
        payload: body.payload,
      })
      assertProblem(res, 401, 'UNAUTHORIZED')
      assert.match(String(res.headers['www-authenticate']), /^Bearer/)
    }
    await assertNothingLeft(ctx, 'alice')
  })

  test('a content type that is not multipart: 400 VALIDATION_FAILED', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const tenant = freshTenant()
    for (const [type, payload] of [
      ['application/json', JSON.stringify({ file: 'hello', provider: 'kimi' })],
      ['text/plain', 'hello'],
      ['application/octet-stream', 'hello'],
      ['application/x-www-form-urlencoded', 'provider=kimi&file=hello'],
    ] as const) {
      const res = await ctx.app.inject({
        method: 'POST',
        url: '/v1/files',
        headers: { ...as(tenant), 'content-type': type },
        payload,
      })
      assertProblem(res, 400, 'VALIDATION_FAILED')
    }
    const res = await ctx.app.inject({ method: 'POST', url: '/v1/files', headers: as(tenant) })
    assertProblem(res, 400, 'VALIDATION_FAILED')
    await assertNothingLeft(ctx, tenant)
  })

  test('declared X-Content-SHA256 that does not match, file spooled: 400 CHECKSUM_MISMATCH', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const wrong = sha256('something else')
    const body = await refused(ctx, [filePart('hello'), ['provider', 'kimi']], 400, 'CHECKSUM_MISMATCH', {
      'x-content-sha256': wrong,
    })
    assert.equal(body.declared, wrong)
    assert.equal(body.actual, sha256('hello'))
    // auto with the provider first also spools
    await refused(ctx, [['provider', 'auto'], filePart('hello')], 400, 'CHECKSUM_MISMATCH', {
      'x-content-sha256': wrong,
    })
  })

  test('declared X-Content-SHA256 that does not match, streamed through: the provider copy is deleted', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const tenant = freshTenant()
    const wrong = sha256('something else')
    const before = await metric(ctx.app, 'filegate_file_validation_failures_total', { reason: 'CHECKSUM_MISMATCH' })
    const res = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('hello')], {
      'x-content-sha256': wrong,
    })
    const body = assertProblem(res, 400, 'CHECKSUM_MISMATCH')
    assert.equal(body.declared, wrong)
    assert.equal(body.actual, sha256('hello'))
    // the body did reach the provider (streamed through) and its copy was deleted again
    assert.equal(ctx.fakes.kimi.uploads.length, 1)
    assert.deepEqual(ctx.fakes.kimi.deletes, [ctx.fakes.kimi.uploads[0]?.id])
    assert.equal(ctx.fakes.kimi.files.size, 0)
    assert.equal(
      await metric(ctx.app, 'filegate_file_validation_failures_total', { reason: 'CHECKSUM_MISMATCH' }),
      before + 1,
    )
    // no live row; what remains is a tombstone whose provider delete is done
    const rows = await rowsOf(ctx.app, tenant)
    assert.ok(
      rows.every((r) => r.deleted_at !== null && r.provider_deleted),
      JSON.stringify(rows),
    )
    const list = await ctx.app.inject({ method: 'GET', url: '/v1/files', headers: as(tenant) })
    assert.deepEqual(list.json().data, [])
    assert.deepEqual(await spoolEntries(ctx.spoolDir), [])
    assert.equal(await metric(ctx.app, 'filegate_file_active_uploads'), 0)
    // and the same content declared correctly goes through
    const ok = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('hello')], {
      'x-content-sha256': sha256('hello'),
    })
    assert.equal(ok.statusCode, 201, ok.body)
  })

  test('a filename with path segments, control characters or 1,000 characters is sanitised', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const tenant = freshTenant()
    const cases: Array<{ raw: string; check: (name: string) => void }> = [
      { raw: '../../etc/passwd.txt', check: (n) => assert.equal(n, 'passwd.txt') },
      { raw: 'C:\\Users\\eve\\report.txt', check: (n) => assert.equal(n, 'report.txt') },
      { raw: 'a\u0001b\u0007c\u007f\u202e.txt', check: (n) => assert.equal(n, 'abc.txt') },
      { raw: 'tab\there.txt', check: (n) => assert.equal(n, 'tabhere.txt') },
      {
        raw: `${'n'.repeat(1000)}.txt`,
        check: (n) => {
          assert.ok(Buffer.byteLength(n) <= 255, `${Buffer.byteLength(n)} bytes`)
          assert.ok(n.endsWith('.txt'))
          assert.match(n, /^n+\.txt$/)
        },
      },
      {
        raw: `${'文'.repeat(1000)}.md`,
        check: (n) => {
          assert.ok(Buffer.byteLength(n) <= 255, `${Buffer.byteLength(n)} bytes`)
          assert.match(n, /^文+\.md$/)
        },
      },
    ]
    for (const [i, c] of cases.entries()) {
      const res = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(`content ${i}`, c.raw)])
      assert.equal(res.statusCode, 201, res.body)
      const file = res.json() as { id: string; filename: string }
      c.check(file.filename)
      const row: FileRowLike | undefined = (await rowsOf(ctx.app, tenant)).find((r) => r.id === file.id)
      assert.equal(row?.filename, file.filename, 'the stored filename is the sanitised one')
      const received = ctx.fakes.kimi.uploads.at(-1)
      assert.equal(received?.filename, file.filename, 'the provider received the sanitised name')
      assert.equal(received?.sha256, sha256(`content ${i}`))
    }
    assert.deepEqual(await spoolEntries(ctx.spoolDir), [])
  })

  test('a body cut off mid-upload frees everything', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const { host, port } = await listen(ctx.app)
    for (const order of ['provider-first', 'provider-after', 'streamed-through'] as const) {
      const tenant = freshTenant()
      const frame =
        order === 'provider-after'
          ? multipartFrame([], { filename: 'half.txt' }, [['provider', 'kimi']])
          : multipartFrame([['provider', 'kimi']], { filename: 'half.txt' })
      const half = Buffer.alloc(256 * 1024, 'h')
      const declared = frame.head.length + half.length * 2 + frame.tail.length
      // streamed-through: the body goes straight to the provider as it arrives
      const sha = order === 'streamed-through' ? { 'x-content-sha256': sha256('the whole file') } : {}
      // Wait until the server is taking the body (the upload is active), then drop the socket.
      await new Promise<void>((resolve, reject) => {
        const req = httpRequest({
          host,
          port,
          method: 'POST',
          path: '/v1/files',
          headers: { ...as(tenant), ...sha, 'content-type': frame.contentType, 'content-length': String(declared) },
        })
        req.on('error', () => {})
        req.on('response', () => reject(new Error('the server answered a body it had not received')))
        req.write(frame.head)
        req.write(half, async () => {
          try {
            await eventually('the upload is active', async () => (await activeUploads(ctx)) >= 1, 5000)
            if (order === 'streamed-through') {
              await eventually('the provider upload started', () => ctx.fakes.kimi.requests.upload >= 1, 5000)
            }
            req.destroy()
            resolve()
          } catch (err) {
            reject(err)
          }
        })
      })
      await eventually('active uploads back to 0', async () => (await activeUploads(ctx)) === 0)
      assert.deepEqual(await spoolEntries(ctx.spoolDir), [], `${order}: no temp file`)
      const rows = await rowsOf(ctx.app, tenant)
      assert.ok(
        rows.every((r) => r.status !== 'uploading' && r.status !== 'pending' && r.status !== 'completed'),
        `${order}: no row stuck in uploading, none completed: ${JSON.stringify(rows.map((r) => r.status))}`,
      )
      if (order !== 'streamed-through') assert.deepEqual(rows, [], `${order}: no row at all`)
      await eventually('the provider holds no file', () => ctx.fakes.kimi.files.size === 0, 5000)
      assert.equal(ctx.fakes.kimi.uploads.length, 0)
    }
  })
})
