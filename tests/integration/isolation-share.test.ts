/**
 * No tenant takes the whole of a shared provider account. With the defaults (TENANT_MAX_FILES /
 * TENANT_MAX_BYTES = 0) and more than one tenant able to use it, each tenant may hold at most its
 * share (TENANT_MAX_SHARE, 0.5) of each account cap: files, bytes, and a purpose's documented file
 * count. When one is refused (507 TENANT_QUOTA_EXCEEDED, with its own figures only), another
 * tenant's next upload still succeeds. A deployment with one tenant keeps the whole account until a
 * second tenant holds a file; TENANT_* settings override the share.
 */
import assert from 'node:assert/strict'
import { describe, type TestContext, test } from 'node:test'
import type { FastifyInstance } from 'fastify'
import { auth, createTestDatabase, multipart, requirePostgres, testKeys } from '../helper.js'
import { as, assertProblem, filePart, setupUploads, type UploadContext } from './uploads-support.js'

/** Account caps count every tenant: each test has a database of its own. */
async function ownApp(t: TestContext, env: Record<string, string>): Promise<UploadContext | undefined> {
  if (!(await requirePostgres(t))) return undefined
  const db = await createTestDatabase()
  t.after(() => db.drop())
  return setupUploads(t, () => db, env)
}

function upload(
  app: FastifyInstance,
  headers: Record<string, string>,
  content: string,
  parts: Array<[string, string]>,
  filename = 'doc.txt',
) {
  const body = multipart([...parts, filePart(content, filename)])
  return app.inject({
    method: 'POST',
    url: '/v1/files',
    headers: { ...headers, ...body.headers },
    payload: body.payload,
  })
}
const toKimi = (app: FastifyInstance, headers: Record<string, string>, content: string) =>
  upload(app, headers, content, [['provider', 'kimi']])

async function tenantLimits(app: FastifyInstance, headers: Record<string, string>, provider: string) {
  const res = await app.inject({ method: 'GET', url: '/v1/limits', headers })
  assert.equal(res.statusCode, 200, res.body)
  const entry = (res.json() as { data: Array<Record<string, unknown> & { provider: string }> }).data.find(
    (p) => p.provider === provider,
  )
  assert.ok(entry)
  return entry as unknown as { account: Record<string, unknown>; tenant: Record<string, unknown> }
}

const alice = auth(testKeys.alice)
const bob = auth(testKeys.bob)

