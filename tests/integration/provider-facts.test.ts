/**
 * Kimi and GLM as their docs say, end to end through the service: per-purpose file counts (GLM),
 * content only where the provider documents it, and /v1/limits showing the operator's caps beside
 * the documented ones. The fakes answer per the same docs (tests/fakes/provider-server.ts).
 */
import assert from 'node:assert/strict'
import { describe, type TestContext, test } from 'node:test'
import { startFakeProvider } from '../fakes/provider-server.js'
import { fileDatabase, requirePostgres } from '../helper.js'
import {
  as,
  assertProblem,
  filePart,
  freshTenant,
  type Part,
  postFile,
  sha256,
  type UploadContext,
  uploadApp,
} from './uploads-support.js'

/** A database per test: the counts are per provider account, so tests must not share one. */
async function setup(t: TestContext, env: Record<string, string> = {}): Promise<UploadContext | undefined> {
  if (!(await requirePostgres(t))) return undefined
  return uploadApp(t, await fileDatabase(t), env)
}
const MB = 1024 * 1024

/** Rows that occupy GLM's account for `purpose`, as completed uploads would leave them. */
async function occupy(ctx: UploadContext, purpose: string, n: number, tenant = freshTenant('seed')) {
  for (let i = 0; i < n; i++) {
    const hash = sha256(`${tenant} ${purpose} ${i}`)
    const claim = await ctx.app.store.call<{ outcome: string; claim_token: string; file: { id: string } }>(
      'claim_upload',
      {
        p_tenant_id: tenant,
        p_provider: 'glm',
        p_purpose: purpose,
        p_sha256: hash,
        p_bytes: 10,
        p_filename: `seed-${i}.pdf`,
        p_mime_type: 'application/pdf',
      },
    )
    assert.equal(claim.outcome, 'claimed')
    await ctx.app.store.call('complete_upload', {
      p_id: claim.file.id,
      p_claim_token: claim.claim_token,
      p_provider_file_id: `file-seed-${hash.slice(0, 12)}`,
    })
  }
}

const get = (ctx: UploadContext, tenant: string, url: string) =>
  ctx.app.inject({ method: 'GET', url, headers: as(tenant) })

describe('GLM file counts per purpose (row 3)', () => {
  test('file-extract holds 100 files: the 101st is 507 before any provider call; a re-sent file still dedups', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const tenant = freshTenant()
    await occupy(ctx, 'file-extract', 99)
    const parts = (content: string, name = 'a.pdf'): Part[] => [
      ['provider', 'glm'],
      ['purpose', 'file-extract'],
      filePart(content, name, 'application/pdf'),
    ]
    const last = await postFile(ctx.app, tenant, [...parts('the hundredth')])
    assert.equal(last.statusCode, 201, last.body)
    const uploads = ctx.fakes.glm.requests.upload

    const over = await postFile(ctx.app, tenant, [...parts('one too many')])
    const problem = assertProblem(over, 507, 'PROVIDER_QUOTA_EXCEEDED')
    assert.equal(problem.purpose, 'file-extract')
    assert.equal(problem.max_files, 100)
    // The count is every tenant's: a tenant key is told the cap, never the account's usage.
    assert.equal(problem.used_files, undefined)
    assert.equal(ctx.fakes.glm.requests.upload, uploads, 'refused before the provider call')

    const again = await postFile(ctx.app, tenant, [...parts('the hundredth')])
    assert.equal(again.statusCode, 200, again.body)
    assert.equal(again.json().deduplicated, true)

    // Other purposes count apart: agent holds 1,000.
    const agent = await postFile(ctx.app, tenant, [
      ['provider', 'glm'],
      ['purpose', 'agent'],
      filePart('an agent file'),
    ])
    assert.equal(agent.statusCode, 201, agent.body)

    // Deleting one frees its slot.
    assert.equal(
      (await ctx.app.inject({ method: 'DELETE', url: `/v1/files/${last.json().id}`, headers: as(tenant) })).statusCode,
      200,
    )
    const freed = await postFile(ctx.app, tenant, [...parts('one too many')])
    assert.equal(freed.statusCode, 201, freed.body)
  })

  test('concurrent uploads cannot pass the cap together', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    await occupy(ctx, 'code-interpreter', 97)
    const tenant = freshTenant()
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        postFile(ctx.app, tenant, [['provider', 'glm'], ['purpose', 'code-interpreter'], filePart(`race ${i}`)]),
      ),
    )
    const codes = answers.map((r) => r.statusCode).sort()
    assert.deepEqual(codes, [201, 201, 201, 507, 507, 507, 507, 507])
    assert.equal(ctx.fakes.glm.uploads.length, 3)
  })
})

