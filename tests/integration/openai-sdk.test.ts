/**
 * The official `openai` npm package, pointed at filegate's facade, against the running service
 * (real HTTP) and the fake providers: an existing OpenAI-SDK client works unchanged once its
 * baseURL points at filegate.
 */
import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { describe, it, type TestContext } from 'node:test'
import OpenAI, { toFile } from 'openai'
import { auth, build, fileDatabase, multipart, requirePostgres, startFakes, tempDir, testKeys } from '../helper.js'

async function serve(t: TestContext, env: Record<string, string> = {}) {
  const db = await fileDatabase(t)
  const fakes = await startFakes(t)
  const app = await build(t, { DATABASE_URL: db.url, UPLOAD_TMP_DIR: await tempDir(t), ...fakes.env, ...env })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  const client = (key: string, provider = 'kimi') =>
    new OpenAI({ apiKey: key, baseURL: `http://127.0.0.1:${port}/providers/${provider}/v1`, maxRetries: 2 })
  return { app, fakes, client }
}

const requestsTo = async (app: { inject: (u: string) => Promise<{ body: string }> }, status: number) => {
  const metrics = (await app.inject('/metrics')).body
  const line = metrics
    .split('\n')
    .find(
      (l) =>
        l.startsWith('filegate_http_request_duration_seconds_count{') &&
        l.includes('route="/providers/:provider/v1/files"') &&
        l.includes(`status_code="${status}"`),
    )
  return line ? Number(line.split(' ').at(-1)) : 0
}

/** The error a call was expected to fail with. */
const failureOf = (call: Promise<unknown>) =>
  call.then(
    () => assert.fail('expected an error'),
    (e: unknown) => e,
  )

