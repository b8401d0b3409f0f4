/**
 * tus 1.0 at /v1/uploads against the running service (a real listener) on Postgres, with the real
 * tus-js-client and fake providers: the bytes reach the provider intact, dedup holds across tus and
 * POST /v1/files, a wrong sha256 fails the upload, limits refuse before a byte is staged, a cut
 * connection resumes from the offset HEAD reports, two PATCHes at one offset never both append,
 * termination and expiry leave no segment and no row behind, another tenant sees nothing; a
 * completion the provider fails is finished by the scheduled resumable job with no further client
 * request, and one the provider refuses fails for good.
 */
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { describe, it, type TestContext } from 'node:test'
import { auth, multipart, postgresSuiteSkip, testKeys } from '../helper.js'
import {
  content,
  metricValue,
  resumableRows,
  type Served,
  serve,
  sha256,
  stagedSegments,
  suiteDatabase,
  tusHeaders,
  tusMetadata,
  tusUpload,
} from './resumable-support.js'

const skip = await postgresSuiteSkip()
const db = suiteDatabase(skip)

const served = (t: TestContext, env: Record<string, string> = {}) => serve(t, env, db())

async function create(s: Served, key: string, length: number, fields: Record<string, string>) {
  const res = await fetch(`${s.base}/v1/uploads`, {
    method: 'POST',
    headers: tusHeaders(key, { 'upload-length': String(length), 'upload-metadata': tusMetadata(fields) }),
  })
  return res
}

async function patch(s: Served, key: string, location: string, offset: number, body: Buffer) {
  return fetch(`${s.base}${location}`, {
    method: 'PATCH',
    headers: tusHeaders(key, { 'upload-offset': String(offset), 'content-type': 'application/offset+octet-stream' }),
    body,
  })
}

const head = (s: Served, key: string, location: string) =>
  fetch(`${s.base}${location}`, { method: 'HEAD', headers: tusHeaders(key) })

const status = async (s: Served, key: string, location: string) =>
  (await fetch(`${s.base}${location}`, { headers: auth(key) })).json() as Promise<Record<string, unknown>>

/**
 * The scheduled jobs every second, a deferred completion tried again one second later (then two,
 * four…), one provider attempt per completion attempt (so the fake's failures count attempts).
 */
const retrying = {
  CLEANUP_ENABLED: 'true',
  CLEANUP_CRON: '* * * * * *',
  RESUMABLE_RETRY_SECONDS: '1',
  RETRY_MAX_ATTEMPTS: '1',
}

/** GET /v1/uploads/{id} until its status is `until`; every state seen on the way. */
async function watchStatus(s: Served, key: string, location: string, until: string, timeoutMs: number) {
  const seen: Array<Record<string, unknown>> = []
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const state = await status(s, key, location)
    seen.push(state)
    if (state.status === until) return seen
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.fail(`the upload did not become ${until} within ${timeoutMs} ms: ${JSON.stringify(seen.at(-1))}`)
}

