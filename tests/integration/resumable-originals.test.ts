/**
 * Resumable uploads with originals kept in S3 (s3rver behind a front that adds UploadPartCopy and
 * notes every request): the finished file becomes the original without another copy of its bytes.
 * Once every segment is staged, the completion sends no PutObject or UploadPart carrying the file to
 * the bucket: the bucket assembles the original from the segments (tus chunks, OpenAI parts, of
 * 5 MiB or more but the last). Smaller chunks are kept as they are read instead, and either way the
 * original serves the very bytes the provider got. With a directory store, an upload sent in one
 * PATCH is linked into place.
 */
import assert from 'node:assert/strict'
import { describe, it, type TestContext } from 'node:test'
import OpenAI from 'openai'
import { startS3Server } from '../fakes/s3-server.js'
import { auth, postgresSuiteSkip, tempDir, testKeys } from '../helper.js'
import { content, md5, type Served, serve, sha256, suiteDatabase, tusUpload } from './resumable-support.js'

const skip = await postgresSuiteSkip()
const db = suiteDatabase(skip)
const MiB = 1024 * 1024

async function withS3(t: TestContext) {
  const s3 = await startS3Server(t)
  const s = await serve(
    t,
    {
      ORIGINALS_URL: `s3://${s3.bucket}/originals`,
      S3_ENDPOINT: s3.endpoint,
      S3_ACCESS_KEY_ID: 'S3RVER',
      S3_SECRET_ACCESS_KEY: 'S3RVER',
      S3_FORCE_PATH_STYLE: 'true',
    },
    db(),
  )
  return { s, s3 }
}

/** The File's original, read back through the API, hashed. */
async function originalOf(s: Served, fileId: string): Promise<string> {
  const res = await s.app.inject({ url: `/v1/files/${fileId}/original`, headers: auth(testKeys.alice) })
  assert.equal(res.statusCode, 200)
  return sha256(res.rawPayload)
}

describe('resumable uploads: the original from the staged segments', { skip }, () => {
  it('tus in 5 MiB chunks: the bucket assembles the original, no byte of the file sent to it again', async (t) => {
    const { s, s3 } = await withS3(t)
    const bytes = content(11 * MiB + 5, 'originals-tus-large-chunks')
    let staged = 0
    const done = await tusUpload(
      s.base,
      testKeys.alice,
      bytes,
      { filename: 'film.txt', provider: 'kimi' },
      { chunkSize: 5 * MiB },
    )
    assert.ok(done.fileId)
    const requests = s3.requests()
    // What reached the bucket once the last chunk was staged: the completion's requests.
    const lastStaged = requests.findLastIndex(
      (r) => r.method === 'PUT' && r.key.startsWith('originals/.resumable/') && !r.copySource,
    )
    staged = requests.slice(0, lastStaged + 1).filter((r) => r.key.startsWith('originals/.resumable/')).length
    assert.ok(staged >= 3, 'the three chunks were staged')
    const completion = requests.slice(lastStaged + 1)
    const carrying = completion.filter(
      (r) => (r.method === 'PUT' || r.method === 'POST') && r.bytes > 0 && !r.copySource,
    )
    assert.deepEqual(
      carrying.filter((r) => !r.query.has('uploadId') || r.query.has('partNumber')),
      [],
      'no PutObject or UploadPart carrying bytes at the completion',
    )
    const target = `originals/alice/${sha256(bytes)}`
    const copies = completion.filter((r) => r.copySource && r.key === target)
    assert.equal(copies.length, 3, 'one UploadPartCopy per chunk, into the content address')
    assert.ok(copies.every((r) => r.query.has('partNumber')))
    assert.equal(s.fakes.kimi.uploads[0]?.sha256, sha256(bytes))
    const file = (await s.app.inject({ url: `/v1/files/${done.fileId}`, headers: auth(testKeys.alice) })).json()
    assert.equal(file.original_stored, true)
    assert.equal(await originalOf(s, done.fileId as string), sha256(bytes), 'the original is the file')
  })

  it('OpenAI parts of 6 MiB, sent out of order: the original assembled in the order complete names', async (t) => {
    const { s, s3 } = await withS3(t)
    const openai = new OpenAI({ apiKey: testKeys.alice, baseURL: `${s.base}/providers/kimi/v1`, maxRetries: 0 })
    const bytes = content(13 * MiB + 1, 'originals-openai-parts')
    const upload = await openai.uploads.create({
      bytes: bytes.length,
      filename: 'doc.txt',
      mime_type: 'text/plain',
      purpose: 'file-extract' as never,
    })
    const ranges = [
      [0, 6 * MiB],
      [6 * MiB, 12 * MiB],
      [12 * MiB, bytes.length],
    ] as const
    const parts = await Promise.all(
      [...ranges]
        .reverse()
        .map(([from, to]) =>
          openai.uploads.parts.create(upload.id, { data: new File([bytes.subarray(from, to)], 'part') }),
        ),
    )
    const from = s3.requests().length
    const done = await openai.uploads.complete(upload.id, {
      part_ids: parts.reverse().map((p) => p.id),
      md5: md5(bytes),
    })
    assert.equal(done.status, 'completed')
    const completion = s3.requests().slice(from)
    assert.deepEqual(
      completion.filter((r) => r.method === 'PUT' && r.bytes > 0 && !r.copySource),
      [],
      'no PutObject or UploadPart carrying bytes at the completion',
    )
    assert.equal(completion.filter((r) => r.copySource && r.key === `originals/alice/${sha256(bytes)}`).length, 3)
    const [sent] = s.fakes.kimi.uploads
    assert.equal(sent?.sha256, sha256(bytes))
    const fileRow = (
      await s.app.inject({ url: `/v1/files?sha256=${sha256(bytes)}`, headers: auth(testKeys.alice) })
    ).json().data[0] as { id: string }
    assert.equal(await originalOf(s, fileRow.id), sha256(bytes))
  })

  it('tus in small chunks: the original is kept from the completion’s read (a copy), whole', async (t) => {
    const { s, s3 } = await withS3(t)
    const bytes = content(700 * 1024 + 9, 'originals-tus-small-chunks')
    const done = await tusUpload(s.base, testKeys.alice, bytes, { filename: 'small.txt', provider: 'kimi' })
    assert.ok(done.fileId)
    const copies = s3.requests().filter((r) => r.copySource && r.key === `originals/alice/${sha256(bytes)}`)
    assert.equal(copies.length, 1, 'the staged copy moved to its content address (CopyObject), as for any upload')
    assert.equal(await originalOf(s, done.fileId as string), sha256(bytes))
  })

  it('a directory store: a tus upload sent in one PATCH becomes its original by a link', async (t) => {
    const root = await tempDir(t, 'fg-originals-')
    const s = await serve(t, { ORIGINALS_URL: `file://${root}` }, db())
    const bytes = content(2 * MiB + 3, 'originals-directory-one-patch')
    const done = await tusUpload(
      s.base,
      testKeys.alice,
      bytes,
      { filename: 'one.txt', provider: 'kimi' },
      {
        chunkSize: Number.POSITIVE_INFINITY,
      },
    )
    assert.ok(done.fileId)
    const file = (await s.app.inject({ url: `/v1/files/${done.fileId}`, headers: auth(testKeys.alice) })).json()
    assert.equal(file.original_stored, true)
    assert.equal(await originalOf(s, done.fileId as string), sha256(bytes))
    assert.equal(s.fakes.kimi.uploads[0]?.sha256, sha256(bytes))
  })
})
