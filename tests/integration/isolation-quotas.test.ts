/**
 * No tenant can take a shared provider account: a reservation counts the bytes that will really be
 * uploaded (a streamed-through body declaring more than the provider takes is refused before it
 * reserves anything, a reservation ends with its request, a chunked body is counted), per-tenant
 * quotas (TENANT_MAX_FILES, TENANT_MAX_BYTES, TENANT_QUOTAS) answer 507 TENANT_QUOTA_EXCEEDED with
 * the caps and the tenant's own usage, and a tenant key sees only its own usage.
 */
import assert from 'node:assert/strict'
import { describe, type TestContext, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { auth, multipart, testKeys } from '../helper.js'
import {
  as,
  assertProblem,
  eventually,
  filePart,
  freshTenant,
  httpRequest,
  listen,
  metric,
  multipartFrame,
  postFile,
  type RawResponse,
  readResponse,
  rowsOf,
  setupUploads,
  sha256,
  spoolEntries,
  useFileDatabase,
} from './uploads-support.js'

const database = useFileDatabase()

interface Limits {
  data: Array<{
    provider: string
    account: { max_files: number | null; max_bytes: number | null; files?: number; bytes?: number }
    tenant: { max_files: number | null; max_bytes: number | null; files: number; bytes: number }
  }>
}

/** An upload with a tenant's own key (postFile acts through the admin key). */
function postAs(app: FastifyInstance, headers: Record<string, string>, content: string, provider = 'kimi') {
  const body = multipart([['provider', provider], filePart(content)])
  return app.inject({
    method: 'POST',
    url: '/v1/files',
    headers: { ...headers, ...body.headers },
    payload: body.payload,
  })
}

async function limitsOf(app: FastifyInstance, headers: Record<string, string>, provider: string) {
  const res = await app.inject({ method: 'GET', url: '/v1/limits', headers })
  assert.equal(res.statusCode, 200, res.body)
  const entry = (res.json() as Limits).data.find((p) => p.provider === provider)
  assert.ok(entry)
  return entry
}

/** Accounts are shared by every tenant: a test that counts them needs a database of its own. */
async function ownDatabase(t: TestContext, env: Record<string, string>) {
  const { createTestDatabase, postgresAvailable, requirePostgres } = await import('../helper.js')
  if (!(await requirePostgres(t)) || !(await postgresAvailable())) return undefined
  const db = await createTestDatabase()
  t.after(() => db.drop())
  return setupUploads(t, () => db, env)
}

/** A raw stream-through upload that declares `declared` bytes and sends `send` of them, then waits. */
function streamThrough(
  target: { host: string; port: number },
  tenant: string,
  opts: { declared?: number; chunked?: Buffer; send?: number; provider?: string },
) {
  const frame = multipartFrame([['provider', opts.provider ?? 'kimi']], { filename: 'big.txt', type: 'text/plain' })
  const headers: Record<string, string> = {
    ...as(tenant),
    'x-content-sha256': sha256(`whatever ${tenant}`),
    'content-type': frame.contentType,
  }
  if (opts.declared !== undefined) headers['content-length'] = String(opts.declared)
  const req = httpRequest({ ...target, method: 'POST', path: '/v1/files', headers })
  const answer = new Promise<RawResponse | 'dropped'>((resolve, reject) => {
    req.on('response', (res) => readResponse(res).then(resolve, reject))
    req.on('error', () => resolve('dropped'))
  })
  req.write(frame.head)
  if (opts.chunked) {
    req.end(Buffer.concat([opts.chunked, frame.tail]))
  } else if (opts.send) req.write(Buffer.alloc(opts.send, 's'))
  return { req, answer, frame }
}

/** A provider attempt long enough that only the request ending can release a reservation early. */
const patientProvider = {
  PROVIDER_TIMEOUT_MS: '20000',
  UPLOAD_TIMEOUT_MS: '30000',
  REQUEST_TIMEOUT_MS: '40000',
  SHUTDOWN_TIMEOUT_MS: '50000',
}

describe('reservations count the bytes really uploaded', () => {
  test('a streamed-through body declaring 1 GB is refused at once, reserving nothing', async (t) => {
    const ctx = await setupUploads(t, database, patientProvider)
    if (!ctx) return
    const target = await listen(ctx.app)
    const tenant = freshTenant('squat')
    const started = Date.now()
    const { answer } = streamThrough(target, tenant, { declared: 1_000_000_000, send: 1024 })
    const res = await answer
    assert.notEqual(res, 'dropped')
    if (res === 'dropped') return
    assert.equal(res.status, 413, res.body)
    const body = JSON.parse(res.body)
    assert.equal(body.code, 'FILE_TOO_LARGE')
    assert.equal(body.limit_bytes, 104857600)
    assert.ok(Date.now() - started < 10_000, 'refused at once, not after the provider timed out')
    assert.deepEqual(await rowsOf(ctx.app, tenant), [], 'nothing was reserved')
    assert.equal(ctx.fakes.kimi.requests.upload, 0, 'the provider was not called')
  })

  test('a reservation of a streamed-through body lasts as long as its request', async (t) => {
    const ctx = await ownDatabase(t, patientProvider)
    if (!ctx) return
    const target = await listen(ctx.app)
    const tenant = freshTenant('hold')
    const admin = as(tenant)
    const declared = 5_000_000
    const { req, answer } = streamThrough(target, tenant, { declared, send: 1024 })
    await eventually('the reservation is counted', async () => {
      const kimi = await limitsOf(ctx.app, admin, 'kimi')
      return kimi.account.bytes === declared && kimi.tenant.bytes === declared
    })
    req.destroy()
    assert.equal(await answer, 'dropped')
    // Released as the request ends, not when the provider attempt (20 s) times out.
    await eventually(
      'the reservation is released',
      async () => (await limitsOf(ctx.app, admin, 'kimi')).account.bytes === 0,
      5000,
    )
    await eventually('no upload is active', async () => (await metric(ctx.app, 'filegate_file_active_uploads')) === 0)
    assert.deepEqual(await spoolEntries(ctx.spoolDir), [])
  })

  test('a chunked body is counted against the account cap', async (t) => {
    // The account's cap is the subject: no tenant share beneath it (isolation-share.test.ts has that).
    const ctx = await ownDatabase(t, { KIMI_MAX_TOTAL_BYTES: '3000', TENANT_MAX_SHARE: '1' })
    if (!ctx) return
    const target = await listen(ctx.app)
    const tenant = freshTenant('chunked')
    const content = Buffer.alloc(4000, 'c')
    const frame = multipartFrame([['provider', 'kimi']], { filename: 'chunked.txt', type: 'text/plain' })
    const res = await new Promise<RawResponse>((resolve, reject) => {
      const req = httpRequest({
        ...target,
        method: 'POST',
        path: '/v1/files',
        headers: {
          ...as(tenant),
          'x-content-sha256': sha256(content),
          'content-type': frame.contentType,
          'transfer-encoding': 'chunked',
        },
      })
      req.on('response', (r) => readResponse(r).then(resolve, reject))
      req.on('error', reject)
      req.write(frame.head)
      req.write(content)
      req.end(frame.tail)
    })
    assert.equal(res.status, 507, res.body)
    const body = JSON.parse(res.body)
    assert.equal(body.code, 'PROVIDER_QUOTA_EXCEEDED')
    assert.equal(body.max_bytes, 3000)
    assert.equal(ctx.fakes.kimi.requests.upload, 0, 'refused before any provider call')
    // within the cap, the same way in, it goes through
    const small = Buffer.alloc(2000, 's')
    const ok = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(small)], {
      'x-content-sha256': sha256(small),
    })
    assert.equal(ok.statusCode, 201, ok.body)
  })
})

