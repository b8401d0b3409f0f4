/**
 * A client generated from openapi.yaml (openapi-typescript types, openapi-fetch) drives the
 * running service over real HTTP: upload, dedup, list, get, errors, delete, cleanup, copies and
 * ensure. This file typechecks against tests/.generated/filegate-api.d.ts (npm run openapi:types), so a
 * document that stops matching what clients send or read fails `npm run typecheck` as well.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import createClient from 'openapi-fetch'
import { generateClientTypes, typesPath } from '../../scripts/openapi-types.js'
import type { components, paths } from '../.generated/filegate-api.js'
import { build, fileDatabase, requirePostgres, startFakes, tempDir, testKeys } from '../helper.js'
import { keptApp } from './originals-kept-support.js'

type FileObject = components['schemas']['File']
type Problem = components['schemas']['Problem']
type UploadForm = paths['/v1/files']['post']['requestBody']['content']['multipart/form-data']

/** Text fields first, so the provider's size limit applies while the file streams. */
function toFormData(form: UploadForm): FormData {
  const data = new FormData()
  for (const [name, value] of Object.entries(form)) {
    if (name !== 'file' && value !== undefined) data.append(name, String(value))
  }
  data.append('file', form.file)
  return data
}

describe('typed client generated from openapi.yaml', () => {
  it('has its types generated from the committed document (else run npm run openapi:types)', async () => {
    const onDisk = await readFile(typesPath, 'utf8').catch(() => '')
    assert.equal(onDisk, await generateClientTypes(), `${typesPath} is stale: run npm run openapi:types`)
  })

  it('copies a file to another provider and ensures it after the provider forgot it (originals kept)', async (t) => {
    if (!(await requirePostgres(t))) return
    const ctx = await keptApp(t, await fileDatabase(t))
    await ctx.app.listen({ port: 0, host: '127.0.0.1' })
    const baseUrl = `http://127.0.0.1:${(ctx.app.server.address() as AddressInfo).port}`
    const alice = createClient<paths>({ baseUrl, headers: { authorization: `Bearer ${testKeys.alice}` } })
    const content = `typed client copies ${Date.now()}\n`
    const created = await alice.POST('/v1/files', {
      body: { provider: 'kimi', file: new File([content], 'notes.txt', { type: 'text/plain' }) },
      bodySerializer: toFormData,
    })
    assert.equal(created.response.status, 201, JSON.stringify(created.error))
    const file = created.data as FileObject
    assert.equal(file.original_stored, true)

    const copied = await alice.POST('/v1/files/{id}/copies', {
      params: { path: { id: file.id } },
      body: { provider: 'glm', expires_in: 3600 },
    })
    assert.equal(copied.response.status, 201, JSON.stringify(copied.error))
    assert.equal(copied.data?.provider, 'glm')
    assert.equal(copied.data?.deduplicated, false)
    assert.ok(copied.data?.expires_at)
    const again = await alice.POST('/v1/files/{id}/copies', {
      params: { path: { id: file.id } },
      body: { provider: 'glm' },
    })
    assert.equal(again.response.status, 200)
    assert.equal(again.data?.deduplicated, true)

    ctx.fakes.kimi.forget(file.provider_file_id as string)
    const ensured = await alice.POST('/v1/files/{id}/ensure', { params: { path: { id: file.id } } })
    assert.equal(ensured.response.status, 200, JSON.stringify(ensured.error))
    assert.equal(ensured.data?.id, file.id)
    assert.notEqual(ensured.data?.provider_file_id, file.provider_file_id)

    const missing = await alice.POST('/v1/files/{id}/ensure', {
      params: { path: { id: '00000000-0000-4000-8000-000000000000' } },
    })
    assert.equal(missing.response.status, 404)
    assert.equal(missing.error?.code, 'NOT_FOUND')
  })

  it('uploads, dedups, lists, gets, deletes and runs a cleanup against the running service', async (t) => {
    if (!(await requirePostgres(t))) return
    const db = await fileDatabase(t)
    const fakes = await startFakes(t)
    const app = await build(t, {
      DATABASE_URL: db.url,
      UPLOAD_TMP_DIR: await tempDir(t, 'filegate-spool-'),
      ...fakes.env,
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const baseUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
    const alice = createClient<paths>({ baseUrl, headers: { authorization: `Bearer ${testKeys.alice}` } })
    const admin = createClient<paths>({ baseUrl, headers: { authorization: `Bearer ${testKeys.admin}` } })

    const content = `typed client ${Date.now()}\n`
    const sha256 = createHash('sha256').update(content).digest('hex')
    const form = (): UploadForm => ({
      provider: 'kimi',
      purpose: 'file-extract',
      metadata: JSON.stringify({ suite: 'typed-client' }),
      file: new File([content], 'notes.txt', { type: 'text/plain' }),
    })

    // Upload: 201, a new provider file.
    const created = await alice.POST('/v1/files', { body: form(), bodySerializer: toFormData })
    assert.equal(created.response.status, 201, JSON.stringify(created.error))
    const file: FileObject | undefined = created.data
    assert.ok(file)
    assert.equal(file.deduplicated, false)
    assert.equal(file.sha256, sha256)
    assert.equal(file.status, 'completed')
    // Kimi has no processing state: the typed field is there, null.
    const state: 'processing' | 'active' | 'failed' | null = file.provider_state
    assert.equal(state, null)
    assert.equal(file.filename, 'notes.txt')
    assert.deepEqual(file.metadata, { suite: 'typed-client' })
    assert.ok(file.provider_file_id)
    assert.equal(fakes.kimi.uploads.length, 1)

    // The same content again, declared by hash: 200 from the live duplicate, no provider upload.
    const again = await alice.POST('/v1/files', {
      params: { header: { 'x-content-sha256': sha256 } },
      body: form(),
      bodySerializer: toFormData,
    })
    assert.equal(again.response.status, 200, JSON.stringify(again.error))
    assert.equal(again.data?.deduplicated, true)
    assert.equal(again.data?.id, file.id)
    assert.equal(fakes.kimi.uploads.length, 1)

    // List, with the query parameters typed (limit and include_deleted are optional).
    const list = await alice.GET('/v1/files', { params: { query: { provider: 'kimi', sha256 } } })
    assert.equal(list.response.status, 200)
    assert.deepEqual(
      list.data?.data.map((f) => f.id),
      [file.id],
    )
    assert.equal(list.data?.has_more, false)
    assert.equal(list.data?.next_cursor, null)

    // Get.
    const got = await alice.GET('/v1/files/{id}', { params: { path: { id: file.id } } })
    assert.equal(got.response.status, 200)
    assert.equal(got.data?.sha256, sha256)

    // Errors arrive as typed problem+json.
    const missing = await alice.GET('/v1/files/{id}', {
      params: { path: { id: '00000000-0000-4000-8000-000000000000' } },
    })
    assert.equal(missing.response.status, 404)
    assert.match(missing.response.headers.get('content-type') ?? '', /^application\/problem\+json/)
    const problem: Problem | undefined = missing.error
    assert.equal(problem?.code, 'NOT_FOUND')
    const badLimit = await alice.GET('/v1/files', { params: { query: { limit: 101 } } })
    assert.equal(badLimit.response.status, 400)
    assert.equal(badLimit.error?.code, 'VALIDATION_FAILED')
    const anonymous = await createClient<paths>({ baseUrl }).GET('/v1/limits')
    assert.equal(anonymous.response.status, 401)
    assert.equal(anonymous.error?.code, 'UNAUTHORIZED')

    // Cleanup (admin): a dry run changes nothing and reports per job.
    const dryRun = await admin.POST('/v1/cleanup', { body: { dry_run: true, jobs: ['expired', 'stuck'] } })
    assert.equal(dryRun.response.status, 200, JSON.stringify(dryRun.error))
    assert.equal(dryRun.data?.dry_run, true)
    assert.deepEqual(Object.keys(dryRun.data?.jobs ?? {}).sort(), ['expired', 'stuck'])
    const forbidden = await alice.POST('/v1/cleanup', { body: { dry_run: true } })
    assert.equal(forbidden.response.status, 403)
    assert.equal(forbidden.error?.code, 'FORBIDDEN')

    // Delete: the tombstone, then the same tombstone again (idempotent).
    const deleted = await alice.DELETE('/v1/files/{id}', { params: { path: { id: file.id } } })
    assert.equal(deleted.response.status, 200)
    assert.equal(deleted.data?.status, 'deleted')
    assert.equal(deleted.data?.deletion_reason, 'manual')
    const deletedAgain = await alice.DELETE('/v1/files/{id}', { params: { path: { id: file.id } } })
    assert.equal(deletedAgain.response.status, 200)
    assert.equal(deletedAgain.data?.id, file.id)
    assert.equal(deletedAgain.data?.deleted_at, deleted.data?.deleted_at)

    const afterDelete = await alice.GET('/v1/files', { params: { query: { sha256, include_deleted: true } } })
    assert.deepEqual(
      afterDelete.data?.data.map((f) => [f.id, f.status]),
      [[file.id, 'deleted']],
    )
  })

  it('fetches an original (GET /v1/files/{id}/original) and reads its 409 as a typed problem', async (t) => {
    if (!(await requirePostgres(t))) return
    const db = await fileDatabase(t)
    const fakes = await startFakes(t)
    const root = await tempDir(t, 'filegate-originals-')
    const app = await build(t, {
      DATABASE_URL: db.url,
      UPLOAD_TMP_DIR: await tempDir(t, 'filegate-spool-'),
      ORIGINALS_URL: `file://${root}`,
      ...fakes.env,
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const baseUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
    const alice = createClient<paths>({ baseUrl, headers: { authorization: `Bearer ${testKeys.alice}` } })
    const content = `an original ${Date.now()}\n`
    const created = await alice.POST('/v1/files', {
      body: { provider: 'kimi', file: new File([content], 'kept.txt', { type: 'text/plain' }) },
      bodySerializer: toFormData,
    })
    assert.equal(created.response.status, 201, JSON.stringify(created.error))
    assert.equal(created.data?.original_stored, true)
    const id = created.data?.id ?? ''
    const original = await alice.GET('/v1/files/{id}/original', { params: { path: { id } }, parseAs: 'text' })
    assert.equal(original.response.status, 200)
    assert.equal(original.data, content)
    assert.match(original.response.headers.get('content-disposition') ?? '', /^attachment; filename="kept.txt"/)

    await app.originals?.remove({ tenant: 'alice', sha256: created.data?.sha256 ?? '' })
    const gone = await alice.GET('/v1/files/{id}/original', { params: { path: { id } } })
    assert.equal(gone.response.status, 409)
    const problem: Problem | undefined = gone.error
    assert.equal(problem?.code, 'ORIGINAL_UNAVAILABLE')
  })
})