describe('content only where the provider documents it (row 8)', () => {
  test('Kimi image, GLM agent and code-interpreter: 409 CONTENT_UNAVAILABLE, no provider call', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const tenant = freshTenant()
    const up = async (provider: string, purpose: string, name: string, content: string) => {
      const res = await postFile(ctx.app, tenant, [
        ['provider', provider],
        ['purpose', purpose],
        filePart(content, name),
      ])
      assert.equal(res.statusCode, 201, res.body)
      return res.json() as { id: string; provider_file_id: string }
    }
    const files = [
      await up('kimi', 'image', 'pic.png', 'not really a png'),
      await up('kimi', 'video', 'clip.mp4', 'not really a video'),
      await up('glm', 'agent', 'notes.txt', 'agent notes'),
      await up('glm', 'code-interpreter', 'data.csv', 'a,b'),
    ]
    for (const file of files) {
      const res = await get(ctx, tenant, `/v1/files/${file.id}/content`)
      const problem = assertProblem(res, 409, 'CONTENT_UNAVAILABLE')
      assert.ok(problem.purpose)
    }
    // The OpenAI facade too, with x-should-retry: false.
    const facade = await ctx.app.inject({
      method: 'GET',
      url: `/providers/kimi/v1/files/${files[0]?.provider_file_id}/content`,
      headers: as(tenant),
    })
    assert.equal(facade.statusCode, 409, facade.body)
    assert.equal(facade.json().error.code, 'content_unavailable')
    assert.equal(facade.headers['x-should-retry'], 'false')
    assert.equal(ctx.fakes.kimi.requests.content, 0)
    assert.equal(ctx.fakes.glm.requests.content, 0)
  })

  test('GLM batch and file-extract content come from the provider', async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const tenant = freshTenant()
    const batch = await postFile(ctx.app, tenant, [
      ['provider', 'glm'],
      ['purpose', 'batch'],
      filePart('{"custom_id":"r1"}\n', 'in.jsonl', 'application/jsonl'),
    ])
    assert.equal(batch.statusCode, 201, batch.body)
    const raw = await get(ctx, tenant, `/v1/files/${batch.json().id}/content`)
    assert.equal(raw.statusCode, 200, raw.body)
    assert.equal(raw.body, '{"custom_id":"r1"}\n')
    const extract = await postFile(ctx.app, tenant, [
      ['provider', 'glm'],
      ['purpose', 'file-extract'],
      filePart('a,b\n1,2', 'table.csv', 'text/csv'),
    ])
    assert.equal(extract.statusCode, 201, extract.body)
    const text = await get(ctx, tenant, `/v1/files/${extract.json().id}/content`)
    assert.equal(text.statusCode, 200, text.body)
    assert.equal(JSON.parse(text.body).content, 'a,b\n1,2')
    assert.equal(ctx.fakes.glm.requests.content, 2)
  })
})