describe('tus uploads', { skip }, () => {
  it('tus-js-client uploads in chunks: bytes intact at the provider, the File recorded, nothing left staged', async (t) => {
    const s = await served(t)
    const bytes = content(300 * 1024 + 7, 'tus-basic')
    const done = await tusUpload(s.base, testKeys.alice, bytes, { filename: 'video.txt', provider: 'kimi' })
    assert.ok(done.fileId, 'the completing PATCH names the file')
    const [sent] = s.fakes.kimi.uploads
    assert.equal(sent?.sha256, sha256(bytes))
    assert.equal(sent?.bytes, bytes.length)
    const file = (await s.app.inject({ url: `/v1/files/${done.fileId}`, headers: auth(testKeys.alice) })).json()
    assert.equal(file.sha256, sha256(bytes))
    assert.equal(file.filename, 'video.txt')
    const location = new URL(done.url).pathname
    const state = await status(s, testKeys.alice, location)
    assert.equal(state.status, 'completed')
    assert.equal(state.offset, bytes.length)
    assert.equal((state.file as { id: string }).id, done.fileId)
    assert.deepEqual(await stagedSegments(s.tmpDir), [], 'segments removed on success')
    assert.equal(
      await metricValue(s.app, 'filegate_resumable_uploads_total', { protocol: 'tus', outcome: 'completed' }),
      1,
    )
  })

  it('creation-with-upload of a whole small file answers 201 with the File id', async (t) => {
    const s = await served(t)
    const bytes = content(1000, 'tus-cwu')
    const done = await tusUpload(
      s.base,
      testKeys.alice,
      bytes,
      { filename: 'small.txt', provider: 'glm' },
      { uploadDataDuringCreation: true, chunkSize: 1 << 20 },
    )
    assert.ok(done.fileId)
    assert.equal(s.fakes.glm.uploads[0]?.sha256, sha256(bytes))
  })

  it('dedup holds across POST /v1/files and tus, with and without a declared sha256', async (t) => {
    const s = await served(t)
    const bytes = content(100 * 1024, 'tus-dedup')
    const form = multipart([
      ['provider', 'kimi'],
      ['file', { filename: 'a.txt', content: bytes }],
    ])
    const posted = await s.app.inject({
      method: 'POST',
      url: '/v1/files',
      headers: { ...auth(testKeys.alice), ...form.headers },
      payload: form.payload,
    })
    assert.equal(posted.statusCode, 201)
    const viaTus = await tusUpload(s.base, testKeys.alice, bytes, { filename: 'b.txt', provider: 'kimi' })
    const declared = await tusUpload(s.base, testKeys.alice, bytes, {
      filename: 'c.txt',
      provider: 'kimi',
      sha256: sha256(bytes),
    })
    assert.equal(viaTus.fileId, posted.json().id)
    assert.equal(declared.fileId, posted.json().id)
    assert.equal(s.fakes.kimi.uploads.length, 1, 'one provider upload')
    assert.equal(
      await metricValue(s.app, 'filegate_resumable_uploads_total', { protocol: 'tus', outcome: 'deduplicated' }),
      2,
    )
    // And the other way round: tus first, then POST /v1/files is the duplicate.
    const other = content(70 * 1024, 'tus-dedup-2')
    const first = await tusUpload(s.base, testKeys.alice, other, { filename: 'd.txt', provider: 'kimi' })
    const again = multipart([
      ['provider', 'kimi'],
      ['file', { filename: 'd.txt', content: other }],
    ])
    const res = await s.app.inject({
      method: 'POST',
      url: '/v1/files',
      headers: { ...auth(testKeys.alice), ...again.headers },
      payload: again.payload,
    })
    assert.equal(res.statusCode, 200)
    assert.equal(res.json().id, first.fileId)
    assert.deepEqual(await stagedSegments(s.tmpDir), [])
  })

  it('a declared sha256 the bytes do not match fails the upload (400), its segments removed', async (t) => {
    const s = await served(t)
    const bytes = content(2000, 'tus-mismatch')
    const created = await create(s, testKeys.alice, bytes.length, {
      filename: 'x.txt',
      provider: 'kimi',
      sha256: sha256(Buffer.from('other')),
    })
    assert.equal(created.status, 201)
    const location = created.headers.get('location') as string
    const res = await patch(s, testKeys.alice, location, 0, bytes)
    assert.equal(res.status, 400)
    assert.equal(((await res.json()) as { code: string }).code, 'CHECKSUM_MISMATCH')
    const state = await status(s, testKeys.alice, location)
    assert.equal(state.status, 'failed')
    assert.match(String(state.error), /sha256/)
    assert.equal(s.fakes.kimi.uploads.length, 0)
    assert.deepEqual(await stagedSegments(s.tmpDir), [])
    assert.equal((await head(s, testKeys.alice, location)).status, 410)
  })

  it('refuses at creation: over the provider cap (413 problem+json), no filename, a wrong tus version', async (t) => {
    const s = await served(t)
    const big = await create(s, testKeys.alice, 20 * 1024 * 1024 + 1, { filename: 'big.txt', provider: 'glm' })
    assert.equal(big.status, 413)
    assert.match(String(big.headers.get('content-type')), /problem\+json/)
    const problem = (await big.json()) as { code: string; limit_bytes: number }
    assert.equal(problem.code, 'FILE_TOO_LARGE')
    assert.equal(problem.limit_bytes, 20 * 1024 * 1024)
    const nameless = await create(s, testKeys.alice, 10, { provider: 'glm' })
    assert.equal(nameless.status, 400)
    const old = await fetch(`${s.base}/v1/uploads`, {
      method: 'POST',
      headers: { ...auth(testKeys.alice), 'tus-resumable': '0.2.2', 'upload-length': '10' },
    })
    assert.equal(old.status, 412)
    assert.equal(old.headers.get('tus-version'), '1.0.0')
    const options = await fetch(`${s.base}/v1/uploads`, { method: 'OPTIONS', headers: auth(testKeys.alice) })
    assert.equal(options.status, 204)
    assert.match(String(options.headers.get('tus-extension')), /creation-with-upload/)
  })

  it("a key's providers allowlist holds at creation and at completion: auto chooses among its providers only", async (t) => {
    const s = await served(t)
    const made = await s.app.inject({
      method: 'POST',
      url: '/v1/keys',
      headers: auth(testKeys.admin),
      payload: { tenant: 'alice', providers: ['kimi'] },
    })
    assert.equal(made.statusCode, 201, made.body)
    const key = made.json().key as string
    const refused = await create(s, key, 1000, { filename: 'glm.txt', provider: 'glm' })
    assert.equal(refused.status, 403, 'a provider outside the allowlist is refused at creation')
    // A small file: `auto` (glm first) would put it at GLM; the key allows only Kimi.
    const bytes = content(2000, 'tus-allowlist')
    const done = await tusUpload(s.base, key, bytes, { filename: 'auto.txt', provider: 'auto' })
    assert.ok(done.fileId)
    assert.equal(s.fakes.glm.uploads.length, 0, 'nothing reached GLM')
    assert.equal(s.fakes.kimi.uploads[0]?.sha256, sha256(bytes))
  })

  it("another tenant's upload is 404 on HEAD, PATCH, GET and DELETE", async (t) => {
    const s = await served(t)
    const created = await create(s, testKeys.alice, 10, { filename: 'mine.txt', provider: 'kimi' })
    const location = created.headers.get('location') as string
    assert.equal((await head(s, testKeys.bob, location)).status, 404)
    assert.equal((await patch(s, testKeys.bob, location, 0, Buffer.from('0123456789'))).status, 404)
    assert.equal((await fetch(`${s.base}${location}`, { headers: auth(testKeys.bob) })).status, 404)
    assert.equal(
      (await fetch(`${s.base}${location}`, { method: 'DELETE', headers: tusHeaders(testKeys.bob) })).status,
      404,
    )
    assert.equal((await head(s, testKeys.alice, location)).headers.get('upload-offset'), '0')
  })

  it('a connection cut mid-PATCH keeps what arrived; the upload resumes from the offset HEAD reports', async (t) => {
    const s = await served(t)
    const bytes = content(512 * 1024, 'tus-cut')
    const created = await create(s, testKeys.alice, bytes.length, { filename: 'cut.txt', provider: 'kimi' })
    const location = created.headers.get('location') as string
    const sentBeforeCut = 200 * 1024
    await new Promise<void>((resolve) => {
      const req = request(`${s.base}${location}`, {
        method: 'PATCH',
        headers: {
          ...tusHeaders(testKeys.alice, {
            'upload-offset': '0',
            'content-type': 'application/offset+octet-stream',
          }),
          'content-length': String(bytes.length),
        },
      })
      req.on('error', () => resolve())
      req.write(bytes.subarray(0, sentBeforeCut), () => setTimeout(() => req.destroy(), 100))
    })
    let offset = 0
    for (let i = 0; i < 50 && offset === 0; i++) {
      await new Promise((r) => setTimeout(r, 50))
      const res = await head(s, testKeys.alice, location)
      if (res.status === 200) offset = Number(res.headers.get('upload-offset'))
    }
    assert.ok(offset > 0 && offset <= sentBeforeCut, `kept what arrived (${offset})`)
    const rest = await patch(s, testKeys.alice, location, offset, bytes.subarray(offset))
    assert.equal(rest.status, 204)
    assert.ok(rest.headers.get('filegate-file-id'))
    assert.equal(s.fakes.kimi.uploads[0]?.sha256, sha256(bytes), 'the bytes before and after the cut, in order')
    assert.deepEqual(await stagedSegments(s.tmpDir), [])
  })

  it('two PATCHes at one offset never both append; a wrong offset is 409', async (t) => {
    const s = await served(t)
    const bytes = content(256 * 1024, 'tus-race')
    const created = await create(s, testKeys.alice, bytes.length, { filename: 'race.txt', provider: 'kimi' })
    const location = created.headers.get('location') as string
    const half = bytes.subarray(0, 128 * 1024)
    const answers = await Promise.all([0, 1, 2].map(() => patch(s, testKeys.alice, location, 0, half)))
    const codes = answers.map((a) => a.status).sort()
    assert.equal(codes.filter((c) => c === 204).length, 1, `one append (${codes})`)
    assert.ok(
      codes.every((c) => c === 204 || c === 409 || c === 423),
      `the others 409/423 (${codes})`,
    )
    assert.equal((await head(s, testKeys.alice, location)).headers.get('upload-offset'), String(half.length))
    assert.equal((await patch(s, testKeys.alice, location, 5, bytes.subarray(5))).status, 409)
    const rest = await patch(s, testKeys.alice, location, half.length, bytes.subarray(half.length))
    assert.equal(rest.status, 204)
    assert.equal(s.fakes.kimi.uploads[0]?.sha256, sha256(bytes))
  })

  it('a body past Upload-Length is 413 and appends nothing', async (t) => {
    const s = await served(t)
    const created = await create(s, testKeys.alice, 10, { filename: 'ten.txt', provider: 'kimi' })
    const location = created.headers.get('location') as string
    const res = await patch(s, testKeys.alice, location, 0, Buffer.alloc(11, 1))
    assert.equal(res.status, 413)
    assert.equal((await head(s, testKeys.alice, location)).headers.get('upload-offset'), '0')
  })

  it('termination removes the staged bytes and the row', async (t) => {
    const s = await served(t)
    const bytes = content(100 * 1024, 'tus-terminate')
    const created = await create(s, testKeys.alice, bytes.length, { filename: 't.txt', provider: 'kimi' })
    const location = created.headers.get('location') as string
    assert.equal((await patch(s, testKeys.alice, location, 0, bytes.subarray(0, 50 * 1024))).status, 204)
    assert.equal((await stagedSegments(s.tmpDir)).length, 1)
    const gone = await fetch(`${s.base}${location}`, { method: 'DELETE', headers: tusHeaders(testKeys.alice) })
    assert.equal(gone.status, 204)
    assert.equal((await head(s, testKeys.alice, location)).status, 404)
    assert.deepEqual(await stagedSegments(s.tmpDir), [])
    assert.equal(
      await metricValue(s.app, 'filegate_resumable_uploads_total', { protocol: 'tus', outcome: 'cancelled' }),
      1,
    )
  })

  it('an unfinished upload expires (410), and the sweep removes its segments and its row', async (t) => {
    const s = await served(t, { RESUMABLE_TTL_SECONDS: '1' })
    const bytes = content(100 * 1024, 'tus-expire')
    const created = await create(s, testKeys.alice, bytes.length, { filename: 'e.txt', provider: 'kimi' })
    const location = created.headers.get('location') as string
    const expires = Date.parse(String(created.headers.get('upload-expires')))
    assert.ok(expires > Date.now() - 1000 && expires <= Date.now() + 2000, 'Upload-Expires: one TTL from now')
    assert.equal((await patch(s, testKeys.alice, location, 0, bytes.subarray(0, 1000))).status, 204)
    await new Promise((r) =>
      setTimeout(r, Math.max(0, Date.parse(String(created.headers.get('upload-expires'))) + 1100 - Date.now())),
    )
    assert.equal((await head(s, testKeys.alice, location)).status, 410)
    assert.equal((await patch(s, testKeys.alice, location, 1000, bytes.subarray(1000))).status, 410)
    const report = await s.app.cleanup.run({ dryRun: false, jobs: ['resumable'] })
    assert.equal(report.jobs.resumable?.status, 'completed')
    assert.deepEqual(await stagedSegments(s.tmpDir), [])
    assert.equal((await head(s, testKeys.alice, location)).status, 404, 'the row is gone too')
    assert.equal(
      await metricValue(s.app, 'filegate_resumable_uploads_total', { protocol: 'tus', outcome: 'expired' }),
      1,
    )
  })

  it("the tenant's quota counts staged bytes at creation", async (t) => {
    const s = await serve(t, { TENANT_MAX_BYTES: String(300 * 1024) }) // fresh tenants' usage
    const first = await create(s, testKeys.alice, 200 * 1024, { filename: 'q1.txt', provider: 'kimi' })
    assert.equal(first.status, 201)
    const second = await create(s, testKeys.alice, 200 * 1024, { filename: 'q2.txt', provider: 'kimi' })
    assert.equal(second.status, 507)
    assert.equal(((await second.json()) as { code: string }).code, 'TENANT_QUOTA_EXCEEDED')
    const bobs = await create(s, testKeys.bob, 200 * 1024, { filename: 'q3.txt', provider: 'kimi' })
    assert.equal(bobs.status, 201, "another tenant's quota is its own")
  })

  it("creation counts the tenant's share of a shared account as the claim does (TENANT_MAX_SHARE)", async (t) => {
    // A 1 MiB account, shared by the keys' two tenants: each may stage half of it.
    const s = await serve(t, { KIMI_MAX_TOTAL_BYTES: String(1024 * 1024) })
    const first = await create(s, testKeys.alice, 400 * 1024, { filename: 's1.txt', provider: 'kimi' })
    assert.equal(first.status, 201)
    const second = await create(s, testKeys.alice, 200 * 1024, { filename: 's2.txt', provider: 'kimi' })
    assert.equal(second.status, 507)
    const problem = (await second.json()) as { code: string; limit_bytes: number; used_bytes: number }
    assert.equal(problem.code, 'TENANT_QUOTA_EXCEEDED')
    assert.equal(problem.limit_bytes, 512 * 1024, 'its share, not the account')
    assert.equal(problem.used_bytes, 400 * 1024, 'its own staged bytes')
    assert.equal((await create(s, testKeys.bob, 400 * 1024, { filename: 's3.txt', provider: 'kimi' })).status, 201)
  })

  it('a tenant alone on the account may stage the whole of it', async (t) => {
    const solo = 'solo-key-0123456789abcdef'
    const s = await serve(t, { KIMI_MAX_TOTAL_BYTES: String(1024 * 1024), API_KEYS: `solo:${solo}` })
    // More than a half share: the account is not shared (one tenant in the keys, no other tenant's row).
    assert.equal((await create(s, solo, 900 * 1024, { filename: 'big.txt', provider: 'kimi' })).status, 201)
  })

  it('leaves no row and no segment once settled uploads pass their expiry', async (t) => {
    const s = await serve(t, { RESUMABLE_TTL_SECONDS: '1' }) // a database of its own: it counts every row
    await tusUpload(s.base, testKeys.alice, content(5000, 'tus-rows'), { filename: 'r.txt', provider: 'kimi' })
    const cancelled = await create(s, testKeys.alice, 10, { filename: 'c.txt', provider: 'kimi' })
    await fetch(`${s.base}${cancelled.headers.get('location')}`, {
      method: 'DELETE',
      headers: tusHeaders(testKeys.alice),
    })
    await create(s, testKeys.alice, 10, { filename: 'left.txt', provider: 'kimi' })
    await new Promise((r) => setTimeout(r, 1100))
    await s.app.cleanup.run({ dryRun: false, jobs: ['resumable'] })
    assert.deepEqual(await resumableRows(s.db), { uploads: 0, segments: 0 })
    assert.deepEqual(await stagedSegments(s.tmpDir), [])
  })

  it('a completion the provider fails is finished by the resumable job, with no further client request', async (t) => {
    const s = await serve(t, retrying) // a database of its own: its jobs run every second
    // The first two provider puts fail (the PATCH's own attempt, then the job's first retry).
    s.fakes.kimi.failNext(2, 500, 'upload')
    const bytes = content(200 * 1024 + 3, 'tus-retry')
    // tus-js-client: the last PATCH fails with a 5xx; it retries, asks HEAD, sees every byte arrived
    // and reports success without the File (it sends no other PATCH).
    const done = await tusUpload(
      s.base,
      testKeys.alice,
      bytes,
      { filename: 'retry.txt', provider: 'kimi' },
      { chunkSize: 128 * 1024, retryDelays: [50] },
    )
    assert.equal(done.fileId, undefined, 'the client reported success on HEAD, before the file was recorded')
    const location = new URL(done.url).pathname
    const seen = await watchStatus(s, testKeys.alice, location, 'completed', 20_000)
    const first = seen[0] as Record<string, unknown>
    assert.equal(first.status, 'processing', 'processing while the completion is retried')
    assert.equal(first.offset, bytes.length)
    assert.match(String(first.error), /kimi failed \(HTTP 500\)/, 'the last error is visible')
    assert.ok(Number(first.attempts) >= 1)
    const last = seen.at(-1) as Record<string, unknown>
    assert.equal(last.attempts, 3, 'the PATCH, then two attempts of the job')
    assert.equal(last.error, null)
    assert.equal(last.next_attempt_at, null)
    const file = last.file as { id: string; sha256: string }
    assert.equal(file.sha256, sha256(bytes))
    assert.equal(s.fakes.kimi.uploads.length, 1, 'one provider upload')
    assert.equal(s.fakes.kimi.uploads[0]?.sha256, sha256(bytes), 'the bytes intact at the provider')
    assert.equal(s.fakes.kimi.requests.upload, 3)
    const headed = await head(s, testKeys.alice, location)
    assert.equal(headed.headers.get('filegate-file-id'), file.id, 'HEAD names the File once recorded')
    assert.deepEqual(await stagedSegments(s.tmpDir), [], 'the staged bytes removed once completed')
    assert.equal(
      await metricValue(s.app, 'filegate_resumable_uploads_total', { protocol: 'tus', outcome: 'completed' }),
      1,
    )
  })

  it("the last PATCH answers the provider's failure while the upload stays processing", async (t) => {
    const s = await served(t, { RETRY_MAX_ATTEMPTS: '1', RESUMABLE_RETRY_SECONDS: '3600' })
    s.fakes.kimi.failNext(1, 503, 'upload')
    const bytes = content(50 * 1024, 'tus-retry-answer')
    const created = await create(s, testKeys.alice, bytes.length, { filename: 'a.txt', provider: 'kimi' })
    const location = created.headers.get('location') as string
    const res = await patch(s, testKeys.alice, location, 0, bytes)
    assert.equal(res.status, 502)
    assert.equal(((await res.json()) as { code: string }).code, 'PROVIDER_ERROR')
    const state = await status(s, testKeys.alice, location)
    assert.equal(state.status, 'processing')
    assert.equal(state.attempts, 1)
    const next = Date.parse(String(state.next_attempt_at))
    assert.ok(next > Date.now() + 3500_000 && next <= Date.now() + 3600_000, 'the next attempt after the delay')
    assert.equal((await stagedSegments(s.tmpDir)).length, 1, 'the bytes kept')
    const headed = await head(s, testKeys.alice, location)
    assert.equal(headed.status, 200)
    assert.equal(headed.headers.get('upload-offset'), String(bytes.length))
    // A client that asks for the completion itself (a PATCH of nothing at the end) need not wait.
    const again = await patch(s, testKeys.alice, location, bytes.length, Buffer.alloc(0))
    assert.equal(again.status, 204)
    assert.ok(again.headers.get('filegate-file-id'))
    assert.equal(s.fakes.kimi.uploads[0]?.sha256, sha256(bytes))
  })

  it("a provider's definitive refusal (422) fails the upload for good and removes its bytes", async (t) => {
    const s = await serve(t, retrying)
    s.fakes.kimi.rejectContent = 'file content is not allowed'
    const bytes = content(40 * 1024, 'tus-refused')
    const created = await create(s, testKeys.alice, bytes.length, { filename: 'no.txt', provider: 'kimi' })
    const location = created.headers.get('location') as string
    const res = await patch(s, testKeys.alice, location, 0, bytes)
    assert.equal(res.status, 422)
    assert.equal(((await res.json()) as { code: string }).code, 'PROVIDER_REJECTED')
    const state = await status(s, testKeys.alice, location)
    assert.equal(state.status, 'failed')
    assert.match(String(state.error), /not allowed/)
    assert.deepEqual(await stagedSegments(s.tmpDir), [], 'its bytes removed')
    assert.equal((await head(s, testKeys.alice, location)).status, 410)
    // The job, ticking meanwhile, does not try it again.
    await new Promise((r) => setTimeout(r, 2_500))
    assert.equal(s.fakes.kimi.requests.upload, 1)
    assert.equal((await status(s, testKeys.alice, location)).status, 'failed')
    assert.equal(
      await metricValue(s.app, 'filegate_resumable_uploads_total', { protocol: 'tus', outcome: 'failed' }),
      1,
    )
  })

  it('a processing upload whose expiry passes before its completion succeeds fails, and its bytes go', async (t) => {
    const s = await serve(t, { RESUMABLE_TTL_SECONDS: '3', RETRY_MAX_ATTEMPTS: '1', RESUMABLE_RETRY_SECONDS: '1' })
    s.fakes.kimi.failNext(100, 500, 'upload')
    const bytes = content(10 * 1024, 'tus-gave-up')
    const created = await create(s, testKeys.alice, bytes.length, { filename: 'late.txt', provider: 'kimi' })
    const location = created.headers.get('location') as string
    assert.equal((await patch(s, testKeys.alice, location, 0, bytes)).status, 502)
    const expires = Date.parse(String(created.headers.get('upload-expires')))
    // The job runs until the upload has expired: each run tries the completion again when it is due.
    let attempts = 0
    while (Date.now() < expires - 200) {
      await s.app.cleanup.run({ dryRun: false, jobs: ['resumable'] })
      const state = await status(s, testKeys.alice, location)
      assert.equal(state.status, 'processing')
      attempts = Number(state.attempts)
      await new Promise((r) => setTimeout(r, 200))
    }
    assert.ok(attempts >= 2, `tried again (${attempts} attempts)`)
    await new Promise((r) => setTimeout(r, Math.max(0, expires + 1100 - Date.now())))
    await s.app.resumable.stop() // an attempt still running ends first
    await s.app.cleanup.run({ dryRun: false, jobs: ['resumable'] })
    // Failed, its bytes removed, and (its expiry passed) its row dropped in the same run.
    assert.equal((await head(s, testKeys.alice, location)).status, 404)
    assert.deepEqual(await stagedSegments(s.tmpDir), [])
    assert.equal(s.fakes.kimi.uploads.length, 0)
    assert.equal(
      await metricValue(s.app, 'filegate_resumable_uploads_total', { protocol: 'tus', outcome: 'failed' }),
      1,
    )
  })
})
