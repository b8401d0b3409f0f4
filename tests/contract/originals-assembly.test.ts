/**
 * A finished resumable upload's original assembled by the originals store from its staged segments
 * (OriginalsStore.assemble, through the staging area's read): with S3 the bucket copies the segments
 * into the content address (UploadPartCopy, or CopyObject for one segment), so no PutObject or
 * UploadPart carries the file's bytes at the commit; only the versions the read saw are copied;
 * nothing is visible before the commit; a segment other than the last under 5 MiB, or a store
 * without part copies (s3rver itself: 501) keep the bytes another way. A directory store links an
 * upload of one segment under its content address, and joins no others.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { describe, it, type TestContext } from 'node:test'
import { createOriginalsStore } from '../../src/originals/index.js'
import type { OriginalsStore } from '../../src/originals/store.js'
import { createStagingArea } from '../../src/staging/index.js'
import { type S3Server, startS3Server } from '../fakes/s3-server.js'
import { tempDir } from '../helper.js'

const MiB = 1024 * 1024
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')
const tenant = 'acme'

async function s3Store(t: TestContext, s3: S3Server, endpoint = s3.endpoint): Promise<OriginalsStore> {
  const store = await createOriginalsStore({ url: `s3://${s3.bucket}/originals`, s3: { ...s3.options, endpoint } })
  t.after(() => store.close())
  return store
}

/** Stages `content` as an upload's segments of the given sizes; what the completion then reads. */
async function segmentsOf(store: OriginalsStore, content: Buffer, sizes: number[]) {
  const staging = createStagingArea(store, '/nonexistent')
  const upload = { id: randomUUID(), tenant }
  const segments: Array<{ id: string; bytes: number }> = []
  let offset = 0
  for (const size of sizes) {
    const id = randomUUID()
    const bytes = await staging.write(upload.id, id, Readable.from([content.subarray(offset, offset + size)]))
    segments.push({ id, bytes })
    offset += size
  }
  assert.equal(offset, content.length)
  return { staging, upload, segments }
}

/** Reads the segments as the completion does (hashing them); the staged original that came with the read. */
async function readAll(staged: Awaited<ReturnType<typeof segmentsOf>>) {
  const read = staged.staging.read(staged.upload, staged.segments)
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of read.stream) {
    hash.update(chunk as Buffer)
    bytes += (chunk as Buffer).byteLength
  }
  return { original: read.original, content: { sha256: hash.digest('hex'), bytes } }
}