describe('per-tenant quotas', () => {
  const env = {
    // The tenants' own caps are the subject: no share of the account beside them.
    TENANT_MAX_SHARE: '1',
    TENANT_MAX_FILES: '2',
    TENANT_QUOTAS: JSON.stringify({ acme: { max_files: 3, max_bytes: 1000 }, tiny: { max_bytes: 50 } }),
  }

  test('TENANT_MAX_FILES: the third distinct file is 507 TENANT_QUOTA_EXCEEDED; other tenants are not affected', async (t) => {
    const ctx = await setupUploads(t, database, env)
    if (!ctx) return
    const tenant = freshTenant('quota')
    for (const content of ['first', 'second']) {
      const res = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart(content)])
      assert.equal(res.statusCode, 201, res.body)
    }
    const third = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('third')])
    const problem = assertProblem(third, 507, 'TENANT_QUOTA_EXCEEDED')
    assert.equal(problem.provider, 'kimi')
    assert.equal(problem.limit_files, 2)
    assert.equal(problem.limit_bytes, null)
    assert.equal(problem.used_files, 2)
    assert.equal(problem.used_bytes, 'first'.length + 'second'.length)
    assert.equal(ctx.fakes.kimi.requests.upload, 2, 'no provider call for the third')
    // streamed through: refused the same way
    const streamed = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('third')], {
      'x-content-sha256': sha256('third'),
    })
    assertProblem(streamed, 507, 'TENANT_QUOTA_EXCEEDED')

    // another tenant is not held back; a duplicate is still answered; a delete frees a slot
    const other = await postFile(ctx.app, freshTenant('other'), [['provider', 'kimi'], filePart('third')])
    assert.equal(other.statusCode, 201, other.body)
    const dup = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('first')])
    assert.equal(dup.statusCode, 200, dup.body)
    // the quota is per provider account: GLM still takes the tenant's file
    const glm = await postFile(ctx.app, tenant, [['provider', 'glm'], filePart('third')])
    assert.equal(glm.statusCode, 201, glm.body)
    const del = await ctx.app.inject({ method: 'DELETE', url: `/v1/files/${dup.json().id}`, headers: as(tenant) })
    assert.equal(del.statusCode, 200, del.body)
    const after = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('third')])
    assert.equal(after.statusCode, 201, after.body)
    const rows = await rowsOf(ctx.app, tenant)
    assert.ok(
      rows.every((r) => r.status === 'completed' || r.status === 'deleted'),
      JSON.stringify(rows.map((r) => r.status)),
    )
  })

  test('TENANT_QUOTAS overrides per tenant: files and bytes', async (t) => {
    const ctx = await setupUploads(t, database, {
      ...env,
      API_KEYS: `acme:${testKeys.alice},tiny:${testKeys.bob},*:${testKeys.admin}`,
    })
    if (!ctx) return
    const acme = auth(testKeys.alice)
    const post = (headers: Record<string, string>, content: string) => postAs(ctx.app, headers, content)
    // files: three for acme (not the default two)
    for (const content of ['a1', 'a2', 'a3']) assert.equal((await post(acme, content)).statusCode, 201)
    const fourth = assertProblem(await post(acme, 'a4'), 507, 'TENANT_QUOTA_EXCEEDED')
    assert.equal(fourth.limit_files, 3)
    assert.equal(fourth.limit_bytes, 1000)
    // bytes: tiny may hold 50 bytes, whatever the file count
    const tiny = auth(testKeys.bob)
    assert.equal((await post(tiny, 'x'.repeat(40))).statusCode, 201)
    const over = assertProblem(await post(tiny, 'y'.repeat(11)), 507, 'TENANT_QUOTA_EXCEEDED')
    assert.equal(over.limit_bytes, 50)
    assert.equal(over.limit_files, 2, 'a field the override leaves out keeps the default')
    assert.equal(over.used_bytes, 40)
    // limits show each tenant its own usage and quota
    const mine = await limitsOf(ctx.app, tiny, 'kimi')
    assert.deepEqual(mine.tenant, { max_files: 2, max_bytes: 50, files: 1, bytes: 40 })
  })
})