describe('OpenAI SDK against the facade', () => {
  it('create twice with the same bytes gives the same id and one provider upload; retrieve, content, delete work', async (t) => {
    if (!(await requirePostgres(t))) return
    const { fakes, client } = await serve(t)
    const openai = client(testKeys.alice)
    const bytes = Buffer.from('The quarterly report, in plain text.')
    const first = await openai.files.create({
      file: await toFile(bytes, 'report.txt'),
      purpose: 'file-extract' as never,
    })
    const second = await openai.files.create({
      file: await toFile(bytes, 'report.txt'),
      purpose: 'file-extract' as never,
    })
    assert.equal(first.id, second.id)
    assert.equal(first.object, 'file')
    assert.equal(first.bytes, bytes.length)
    assert.ok(Number.isInteger(first.created_at) && first.created_at > 1_700_000_000, 'unix seconds')
    assert.equal(fakes.kimi.uploads.length, 1)
    assert.equal(first.id, fakes.kimi.uploads[0]?.id, "the provider's own id, usable in chat calls")

    const got = await openai.files.retrieve(first.id)
    assert.equal(got.filename, 'report.txt')
    const content = await openai.files.content(first.id)
    assert.match(await content.text(), /quarterly report/)

    const deleted = await openai.files.delete(first.id)
    assert.deepEqual(deleted, { id: first.id, object: 'file', deleted: true })
    assert.deepEqual(fakes.kimi.deletes, [first.id])
    await assert.rejects(openai.files.retrieve(first.id), (err: unknown) => err instanceof OpenAI.NotFoundError)
    // Another tenant never sees it, nor learns it existed.
    const bob = client(testKeys.bob)
    await assert.rejects(bob.files.retrieve(second.id), (err: unknown) => err instanceof OpenAI.NotFoundError)
  })

  it('list auto-pagination over 25 files sees each exactly once', async (t) => {
    if (!(await requirePostgres(t))) return
    const { client } = await serve(t)
    const openai = client(testKeys.alice)
    const ids = new Set<string>()
    for (let i = 0; i < 25; i++) {
      const f = await openai.files.create({
        file: await toFile(Buffer.from(`document number ${i}`), `doc-${i}.txt`),
        purpose: 'file-extract' as never,
      })
      ids.add(f.id)
    }
    assert.equal(ids.size, 25)
    const seen: string[] = []
    for await (const f of openai.files.list({ limit: 4 })) seen.push(f.id)
    assert.equal(seen.length, 25)
    assert.deepEqual(new Set(seen), ids)
    const page = await openai.files.list({ limit: 10, order: 'asc' })
    assert.equal(page.data.length, 10)
    assert.equal(page.has_more, true)
  })

  it('a too-large file and a full account give errors the SDK does not retry', async (t) => {
    if (!(await requirePostgres(t))) return
    const { app, fakes, client } = await serve(t, { KIMI_MAX_FILE_BYTES: '1000', KIMI_MAX_FILES: '1' })
    const openai = client(testKeys.alice)
    const err = await openai.files
      .create({ file: await toFile(Buffer.alloc(5000, 1), 'big.txt'), purpose: 'file-extract' as never })
      .then(
        () => assert.fail('expected an error'),
        (e: unknown) => e,
      )
    assert.ok(err instanceof OpenAI.APIError)
    assert.equal(err.status, 413)
    assert.equal((err.error as { code?: string }).code, 'file_too_large')
    assert.equal(err.headers?.get('x-should-retry'), 'false')
    assert.equal(await requestsTo(app, 413), 1, 'sent once, not retried')

    await openai.files.create({ file: await toFile(Buffer.from('fits'), 'a.txt'), purpose: 'file-extract' as never })
    const quota = await openai.files
      .create({ file: await toFile(Buffer.from('no room'), 'b.txt'), purpose: 'file-extract' as never })
      .then(
        () => assert.fail('expected an error'),
        (e: unknown) => e,
      )
    // OpenAI answers a full quota with 429 insufficient_quota; the SDK would retry a 429, so the
    // x-should-retry: false is what stops it.
    assert.ok(quota instanceof OpenAI.RateLimitError)
    assert.equal(quota.status, 429)
    assert.equal(quota.code, 'insufficient_quota')
    assert.equal(quota.headers?.get('x-should-retry'), 'false')
    assert.equal(await requestsTo(app, 429), 1, 'sent once, not retried')
    assert.equal(fakes.kimi.uploads.length, 1)
  })

  for (const [provider, mode, upstream] of [
    ['glm', 'usage-limit', 'GLM 1308'],
    ['glm', 'plan-expired', 'GLM 1309'],
    ['kimi', 'balance', 'Kimi 403 insufficient balance'],
    ['kimi', true, 'Kimi 429 exceeded_current_quota_error'],
  ] as const) {
    it(`${upstream}: RateLimitError insufficient_quota, and the SDK does not retry`, async (t) => {
      if (!(await requirePostgres(t))) return
      const { fakes, client } = await serve(t)
      const fake = fakes[provider]
      fake.quotaExceeded = mode
      const err = await failureOf(
        client(testKeys.alice, provider).files.create({
          file: await toFile(Buffer.from('a note'), 'note.txt'),
          purpose: (provider === 'glm' ? 'agent' : 'file-extract') as never,
        }),
      )
      assert.ok(err instanceof OpenAI.RateLimitError, `a RateLimitError, got ${String(err)}`)
      assert.equal(err.code, 'insufficient_quota')
      assert.equal((err.error as { type?: string }).type, 'insufficient_quota')
      assert.equal(err.headers?.get('x-should-retry'), 'false')
      // maxRetries is 2: one request reached the provider, so neither the SDK nor filegate retried.
      assert.equal(fake.requests.upload, 1)
    })
  }

  it('x-should-retry follows the classification: true for a provider outage, false for a daily cap', async (t) => {
    if (!(await requirePostgres(t))) return
    const { fakes, client } = await serve(t, { RETRY_MAX_ATTEMPTS: '1' })
    fakes.kimi.failNext(3, 500, 'upload')
    const outage = await failureOf(
      client(testKeys.alice).files.create({
        file: await toFile(Buffer.from('x'), 'x.txt'),
        purpose: 'file-extract' as never,
      }),
    )
    assert.ok(outage instanceof OpenAI.InternalServerError)
    assert.equal(outage.headers?.get('x-should-retry'), 'true')
    assert.equal(fakes.kimi.requests.upload, 3, 'the SDK retried twice (maxRetries 2)')

    // GLM 1304, the daily call cap (docs.bigmodel.cn/cn/api/api-code): a 429 the SDK would retry
    // on its own; the classification says waiting will not help.
    fakes.glm.errorNext(
      5,
      { status: 429, code: '1304', message: 'This API has reached its daily call limit' },
      'upload',
    )
    const capped = await failureOf(
      client(testKeys.alice, 'glm').files.create({
        file: await toFile(Buffer.from('y'), 'y.txt'),
        purpose: 'agent' as never,
      }),
    )
    assert.ok(capped instanceof OpenAI.RateLimitError)
    assert.equal(capped.headers?.get('x-should-retry'), 'false')
    assert.equal(fakes.glm.requests.upload, 1)
  })

  it('expires_after[seconds] is 3600 to 2592000, and list takes up to 10,000 by default', async (t) => {
    if (!(await requirePostgres(t))) return
    const { client } = await serve(t)
    const openai = client(testKeys.alice)
    for (const seconds of [3599, 2_592_001]) {
      await assert.rejects(
        openai.files.create({
          file: await toFile(Buffer.from(`ttl ${seconds}`), 't.txt'),
          purpose: 'file-extract' as never,
          expires_after: { anchor: 'created_at', seconds },
        }),
        (e: unknown) => e instanceof OpenAI.BadRequestError && /3600 to 2592000/.test(e.message),
      )
    }
    const kept = await openai.files.create({
      file: await toFile(Buffer.from('ttl ok'), 't.txt'),
      purpose: 'file-extract' as never,
      expires_after: { anchor: 'created_at', seconds: 3600 },
    })
    assert.ok(kept.expires_at && kept.expires_at - kept.created_at >= 3599)
    for (let i = 0; i < 105; i++) {
      await openai.files.create({
        file: await toFile(Buffer.from(`many ${i}`), `m${i}.txt`),
        purpose: 'file-extract' as never,
      })
    }
    const page = await openai.files.list()
    assert.equal(page.data.length, 106, 'one page: the default limit is 10,000, not 100')
    assert.equal(page.has_more, false)
  })

  it('refusals on the facade are counted like those of /v1/files, multipart limits included', async (t) => {
    if (!(await requirePostgres(t))) return
    const { app } = await serve(t)
    const counted = async () => {
      const line = (await app.inject('/metrics')).body
        .split('\n')
        .find((l) => l.startsWith('filegate_file_validation_failures_total{reason="TOO_MANY_FILES"}'))
      return line ? Number(line.split(' ').at(-1)) : 0
    }
    const before = await counted()
    const form = multipart([
      ['purpose', 'file-extract'],
      ['file', { filename: 'a.txt', content: 'one' }],
      ['file', { filename: 'b.txt', content: 'two' }],
    ])
    const res = await app.inject({
      method: 'POST',
      url: '/providers/kimi/v1/files',
      headers: { ...auth(testKeys.alice), ...form.headers },
      payload: form.payload,
    })
    assert.equal(res.statusCode, 400, res.body)
    assert.equal(res.json().error.code, 'too_many_files')
    assert.equal(await counted(), before + 1)
  })

  it('authentication and unknown providers answer in OpenAI error shape', async (t) => {
    if (!(await requirePostgres(t))) return
    const { client } = await serve(t)
    await assert.rejects(client('not-a-key').files.list(), (e: unknown) => e instanceof OpenAI.AuthenticationError)
    await assert.rejects(client(testKeys.alice, 'nope').files.list(), (e: unknown) => e instanceof OpenAI.NotFoundError)
  })
})
