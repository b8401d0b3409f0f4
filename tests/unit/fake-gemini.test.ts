/**
 * The fake Gemini Files API answers as https://ai.google.dev/api/files documents: a resumable upload
 * in chunks whose interrupted chunk is resumed from the size the server reports (not restarted),
 * PROCESSING → ACTIVE, list pages, delete, and errors in the google.rpc.Status shape.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { type FakeGemini, startFakeGemini } from '../fakes/gemini-server.js'

let fake: FakeGemini
before(async () => {
  fake = await startFakeGemini()
})
after(() => fake.close())

const KiB = 1024
const key = () => ({ 'x-goog-api-key': fake.apiKey })

async function start(bytes: number, name = 'report.pdf'): Promise<Response> {
  return fetch(`${fake.baseUrl}/upload/v1beta/files`, {
    method: 'POST',
    headers: {
      ...key(),
      'x-goog-upload-protocol': 'resumable',
      'x-goog-upload-command': 'start',
      'x-goog-upload-header-content-length': String(bytes),
      'x-goog-upload-header-content-type': 'application/pdf',
      'content-type': 'application/json',
    },
    body: JSON.stringify({ file: { display_name: name } }),
  })
}

const chunk = (url: string, offset: number, body: Buffer, last: boolean) =>
  fetch(url, {
    method: 'POST',
    headers: { 'x-goog-upload-command': last ? 'upload, finalize' : 'upload', 'x-goog-upload-offset': String(offset) },
    body,
  })

describe('fake Gemini Files API', () => {
  it('uploads in chunks and resumes an interrupted chunk from the size the server reports', async () => {
    const content = randomBytes(1024 * KiB)
    const started = await start(content.length)
    assert.equal(started.status, 200)
    const url = started.headers.get('x-goog-upload-url') as string
    assert.match(url, /\/upload\/v1beta\/files\/sessions\//)

    const size = 256 * KiB
    fake.interruptNextChunkAfter(100 * KiB)
    const broken = await chunk(url, 0, content.subarray(0, size), false)
    assert.equal(broken.status, 503)
    assert.equal(((await broken.json()) as { error: { status: string } }).error.status, 'UNAVAILABLE')

    const query = await fetch(url, { method: 'POST', headers: { 'x-goog-upload-command': 'query' } })
    const received = Number(query.headers.get('x-goog-upload-size-received'))
    assert.equal(received, 100 * KiB)

    const wrong = await chunk(url, 0, content.subarray(0, size), false)
    assert.equal(wrong.status, 400, 'an offset behind what was received is refused')

    let offset = received
    let final: Response | undefined
    while (offset < content.length) {
      const end = Math.min(content.length, offset + size)
      const answer = await chunk(url, offset, content.subarray(offset, end), end === content.length)
      assert.equal(answer.status, 200)
      if (end === content.length) final = answer
      offset = end
    }
    assert.ok(final, 'the last chunk was answered')
    assert.equal(final.headers.get('x-goog-upload-status'), 'final')
    const { file } = (await final.json()) as {
      file: { name: string; sizeBytes: string; sha256Hash: string; state: string }
    }
    assert.equal(file.sizeBytes, String(content.length))
    assert.equal(file.sha256Hash, createHash('sha256').update(content).digest('base64'))
    assert.equal(file.state, 'ACTIVE')
    const upload = fake.uploads.find((u) => u.name === file.name)
    assert.equal(upload?.sha256, createHash('sha256').update(content).digest('hex'))
  })

  it('answers PROCESSING until the file has been read a few times, then ACTIVE or FAILED', async () => {
    fake.processingPolls = 2
    try {
      const content = Buffer.from('a video, say')
      const url = (await start(content.length)).headers.get('x-goog-upload-url') as string
      const { file } = (await (await chunk(url, 0, content, true)).json()) as { file: { name: string; state: string } }
      assert.equal(file.state, 'PROCESSING')
      const states: string[] = []
      for (let i = 0; i < 3; i++) {
        const got = await fetch(`${fake.baseUrl}/v1beta/${file.name}`, { headers: key() })
        states.push(((await got.json()) as { state: string }).state)
      }
      assert.deepEqual(states, ['PROCESSING', 'PROCESSING', 'ACTIVE'])

      fake.failProcessing = 'Video codec not supported'
      const url2 = (await start(content.length)).headers.get('x-goog-upload-url') as string
      const second = (await (await chunk(url2, 0, content, true)).json()) as { file: { name: string } }
      let last: { state: string; error?: { message: string } } = { state: '' }
      for (let i = 0; i < 3; i++) {
        const got = await fetch(`${fake.baseUrl}/v1beta/${second.file.name}`, { headers: key() })
        last = (await got.json()) as typeof last
      }
      assert.equal(last.state, 'FAILED')
      assert.equal(last.error?.message, 'Video codec not supported')
    } finally {
      fake.processingPolls = 0
      fake.failProcessing = null
    }
  })

  it('lists in pages, deletes, and answers a gone file 404 NOT_FOUND', async () => {
    for (let i = 0; i < 3; i++) fake.addFile({ displayName: `listed-${i}` })
    const names: string[] = []
    let token: string | undefined
    do {
      const page = (await (
        await fetch(`${fake.baseUrl}/v1beta/files?pageSize=2${token ? `&pageToken=${token}` : ''}`, { headers: key() })
      ).json()) as { files: Array<{ name: string }>; nextPageToken?: string }
      assert.ok(page.files.length <= 2)
      names.push(...page.files.map((f) => f.name))
      token = page.nextPageToken
    } while (token)
    assert.equal(names.length, fake.files.size)

    const victim = names[0] as string
    assert.equal((await fetch(`${fake.baseUrl}/v1beta/${victim}`, { method: 'DELETE', headers: key() })).status, 200)
    const gone = await fetch(`${fake.baseUrl}/v1beta/${victim}`, { headers: key() })
    assert.equal(gone.status, 404)
    assert.equal(((await gone.json()) as { error: { status: string } }).error.status, 'NOT_FOUND')
  })

  it('refuses a wrong key, rate limits with Retry-After, and says when the project storage is full', async () => {
    const bad = await fetch(`${fake.baseUrl}/v1beta/files`, { headers: { 'x-goog-api-key': 'nope' } })
    assert.equal(bad.status, 400)
    assert.equal(((await bad.json()) as { error: { status: string } }).error.status, 'INVALID_ARGUMENT')

    fake.rateLimitNext(1, 7, 'start')
    const limited = await start(10)
    assert.equal(limited.status, 429)
    assert.equal(limited.headers.get('retry-after'), '7')
    assert.equal(((await limited.json()) as { error: { status: string } }).error.status, 'RESOURCE_EXHAUSTED')

    fake.quotaExceeded = true
    try {
      const full = await start(10)
      assert.equal(full.status, 429)
    } finally {
      fake.quotaExceeded = false
    }
    const tooBig = await start(fake.maxFileBytes + 1)
    assert.equal(tooBig.status, 400)
  })
})