describe('what one tenant learns of others', () => {
  test('a tenant key sees its own usage, not the account’s; admins see both; 507 bodies carry no account usage', async (t) => {
    // The account's caps and usage are the subject; the tenants' shares of it are isolation-share.test.ts's.
    const ctx = await ownDatabase(t, { KIMI_MAX_FILES: '3', TENANT_MAX_SHARE: '1' })
    if (!ctx) return
    const alice = auth(testKeys.alice)
    const bob = auth(testKeys.bob)
    const upload = (headers: Record<string, string>, content: string) => postAs(ctx.app, headers, content)
    assert.equal((await upload(bob, 'bob one')).statusCode, 201)
    assert.equal((await upload(bob, 'bob two')).statusCode, 201)
    assert.equal((await upload(alice, 'alice')).statusCode, 201)

    const seen = await limitsOf(ctx.app, alice, 'kimi')
    assert.equal(seen.account.files, undefined, "a tenant key does not see the account's usage")
    assert.equal(seen.account.bytes, undefined)
    assert.equal(seen.account.max_files, 3)
    assert.deepEqual(seen.tenant, { max_files: null, max_bytes: null, files: 1, bytes: 'alice'.length })
    const res = await ctx.app.inject({ method: 'GET', url: '/v1/limits', headers: alice })
    assert.doesNotMatch(res.body, /"bytes":14\b|bob/, "nothing of bob's uploads shows")

    const admin = await limitsOf(ctx.app, as('alice'), 'kimi')
    assert.equal(admin.account.files, 3)
    assert.equal(admin.account.bytes, 'bob one'.length + 'bob two'.length + 'alice'.length)
    assert.equal(admin.tenant.files, 1)

    const full = assertProblem(await upload(alice, 'one more'), 507, 'PROVIDER_QUOTA_EXCEEDED')
    assert.equal(full.max_files, 3)
    for (const key of ['used_files', 'used_bytes', 'files', 'bytes']) assert.equal(full[key], undefined, key)
  })
})