async function readBack(store: OriginalsStore, sha256: string): Promise<string> {
  const { stream } = await store.read({ tenant, sha256 })
  const hash = createHash('sha256')
  for await (const chunk of stream) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** The requests the bucket got since `from`: those carrying bytes of their own, and the copies. */
function since(s3: S3Server, from: number) {
  const requests = s3.requests().slice(from)
  return {
    requests,
    bodies: requests.filter((r) => (r.method === 'PUT' || r.method === 'POST') && r.bytes > 1024 && !r.copySource),
    partCopies: requests.filter((r) => r.method === 'PUT' && r.copySource && r.query.has('uploadId')),
    objectCopies: requests.filter((r) => r.method === 'PUT' && r.copySource && !r.query.has('uploadId')),
    creates: requests.filter((r) => r.method === 'POST' && r.query.has('uploads')),
    aborts: requests.filter((r) => r.method === 'DELETE' && r.query.has('uploadId')),
  }
}

describe('originals store: s3, a resumable upload assembled from its segments', () => {
  it('copies the segments in the bucket: no byte of the file is sent again at the commit', async (t) => {
    const s3 = await startS3Server(t)
    const store = await s3Store(t, s3)
    const content = randomBytes(11 * MiB + 7)
    const staged = await segmentsOf(store, content, [5 * MiB, 5 * MiB, MiB + 7])
    const { original, content: read } = await readAll(staged)
    assert.ok(original, 'every segment but the last is 5 MiB or more')
    assert.equal(read.sha256, sha(content))
    assert.equal(await store.stat({ tenant, sha256: sha(content) }), null, 'nothing visible before the commit')
    const from = s3.requests().length
    assert.equal(await original.commit(read), 'created')
    const calls = since(s3, from)
    assert.deepEqual(calls.bodies, [], 'no PutObject or UploadPart carried bytes')
    assert.equal(calls.creates.length, 1)
    assert.deepEqual(
      calls.partCopies.map((r) => Number(r.query.get('partNumber'))).sort(),
      [1, 2, 3],
      'one UploadPartCopy per segment',
    )
    assert.ok(calls.partCopies.every((r) => r.key === `originals/${tenant}/${sha(content)}`))
    assert.equal(await readBack(store, sha(content)), sha(content), 'the original is the content, whole')
    await original.discard() // after a commit: nothing to do, and no error
  })

  it('one segment is one CopyObject; content already kept is left as it is', async (t) => {
    const s3 = await startS3Server(t)
    const store = await s3Store(t, s3)
    const content = randomBytes(3 * MiB)
    const first = await readAll(await segmentsOf(store, content, [content.length]))
    let from = s3.requests().length
    assert.equal(await first.original?.commit(first.content), 'created')
    let calls = since(s3, from)
    assert.equal(calls.objectCopies.length, 1)
    assert.deepEqual([calls.bodies, calls.creates], [[], []])
    const again = await readAll(await segmentsOf(store, content, [2 * MiB, MiB]))
    assert.equal(again.original, undefined, 'a first segment under 5 MiB: the bytes are kept another way')
    const third = await readAll(await segmentsOf(store, content, [content.length]))
    from = s3.requests().length
    assert.equal(await third.original?.commit(third.content), 'existing')
    calls = since(s3, from)
    assert.deepEqual([calls.objectCopies, calls.partCopies, calls.bodies], [[], [], []])
  })

  it('copies only the versions the read saw: a segment replaced after it was read fails the commit', async (t) => {
    const s3 = await startS3Server(t)
    const store = await s3Store(t, s3)
    const content = randomBytes(6 * MiB)
    const staged = await segmentsOf(store, content, [5 * MiB, MiB])
    const { original, content: read } = await readAll(staged)
    const second = staged.segments[1] as { id: string }
    await s3.put(`originals/.resumable/${staged.upload.id}/${second.id}`, randomBytes(MiB))
    const from = s3.requests().length
    await assert.rejects(original?.commit(read) ?? Promise.resolve(), /precondition/i)
    assert.equal(await store.stat({ tenant, sha256: sha(content) }), null, 'nothing under the content address')
    assert.equal(since(s3, from).aborts.length, 1, 'the multipart upload aborted')
    // One segment (a CopyObject) likewise.
    const single = await segmentsOf(store, content, [content.length])
    const one = await readAll(single)
    const replaced = `originals/.resumable/${single.upload.id}/${(single.segments[0] as { id: string }).id}`
    await s3.put(replaced, randomBytes(content.length))
    await assert.rejects(one.original?.commit(one.content) ?? Promise.resolve(), /precondition/i)
    assert.equal(await store.stat({ tenant, sha256: sha(content) }), null)
  })

  it('refuses a commit before the segments were read, or of another size', async (t) => {
    const s3 = await startS3Server(t)
    const store = await s3Store(t, s3)
    const content = randomBytes(5 * MiB + 1)
    const staged = await segmentsOf(store, content, [5 * MiB, 1])
    const unread = staged.staging.read(staged.upload, staged.segments)
    unread.stream.destroy()
    await assert.rejects(unread.original?.commit({ sha256: sha(content), bytes: content.length }) ?? Promise.resolve())
    const { original, content: read } = await readAll(staged)
    await assert.rejects(original?.commit({ ...read, bytes: read.bytes - 1 }) ?? Promise.resolve(), /bytes/)
    assert.equal(await store.stat({ tenant, sha256: sha(content) }), null)
  })

  it('a store that copies no parts (s3rver itself: 501) gets the segments through once, then no assembly', async (t) => {
    const s3 = await startS3Server(t)
    const store = await s3Store(t, s3, s3.upstream)
    const content = randomBytes(10 * MiB + 3)
    const { original, content: read } = await readAll(await segmentsOf(store, content, [5 * MiB, 5 * MiB + 3]))
    assert.equal(await original?.commit(read), 'created')
    assert.equal(await readBack(store, sha(content)), sha(content))
    const later = await readAll(await segmentsOf(store, randomBytes(6 * MiB), [5 * MiB, MiB]))
    assert.equal(later.original, undefined, 'the store said it copies no parts: later uploads are kept as read')
  })
})

describe('originals store: local directory, a resumable upload', () => {
  async function directoryStore(t: TestContext) {
    const root = await tempDir(t, 'fg-originals-')
    const store = await createOriginalsStore({
      url: `file://${root}`,
      s3: { region: 'us-east-1', forcePathStyle: false },
    })
    t.after(() => store.close())
    return { root, store }
  }

  it('one segment is linked under its content address: the original is that very file', async (t) => {
    const { root, store } = await directoryStore(t)
    const content = randomBytes(3 * MiB + 1)
    const staged = await segmentsOf(store, content, [content.length])
    const { original, content: read } = await readAll(staged)
    assert.ok(original)
    assert.equal(await store.stat({ tenant, sha256: sha(content) }), null, 'nothing visible before the commit')
    assert.equal(await original.commit(read), 'created')
    const segment = join(root, '.resumable', staged.upload.id, (staged.segments[0] as { id: string }).id)
    const [kept, source] = await Promise.all([stat(join(root, tenant, sha(content))), stat(segment)])
    assert.equal(kept.ino, source.ino, 'a link, not a copy')
    await staged.staging.remove(staged.upload.id)
    assert.equal(await readBack(store, sha(content)), sha(content), 'the original outlives the staged segment')
    const again = await readAll(await segmentsOf(store, content, [content.length]))
    assert.equal(await again.original?.commit(again.content), 'existing')
  })

  it('several segments are not joined (the completion keeps the bytes it reads); a replaced one is refused', async (t) => {
    const { root, store } = await directoryStore(t)
    const content = randomBytes(6 * MiB)
    assert.equal((await readAll(await segmentsOf(store, content, [5 * MiB, MiB]))).original, undefined)
    const staged = await segmentsOf(store, content, [content.length])
    const { original, content: read } = await readAll(staged)
    const segment = join(root, '.resumable', staged.upload.id, (staged.segments[0] as { id: string }).id)
    await rm(segment)
    await writeFile(segment, content)
    await assert.rejects(original?.commit(read) ?? Promise.resolve(), /not the file that was read/)
    assert.equal(await store.stat({ tenant, sha256: sha(content) }), null)
  })
})