describe("a tenant's share of a shared account", () => {
  test('files: a tenant is refused at its share with its own figures; another tenant still uploads', async (t) => {
    const ctx = await ownApp(t, { KIMI_MAX_FILES: '10' })
    if (!ctx) return
    for (let i = 0; i < 5; i++) {
      const res = await toKimi(ctx.app, alice, `alice ${i}`)
      assert.equal(res.statusCode, 201, res.body)
    }
    const refused = assertProblem(await toKimi(ctx.app, alice, 'alice 5'), 507, 'TENANT_QUOTA_EXCEEDED')
    assert.equal(refused.limit_files, 5, 'half of the 10-file account')
    assert.equal(refused.used_files, 5)
    assert.equal(refused.provider, 'kimi')
    for (const key of ['max_files', 'max_bytes', 'files', 'bytes', 'account']) {
      assert.equal(refused[key], undefined, `the refusal carries no ${key}: the account's figures are not its own`)
    }
    // Another tenant's next upload still succeeds, up to its own share.
    for (let i = 0; i < 5; i++) assert.equal((await toKimi(ctx.app, bob, `bob ${i}`)).statusCode, 201)
    // The account is full now; alice is still told only of her own share.
    assertProblem(await toKimi(ctx.app, alice, 'alice 6'), 507, 'TENANT_QUOTA_EXCEEDED')
    const mine = await tenantLimits(ctx.app, alice, 'kimi')
    assert.deepEqual(mine.tenant, { max_files: 5, max_bytes: 5 * 1024 ** 3, files: 5, bytes: mine.tenant.bytes })
    assert.equal(mine.account.files, undefined, "a tenant key never sees the account's usage")
    assert.equal(mine.account.bytes, undefined)
    // A dedup hit adds nothing: a tenant at its share still gets its own file back.
    assert.equal((await toKimi(ctx.app, alice, 'alice 0')).statusCode, 200)
  })

  test("bytes and a purpose's documented file count are shared the same way", async (t) => {
    const ctx = await ownApp(t, { KIMI_MAX_TOTAL_BYTES: '1000' })
    if (!ctx) return
    assert.equal((await toKimi(ctx.app, alice, 'a'.repeat(300))).statusCode, 201)
    const refused = assertProblem(await toKimi(ctx.app, alice, 'b'.repeat(300)), 507, 'TENANT_QUOTA_EXCEEDED')
    assert.equal(refused.limit_bytes, 500)
    assert.equal(refused.used_bytes, 300)
    assert.equal((await toKimi(ctx.app, bob, 'c'.repeat(300))).statusCode, 201)

    // GLM documents 100 files of purpose file-extract per account: a tenant gets 50 of them.
    const extract = (headers: Record<string, string>, n: number) =>
      upload(
        ctx.app,
        headers,
        `extract ${n}`,
        [
          ['provider', 'glm'],
          ['purpose', 'file-extract'],
        ],
        'a.pdf',
      )
    for (let i = 0; i < 50; i++) assert.equal((await extract(alice, i)).statusCode, 201)
    const purpose = assertProblem(await extract(alice, 50), 507, 'TENANT_QUOTA_EXCEEDED')
    assert.equal(purpose.purpose, 'file-extract')
    assert.equal(purpose.limit_files, 50)
    assert.equal(purpose.used_files, 50)
    assert.equal((await extract(bob, 0)).statusCode, 201)
  })

  test('one tenant keeps the whole account until a second tenant holds a file; TENANT_* settings override the share', async (t) => {
    const solo = 'solo-key-0123456789abcdef'
    const ctx = await ownApp(t, { KIMI_MAX_FILES: '10', API_KEYS: `solo:${solo},*:${testKeys.admin}` })
    if (!ctx) return
    for (let i = 0; i < 6; i++) assert.equal((await toKimi(ctx.app, auth(solo), `solo ${i}`)).statusCode, 201)
    assert.equal((await tenantLimits(ctx.app, auth(solo), 'kimi')).tenant.max_files, null, 'no share: one tenant')
    // A second tenant appears at run time (here through the admin key; keys and JWTs alike).
    assert.equal((await toKimi(ctx.app, as('newcomer'), 'newcomer 0')).statusCode, 201)
    const refused = assertProblem(await toKimi(ctx.app, auth(solo), 'solo 6'), 507, 'TENANT_QUOTA_EXCEEDED')
    assert.equal(refused.limit_files, 5)
    assert.equal(refused.used_files, 6)
    assert.equal((await toKimi(ctx.app, as('newcomer'), 'newcomer 1')).statusCode, 201)

    const overridden = await ownApp(t, {
      KIMI_MAX_FILES: '10',
      TENANT_MAX_FILES: '8',
      TENANT_QUOTAS: '{"vip": {"max_files": 0}}',
    })
    if (!overridden) return
    for (let i = 0; i < 8; i++) assert.equal((await toKimi(overridden.app, alice, `own cap ${i}`)).statusCode, 201)
    assertProblem(await toKimi(overridden.app, alice, 'own cap 8'), 507, 'TENANT_QUOTA_EXCEEDED')
    assert.equal((await toKimi(overridden.app, as('vip'), 'vip 0')).statusCode, 201)
    assert.equal((await toKimi(overridden.app, as('vip'), 'vip 1')).statusCode, 201)
    // The account is full (10): the next is the account's refusal, with its caps and no usage.
    const full = assertProblem(await toKimi(overridden.app, as('vip'), 'vip 2'), 507, 'PROVIDER_QUOTA_EXCEEDED')
    assert.equal(full.files, undefined)
  })
})
