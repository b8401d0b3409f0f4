/**
 * The fake Anthropic Files API answers as https://docs.claude.com/en/api/files-create and its
 * sibling pages document: the version and beta headers, the file object, list pages, content only
 * for downloadable files, delete, and errors in the {"type":"error","error":{type,message}} shape.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { type FakeAnthropic, startFakeAnthropic } from '../fakes/anthropic-server.js'

let fake: FakeAnthropic
before(async () => {
  fake = await startFakeAnthropic()
})
after(() => fake.close())

const headers = () => ({
  'x-api-key': fake.apiKey,
  'anthropic-version': '2023-06-01',
  'anthropic-beta': 'files-api-2025-04-14',
})

function upload(content: Buffer, name = 'notes.pdf', extra: Record<string, string> = {}) {
  const form = new FormData()
  form.append('file', new Blob([content], { type: 'application/pdf' }), name)
  return fetch(`${fake.baseUrl}/files`, { method: 'POST', headers: { ...headers(), ...extra }, body: form })
}

const errorOf = async (res: Response) => ((await res.json()) as { type: string; error: { type: string } }).error.type

describe('fake Anthropic Files API', () => {
  it('uploads, retrieves, lists and deletes in the documented shapes', async () => {
    const content = randomBytes(200 * 1024)
    const created = await upload(content)
    assert.equal(created.status, 200)
    const file = (await created.json()) as Record<string, unknown>
    assert.deepEqual(Object.keys(file).sort(), [
      'created_at',
      'downloadable',
      'filename',
      'id',
      'mime_type',
      'size_bytes',
      'type',
    ])
    assert.equal(file.type, 'file')
    assert.equal(file.size_bytes, content.length)
    assert.equal(file.downloadable, false)
    assert.equal(fake.uploads.at(-1)?.sha256, createHash('sha256').update(content).digest('hex'))

    const got = await fetch(`${fake.baseUrl}/files/${file.id}`, { headers: headers() })
    assert.equal(((await got.json()) as { id: string }).id, file.id)

    await upload(Buffer.from('second'))
    const page = (await (await fetch(`${fake.baseUrl}/files?limit=1`, { headers: headers() })).json()) as {
      data: Array<{ id: string }>
      has_more: boolean
      last_id: string
    }
    assert.equal(page.data.length, 1)
    assert.equal(page.has_more, true)
    const next = (await (
      await fetch(`${fake.baseUrl}/files?limit=1&after_id=${page.last_id}`, { headers: headers() })
    ).json()) as { data: Array<{ id: string }> }
    assert.notEqual(next.data[0]?.id, page.data[0]?.id)

    const content404 = await fetch(`${fake.baseUrl}/files/${file.id}/content`, { headers: headers() })
    assert.equal(content404.status, 400, 'an uploaded file is not downloadable')

    const deleted = await fetch(`${fake.baseUrl}/files/${file.id}`, { method: 'DELETE', headers: headers() })
    assert.deepEqual(await deleted.json(), { id: file.id, type: 'file_deleted' })
    const gone = await fetch(`${fake.baseUrl}/files/${file.id}`, { headers: headers() })
    assert.equal(gone.status, 404)
    assert.equal(await errorOf(gone), 'not_found_error')
  })

  it('wants the key, the version and the beta header', async () => {
    const noKey = await fetch(`${fake.baseUrl}/files`, { headers: { ...headers(), 'x-api-key': 'wrong' } })
    assert.equal(noKey.status, 401)
    assert.equal(await errorOf(noKey), 'authentication_error')
    const noBeta = await fetch(`${fake.baseUrl}/files`, {
      headers: { 'x-api-key': fake.apiKey, 'anthropic-version': '2023-06-01' },
    })
    assert.equal(noBeta.status, 400)
    assert.equal(await errorOf(noBeta), 'invalid_request_error')
  })

  it('rate limits with retry-after, overloads with 529, and refuses what is too large or over storage', async () => {
    fake.rateLimitNext(1, 3, 'upload')
    const limited = await upload(Buffer.from('x'))
    assert.equal(limited.status, 429)
    assert.equal(limited.headers.get('retry-after'), '3')
    assert.equal(await errorOf(limited), 'rate_limit_error')

    fake.failNext(1, 529, 'upload')
    const overloaded = await upload(Buffer.from('x'))
    assert.equal(overloaded.status, 529)
    assert.equal(await errorOf(overloaded), 'overloaded_error')

    fake.maxFileBytes = 1024
    try {
      const tooLarge = await upload(randomBytes(4096))
      assert.equal(tooLarge.status, 413)
      assert.equal(await errorOf(tooLarge), 'request_too_large')
    } finally {
      fake.maxFileBytes = 500 * 1024 * 1024
    }
    fake.storageFull = true
    try {
      const full = await upload(Buffer.from('x'))
      assert.equal(full.status, 403)
    } finally {
      fake.storageFull = false
    }
  })
})