describe('OpenAI content only for the purposes OpenAI lets download', () => {
  test('user_data, assistants, fine-tune, evals: 409 CONTENT_UNAVAILABLE without a call; batch and vision: the bytes', async (t) => {
    if (!(await requirePostgres(t))) return
    const openai = await startFakeProvider({ kind: 'openai', apiKey: 'sk-fake-openai-0123456789' })
    t.after(() => openai.close())
    const ctx = await setup(t, { OPENAI_API_KEY: 'sk-fake-openai-0123456789', OPENAI_BASE_URL: openai.baseUrl })
    if (!ctx) return
    const tenant = freshTenant()
    const up = async (purpose: string, name: string, content: string) => {
      const res = await postFile(ctx.app, tenant, [
        ['provider', 'openai'],
        ['purpose', purpose],
        filePart(content, name),
      ])
      assert.equal(res.statusCode, 201, res.body)
      return res.json() as { id: string; provider_file_id: string }
    }
    const refused = [
      await up('user_data', 'notes.txt', 'user notes'),
      await up('assistants', 'manual.pdf', 'a manual'),
      await up('fine-tune', 'train.jsonl', '{"messages":[]}\n'),
      await up('evals', 'cases.jsonl', '{"item":{}}\n'),
    ]
    for (const file of refused) {
      const problem = assertProblem(await get(ctx, tenant, `/v1/files/${file.id}/content`), 409, 'CONTENT_UNAVAILABLE')
      assert.equal(problem.provider, 'openai')
    }
    const facade = await ctx.app.inject({
      method: 'GET',
      url: `/providers/openai/v1/files/${refused[0]?.provider_file_id}/content`,
      headers: as(tenant),
    })
    assert.equal(facade.statusCode, 409, facade.body)
    assert.equal(facade.json().error.code, 'content_unavailable')
    assert.equal(openai.requests.content, 0, 'filegate did not ask OpenAI')
    // What OpenAI itself answers, had filegate asked (the fake follows it).
    const direct = await fetch(`${openai.baseUrl}/files/${refused[0]?.provider_file_id}/content`, {
      headers: { authorization: 'Bearer sk-fake-openai-0123456789' },
    })
    assert.equal(direct.status, 400)
    assert.equal(
      ((await direct.json()) as { error: { message: string } }).error.message,
      'Not allowed to download files of purpose: user_data',
    )

    const batch = await up('batch', 'requests.jsonl', '{"custom_id":"r1"}\n')
    const raw = await get(ctx, tenant, `/v1/files/${batch.id}/content`)
    assert.equal(raw.statusCode, 200, raw.body)
    assert.equal(raw.body, '{"custom_id":"r1"}\n')
    const image = await up('vision', 'pic.png', 'not really a png')
    assert.equal((await get(ctx, tenant, `/v1/files/${image.id}/content`)).body, 'not really a png')
    assert.equal(openai.requests.content, 3, 'two reads, and the direct call above')
  })
})

describe('GET /v1/limits: the operator cap beside the documented facts', () => {
  test('per purpose: effective and documented caps, counts, content, source; raising the operator cap shows them', async (t) => {
    const ctx = await setup(t, { GLM_MAX_FILE_BYTES: String(100 * MB) })
    if (!ctx) return
    await occupy(ctx, 'file-extract', 2)
    const res = await get(ctx, freshTenant(), '/v1/limits')
    assert.equal(res.statusCode, 200, res.body)
    type Purpose = {
      purpose: string
      max_file_bytes: number
      documented_max_file_bytes: number | null
      max_files: number | null
      files: number
      content_available: boolean
      source: string | null
    }
    type Limits = {
      provider: string
      max_file_bytes: number
      documented_max_file_bytes: number | null
      default_purpose: string
      purposes: Purpose[]
      docs: { region: string; read_on: string } | null
    }
    const data = (res.json() as { data: Limits[] }).data
    const glm = data.find((p) => p.provider === 'glm') as Limits
    const kimi = data.find((p) => p.provider === 'kimi') as Limits
    assert.equal(glm.max_file_bytes, 100 * MB)
    assert.equal(glm.default_purpose, 'agent')
    assert.deepEqual(glm.docs && { region: glm.docs.region, read_on: glm.docs.read_on }, {
      region: 'China (open.bigmodel.cn)',
      read_on: '2026-11-27',
    })
    const row = (limits: Limits, purpose: string) => limits.purposes.find((p) => p.purpose === purpose) as Purpose
    assert.equal(row(glm, 'batch').max_file_bytes, 100 * MB)
    assert.equal(row(glm, 'file-extract').max_file_bytes, 50 * MB)
    assert.equal(row(glm, 'file-extract').documented_max_file_bytes, 50 * MB)
    assert.equal(row(glm, 'file-extract').max_files, 100)
    assert.equal(row(glm, 'file-extract').files, 2)
    assert.equal(row(glm, 'file-extract').content_available, true)
    assert.equal(row(glm, 'agent').max_file_bytes, 20 * MB)
    assert.equal(row(glm, 'agent').max_files, 1000)
    assert.equal(row(glm, 'agent').content_available, false)
    assert.match(row(glm, 'agent').source ?? '', /^https:\/\/docs\.bigmodel\.cn\//)
    assert.equal(kimi.default_purpose, 'file-extract')
    assert.equal(kimi.documented_max_file_bytes, 100 * MB)
    assert.equal(row(kimi, 'batch').max_file_bytes, 100 * MB)
    assert.equal(row(kimi, 'file-extract').content_available, true)
    assert.equal(row(kimi, 'image').content_available, false)
  })
})
