/**
 * The originals store, the same cases on both backends: a local directory and a real S3-protocol
 * server (s3rver) through the AWS SDK. Content-addressed per tenant, staged writes that only become
 * visible after their hash matched, concurrent writers leaving one object, reads that never deliver a
 * corrupted object whole, and nothing left in staging on any path.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { type AddressInfo, connect, createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { describe, it, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { createOriginalsStore, parseOriginalsUrl } from '../../src/originals/index.js'
import { OriginalCorruptError, OriginalMissingError, type OriginalsStore } from '../../src/originals/store.js'
import { startS3Server } from '../fakes/s3-server.js'
import { tempDir } from '../helper.js'

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')
/** What the writer of `b` hands the commit: the hash it computed and the size. */
const contentOf = (b: Buffer) => ({ sha256: sha(b), bytes: b.length })

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of items) out.push(item)
  return out
}

/** Reads a stream to its end, or to its error: the bytes received and the error, if any. */
async function drain(stream: Readable): Promise<{ received: number; digest: string; error?: unknown }> {
  const hash = createHash('sha256')
  let received = 0
  try {
    for await (const chunk of stream) {
      received += (chunk as Buffer).length
      hash.update(chunk as Buffer)
    }
    return { received, digest: hash.digest('hex') }
  } catch (error) {
    return { received, digest: hash.digest('hex'), error }
  }
}

/** A body of `chunks` 64 KiB chunks, optionally failing after `failAfter` of them. */
function body(content: Buffer, failAfter?: number): Readable {
  return Readable.from(
    (function* () {
      for (let i = 0, n = 0; i < content.length; i += 64 * 1024, n++) {
        if (failAfter !== undefined && n === failAfter) throw new Error('client went away')
        yield content.subarray(i, i + 64 * 1024)
      }
    })(),
  )
}

/** Fresh part file paths in a directory that must be empty after the test, whatever became of the upload. */
async function partFiles(t: TestContext): Promise<() => Promise<string>> {
  const partDir = await mkdtemp(join(tmpdir(), 'fg-parts-'))
  let parts = 0
  t.after(async () => {
    const left = await readdir(partDir)
    await rm(partDir, { recursive: true, force: true })
    assert.deepEqual(left, [], 'no part file is left')
  })
  return async () => join(partDir, `part-${parts++}`)
}

interface Backend {
  name: string
  open(
    t: TestContext,
  ): Promise<{ store: OriginalsStore; corrupt(tenant: string, sha256: string, bytes: Buffer): Promise<void> }>
}

const backends: Backend[] = [
  {
    name: 'local directory',
    async open(t) {
      const root = await tempDir(t, 'fg-originals-')
      const store = await createOriginalsStore({
        url: `file://${root}`,
        s3: { region: 'us-east-1', forcePathStyle: false },
      })
      t.after(() => store.close())
      return { store, corrupt: (tenant, sha256, bytes) => writeFile(join(root, tenant, sha256), bytes) }
    },
  },
  ...[false, true].map((partsInFiles) => ({
    name: partsInFiles ? 's3 (s3rver), parts buffered in files' : 's3 (s3rver)',
    async open(t: TestContext): ReturnType<Backend['open']> {
      const s3 = await startS3Server(t)
      const partFile = await partFiles(t)
      const store = await createOriginalsStore({
        url: `s3://${s3.bucket}/originals`,
        s3: s3.options,
        ...(partsInFiles ? { partFile } : {}),
      })
      t.after(() => store.close())
      return {
        store,
        corrupt: async (tenant, sha256, bytes) => {
          await s3.put(`originals/${tenant}/${sha256}`, bytes)
        },
      }
    },
  })),
]

for (const backend of backends) {
  describe(`originals store: ${backend.name}`, () => {
    it('stages, commits under <tenant>/<sha256> and reads the same bytes back', async (t) => {
      const { store } = await backend.open(t)
      const content = randomBytes(300 * 1024)
      const staged = await store.stage('acme', body(content))
      assert.equal(staged.bytes, content.length)
      assert.equal(await store.stat({ tenant: 'acme', sha256: sha(content) }), null, 'not visible before commit')
      assert.equal(await staged.commit(contentOf(content)), 'created')
      assert.equal(await store.stat({ tenant: 'acme', sha256: sha(content) }), content.length)
      const { bytes, stream } = await store.read({ tenant: 'acme', sha256: sha(content) })
      assert.equal(bytes, content.length)
      const read = await drain(stream)
      assert.equal(read.error, undefined)
      assert.equal(read.digest, sha(content))
      assert.deepEqual(await collect(store.listStaging()), [])
      const listed = await collect(store.list())
      assert.deepEqual(
        listed.map(({ tenant, sha256, bytes }) => ({ tenant, sha256, bytes })),
        [{ tenant: 'acme', sha256: sha(content), bytes: content.length }],
      )
    })

    it('keeps one object per tenant and content for 20 concurrent writers', async (t) => {
      const { store } = await backend.open(t)
      const content = randomBytes(200 * 1024)
      const outcomes = await Promise.all(
        Array.from({ length: 20 }, async () => (await store.stage('acme', body(content))).commit(contentOf(content))),
      )
      assert.ok(outcomes.includes('created'))
      if (store.kind === 'file') assert.equal(outcomes.filter((o) => o === 'created').length, 1)
      const listed = await collect(store.list())
      assert.equal(listed.length, 1)
      assert.equal(listed[0]?.bytes, content.length)
      assert.deepEqual(await collect(store.listStaging()), [])
      const read = await drain((await store.read({ tenant: 'acme', sha256: sha(content) })).stream)
      assert.equal(read.digest, sha(content))
    })

    it('keeps tenants apart: the same content is one object per tenant', async (t) => {
      const { store } = await backend.open(t)
      const content = randomBytes(1024)
      await (await store.stage('acme', body(content))).commit(contentOf(content))
      assert.equal(await store.stat({ tenant: 'globex', sha256: sha(content) }), null)
      await (await store.stage('globex', body(content))).commit(contentOf(content))
      const tenants = (await collect(store.list())).map((o) => o.tenant).sort()
      assert.deepEqual(tenants, ['acme', 'globex'])
    })

    it('refuses a commit whose size is not the bytes it took, and leaves nothing', async (t) => {
      const { store } = await backend.open(t)
      const content = randomBytes(10 * 1024)
      const staged = await store.stage('acme', body(content))
      await assert.rejects(staged.commit({ sha256: sha(content), bytes: content.length + 1 }), /took 10240 bytes/)
      assert.deepEqual(await collect(store.list()), [])
      assert.deepEqual(await collect(store.listStaging()), [])
    })

    it('a commit under a hash its bytes do not have is caught by every read: never served whole', async (t) => {
      // The store takes the writer's hash (computed once, as the bytes passed); reads check it.
      const { store } = await backend.open(t)
      const content = randomBytes(100 * 1024)
      const claimed = sha(Buffer.from('something else'))
      await (await store.stage('acme', body(content))).commit({ sha256: claimed, bytes: content.length })
      const read = await drain((await store.read({ tenant: 'acme', sha256: claimed })).stream)
      assert.ok(read.error instanceof OriginalCorruptError, `got ${String(read.error)}`)
      assert.ok(read.received < content.length, `received ${read.received} of ${content.length} bytes`)
    })

    it('refuses to commit content other than the hash declared before the body, and leaves nothing', async (t) => {
      const { store } = await backend.open(t)
      for (const content of [randomBytes(100 * 1024), randomBytes(12 * 1024 * 1024)]) {
        const declared = sha(Buffer.from('the declared content'))
        const staged = await store.stage('acme', body(content), { sha256: declared })
        await assert.rejects(staged.commit(contentOf(content)), /not the one declared/)
        assert.equal(await store.stat({ tenant: 'acme', sha256: declared }), null)
        assert.equal(await store.stat({ tenant: 'acme', sha256: sha(content) }), null)
        assert.deepEqual(await collect(store.listStaging()), [])
      }
    })

    it('leaves nothing when the body fails mid-way', async (t) => {
      const { store } = await backend.open(t)
      await assert.rejects(store.stage('acme', body(randomBytes(512 * 1024), 3)), /client went away/)
      assert.deepEqual(await collect(store.listStaging()), [])
      assert.deepEqual(await collect(store.list()), [])
    })

    it('never delivers a corrupted object whole: the read fails before its last byte', async (t) => {
      const { store, corrupt } = await backend.open(t)
      const content = randomBytes(256 * 1024)
      await (await store.stage('acme', body(content))).commit(contentOf(content))
      const tampered = Buffer.from(content)
      tampered[1000] = (tampered[1000] ?? 0) ^ 0xff
      await corrupt('acme', sha(content), tampered)
      const { stream } = await store.read({ tenant: 'acme', sha256: sha(content) })
      const read = await drain(stream)
      assert.ok(read.error instanceof OriginalCorruptError, `got ${String(read.error)}`)
      assert.ok(read.received < content.length, `received ${read.received} of ${content.length} bytes`)
    })

    it('answers a missing object as missing, and removing it twice is fine', async (t) => {
      const { store } = await backend.open(t)
      const key = { tenant: 'acme', sha256: sha(Buffer.from('never stored')) }
      assert.equal(await store.stat(key), null)
      await assert.rejects(store.read(key), OriginalMissingError)
      const content = Buffer.from('stored once')
      await (await store.stage('acme', body(content))).commit(contentOf(content))
      await store.remove({ tenant: 'acme', sha256: sha(content) })
      await store.remove({ tenant: 'acme', sha256: sha(content) })
      assert.equal(await store.stat({ tenant: 'acme', sha256: sha(content) }), null)
    })

    it('streams a body larger than one multipart part and removes staging leftovers by id', async (t) => {
      const { store } = await backend.open(t)
      const content = randomBytes(20 * 1024 * 1024)
      const staged = await store.stage('acme', body(content))
      const [leftover] = await collect(store.listStaging())
      assert.equal(leftover?.bytes, content.length, 'a staged, uncommitted body is listed for the grace sweep')
      await store.removeStaging(leftover.id)
      assert.deepEqual(await collect(store.listStaging()), [])
      await assert.rejects(staged.commit(contentOf(content)))
    })

    it('refuses keys that are not a tenant name and a sha256', async (t) => {
      const { store } = await backend.open(t)
      await assert.rejects(store.stat({ tenant: '../etc', sha256: sha(Buffer.from('x')) }), TypeError)
      await assert.rejects(store.stat({ tenant: 'acme', sha256: 'not-a-hash' }), TypeError)
      await assert.rejects(store.stage('a/b', body(Buffer.from('x'))), TypeError)
      await store.ping()
    })
  })
}

describe('ORIGINALS_URL', () => {
  it('parses file:/// and s3:// locations and refuses anything else', () => {
    assert.deepEqual(parseOriginalsUrl('file:///var/lib/filegate/originals'), {
      kind: 'file',
      root: '/var/lib/filegate/originals',
    })
    assert.deepEqual(parseOriginalsUrl('s3://my-bucket/team/originals/'), {
      kind: 's3',
      bucket: 'my-bucket',
      prefix: 'team/originals',
    })
    assert.deepEqual(parseOriginalsUrl('s3://my-bucket'), { kind: 's3', bucket: 'my-bucket', prefix: '' })
    for (const bad of [
      '/var/lib',
      'http://x/y',
      'file://host/path',
      'file:///',
      's3://UPPER/x',
      's3://b/../x',
      'nonsense',
    ])
      assert.throws(() => parseOriginalsUrl(bad), Error, bad)
  })
})

/**
 * A TCP proxy in front of s3rver that notes every request line it forwards and the body bytes of
 * each part's `UploadPart` requests, and breaks the connection carrying the first `UploadPart` of part
 * `partNumber` (unless it is unset) once its request line and `afterBodyBytes` of its body went
 * through: a connection dropped mid-part, as a load balancer or a store restart does. A connection
 * closed on one side is closed on the other, as by any TCP proxy.
 */
async function cuttingProxy(t: TestContext, upstream: string, partNumber?: number, afterBodyBytes = 0) {
  const target = new URL(upstream)
  const requestLine = /^(GET|HEAD|PUT|POST|DELETE) (\S+) HTTP\/1\.1\r$/gm
  const sockets = new Set<Socket>()
  const requests: string[] = []
  const partBodyBytes = new Map<number, number>()
  let cuts = 0
  let connections = 0
  let expects = 0
  const server = createServer((client) => {
    connections++
    const server = connect(Number(target.port), target.hostname)
    for (const s of [client, server]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => {})
    }
    client.on('close', () => server.destroy())
    server.on('close', () => client.destroy())
    /** The part whose request body this connection carries, if any, and whether it is to be cut. */
    let part: { number: number; cutting: boolean } | undefined
    client.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1')
      let body = chunk.length
      for (const [, method, path] of text.matchAll(requestLine)) {
        requests.push(`${method} ${path}`)
        const number = Number(new URL(path ?? '', 'http://x').searchParams.get('partNumber') ?? Number.NaN)
        part = Number.isNaN(number) ? undefined : { number, cutting: cuts === 0 && number === partNumber }
        if (part?.cutting) cuts++
        const start = text.indexOf(`${method} ${path}`)
        const head = text.indexOf('\r\n\r\n', start)
        if (/\r\nexpect:/i.test(text.slice(start, head < 0 ? undefined : head))) expects++
        body = head < 0 ? 0 : chunk.length - head - 4
      }
      server.write(chunk)
      if (!part) return
      const passed = (partBodyBytes.get(part.number) ?? 0) + body
      partBodyBytes.set(part.number, passed)
      if (part.cutting && passed >= afterBodyBytes) {
        client.destroy()
        server.destroy()
      }
    })
    server.pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    cuts: () => cuts,
    /** Connections the store opened, and requests that carried an `Expect` header. */
    connections: () => connections,
    expects: () => expects,
    /** `METHOD /bucket/key?query` of every request so far. */
    requests: () => [...requests],
    /** Body bytes forwarded so far in `UploadPart` requests of part `n` (all attempts). */
    partBodyBytes: (n: number) => partBodyBytes.get(n) ?? 0,
  }
}

describe('originals store: s3, a part whose connection drops', () => {
  for (const partsInFiles of [false, true]) {
    it(`is sent again and the original is whole (parts ${partsInFiles ? 'in files' : 'in memory'})`, async (t) => {
      const s3 = await startS3Server(t)
      const proxy = await cuttingProxy(t, s3.endpoint, 2)
      const partDir = await tempDir(t, 'fg-parts-')
      let parts = 0
      const store = await createOriginalsStore({
        url: `s3://${s3.bucket}/originals`,
        s3: { ...s3.options, endpoint: proxy.endpoint },
        ...(partsInFiles ? { partFile: async () => join(partDir, `part-${parts++}`) } : {}),
      })
      t.after(() => store.close())
      const content = randomBytes(12 * 1024 * 1024) // three parts of at most 5 MiB
      const staged = await store.stage('acme', body(content))
      assert.equal(await staged.commit(contentOf(content)), 'created')
      assert.equal(proxy.cuts(), 1, 'the connection of part 2 was dropped once')
      const read = await store.read({ tenant: 'acme', sha256: sha(content) })
      const got = await drain(read.stream)
      assert.equal(got.error, undefined)
      assert.equal(got.digest, sha(content))
      assert.deepEqual(await collect(store.listStaging()), [])
    })
  }
})

const MiB = 1024 * 1024

/**
 * An s3 store behind a cuttingProxy, its part files (when `partsInFiles`) in a directory that must be
 * empty after the test whatever became of the upload.
 */
async function proxiedS3Store(
  t: TestContext,
  partsInFiles: boolean,
  cut?: { partNumber: number; afterBodyBytes: number },
) {
  const s3 = await startS3Server(t)
  const proxy = await cuttingProxy(t, s3.endpoint, cut?.partNumber, cut?.afterBodyBytes)
  const store = await createOriginalsStore({
    url: `s3://${s3.bucket}/originals`,
    s3: { ...s3.options, endpoint: proxy.endpoint },
    ...(partsInFiles ? { partFile: await partFiles(t) } : {}),
  })
  t.after(() => store.close())
  /** The requests of each kind that reached the bucket, in order (see cuttingProxy). */
  const calls = () => {
    const requests = proxy.requests().map((line) => {
      const [method = '', path = ''] = line.split(' ')
      return { method, query: new URL(path, 'http://x').searchParams }
    })
    const puts = requests.filter((r) => r.method === 'PUT')
    return {
      putObjects: puts.filter((r) => !r.query.has('uploadId')).length,
      uploadParts: puts.filter((r) => r.query.has('partNumber')).map((r) => Number(r.query.get('partNumber'))),
      /**
       * The part numbers sent, in ascending order: a part sent from its reserve and the streamed part
       * after it are under way at once, and either request may reach the bucket first (S3 assembles
       * the parts by number, not by arrival).
       */
      partNumbers() {
        return [...this.uploadParts].sort((a, b) => a - b)
      },
      creates: requests.filter((r) => r.method === 'POST' && r.query.has('uploads')).length,
      completes: requests.filter((r) => r.method === 'POST' && r.query.has('uploadId')).length,
      aborts: requests.filter((r) => r.method === 'DELETE' && r.query.has('uploadId')).length,
    }
  }
  return { store, proxy, calls }
}

/** Stages and commits `content` and reads it back whole. */
async function roundTrip(store: OriginalsStore, source: Readable, content: Buffer) {
  const staged = await store.stage('acme', source)
  assert.equal(staged.bytes, content.length)
  assert.equal(await staged.commit(contentOf(content)), 'created')
  const read = await drain((await store.read({ tenant: 'acme', sha256: sha(content) })).stream)
  assert.equal(read.error, undefined)
  assert.equal(read.digest, sha(content))
  assert.deepEqual(await collect(store.listStaging()), [])
}

// s3rver implements neither ListMultipartUploads nor AbortMultipartUpload, so "no multipart upload is
// left" is checked on the requests the store made: every upload created was completed.
for (const partsInFiles of [false, true]) {
  const reserves = partsInFiles ? 'parts in files' : 'parts in memory'
  describe(`originals store: s3, part boundaries (${reserves})`, () => {
    for (const bytes of [300 * 1024, 5 * MiB]) {
      it(`sends a body of ${bytes} bytes (within one part) as one PutObject, no multipart upload`, async (t) => {
        const { store, calls } = await proxiedS3Store(t, partsInFiles)
        const content = randomBytes(bytes)
        await roundTrip(store, body(content), content)
        const made = calls()
        assert.equal(made.creates, 0, 'no multipart upload was created')
        assert.deepEqual(made.uploadParts, [])
        // The staging PutObject, then the commit's CopyObject (a PUT too).
        assert.equal(made.putObjects, 2)
      })
    }

    it('sends a body of exactly two parts as two parts, no empty third', async (t) => {
      const { store, calls } = await proxiedS3Store(t, partsInFiles)
      const content = randomBytes(10 * MiB)
      await roundTrip(store, body(content), content)
      const made = calls()
      assert.deepEqual(made.partNumbers(), [1, 2], 'each part sent once, as it was streamed or from its reserve')
      assert.equal(made.creates, 1)
      assert.equal(made.completes, 1, 'the multipart upload was completed')
      assert.equal(made.aborts, 0)
    })

    it('sends the parts at once on kept-alive connections, without Expect: 100-continue', async (t) => {
      const { store, proxy, calls } = await proxiedS3Store(t, partsInFiles)
      const content = randomBytes(20 * MiB)
      await roundTrip(store, body(content), content)
      const made = calls()
      assert.deepEqual(made.partNumbers(), [1, 2, 3, 4], 'each part sent once')
      assert.equal(proxy.expects(), 0, 'no request waited for a 100 Continue')
      // With Expect the SDK opens a fresh connection for every part; here at most the two parts in
      // flight at a time need one each, and every other request reuses them.
      const requests = proxy.requests().length
      assert.ok(proxy.connections() <= 3, `${proxy.connections()} connections for ${requests} requests`)
    })

    it('sends a body of one part and a byte: the short last part from its reserve', async (t) => {
      const { store, calls } = await proxiedS3Store(t, partsInFiles)
      const content = randomBytes(5 * MiB + 1)
      await roundTrip(store, body(content), content)
      const made = calls()
      assert.deepEqual([...new Set(made.partNumbers())], [1, 2])
      assert.equal(made.creates, 1)
      assert.equal(made.completes, 1, 'the multipart upload was completed')
    })

    it('sends part 2 while it fills, from the chunks of the body', { timeout: 60_000 }, async (t) => {
      const { store, proxy } = await proxiedS3Store(t, partsInFiles)
      const content = randomBytes(12 * MiB)
      const paused = 7 * MiB
      let streamedBeforeRest = 0
      const source = Readable.from(
        (async function* () {
          for (let i = 0; i < content.length; i += 64 * 1024) {
            if (i === paused) {
              // The body stops 2 MiB into part 2 until 1 MiB of part 2 has gone through to the bucket.
              while (proxy.partBodyBytes(2) < MiB && !t.signal.aborted) await sleep(10)
              streamedBeforeRest = proxy.partBodyBytes(2)
            }
            yield content.subarray(i, i + 64 * 1024)
          }
        })(),
      )
      await roundTrip(store, source, content)
      assert.ok(streamedBeforeRest >= MiB && streamedBeforeRest <= 2 * MiB, `part 2: ${streamedBeforeRest} bytes`)
    })

    it('aborts the multipart upload when the body fails in a streamed part, and leaves nothing', async (t) => {
      const { store, calls } = await proxiedS3Store(t, partsInFiles)
      // 120 chunks of 64 KiB: the body fails 2.5 MiB into part 2.
      await assert.rejects(store.stage('acme', body(randomBytes(12 * MiB), 120)), /client went away/)
      const made = calls()
      assert.equal(made.creates, 1)
      assert.equal(made.completes, 0)
      assert.equal(made.aborts, 1, 'the multipart upload was aborted')
      assert.deepEqual(await collect(store.listStaging()), [])
    })

    it('sends a streamed part whose connection drops mid-way again from its reserve', async (t) => {
      const { store, proxy, calls } = await proxiedS3Store(t, partsInFiles, { partNumber: 3, afterBodyBytes: MiB })
      const content = randomBytes(17 * MiB) // parts of 5, 5, 5 and 2 MiB
      await roundTrip(store, body(content), content)
      assert.equal(proxy.cuts(), 1, 'the connection of part 3 was dropped once, 1 MiB into its body')
      const made = calls()
      assert.equal(made.uploadParts.filter((n) => n === 3).length, 2, 'part 3 was sent again')
      assert.equal(made.creates, 1)
      assert.equal(made.completes, 1, 'the multipart upload was completed')
      assert.equal(made.aborts, 0)
    })
  })
}

describe('originals store: s3, a body whose hash was declared before it', () => {
  const inPlace = async (t: TestContext, bytes: number) => {
    const { store, proxy, calls } = await proxiedS3Store(t, true)
    const content = randomBytes(bytes)
    const staged = await store.stage('acme', body(content), { sha256: sha(content) })
    return { store, proxy, calls, content, staged }
  }

  it('goes straight to its content address, invisible until the commit completes it: no copy', async (t) => {
    const { store, proxy, calls, content, staged } = await inPlace(t, 12 * MiB)
    assert.equal(await store.stat({ tenant: 'acme', sha256: sha(content) }), null, 'not visible before commit')
    assert.deepEqual(await collect(store.listStaging()), [], 'no staging object')
    assert.equal(await staged.commit(contentOf(content)), 'created')
    const read = await drain((await store.read({ tenant: 'acme', sha256: sha(content) })).stream)
    assert.equal(read.digest, sha(content))
    const made = calls()
    assert.equal(made.creates, 1)
    assert.equal(made.completes, 1)
    assert.equal(made.putObjects, 0, 'no PutObject and no CopyObject')
    const created = proxy.requests().find((line) => line.startsWith('POST ') && line.includes('?uploads'))
    assert.ok(created?.includes(`/originals/acme/${sha(content)}?`), created)
  })

  it('a discard aborts it, and a second writer of the content finds it there', async (t) => {
    const { store, calls, content, staged } = await inPlace(t, 6 * MiB)
    await staged.discard()
    assert.equal(await store.stat({ tenant: 'acme', sha256: sha(content) }), null)
    assert.equal(calls().aborts, 1)
    assert.equal(calls().completes, 0)
    const first = await store.stage('acme', body(content), { sha256: sha(content) })
    const second = await store.stage('acme', body(content), { sha256: sha(content) })
    assert.equal(await first.commit(contentOf(content)), 'created')
    assert.equal(await second.commit(contentOf(content)), 'existing')
    assert.equal(calls().completes, 1, 'the second upload was not completed over the first')
    assert.equal(calls().aborts, 2)
  })

  it('a body within one part is staged and copied as without a declared hash', async (t) => {
    const { store, calls, content, staged } = await inPlace(t, 300 * 1024)
    assert.equal(await staged.commit(contentOf(content)), 'created')
    assert.equal(calls().creates, 0)
    assert.equal(calls().putObjects, 2, 'the staging PutObject and the commit CopyObject')
    assert.deepEqual(await collect(store.listStaging()), [])
  })
})

describe('originals store: s3, a store silent past the idle bound', () => {
  const idleTimeoutMs = 300
  async function boundedStore(t: TestContext, endpoint?: (s3: { endpoint: string }) => Promise<string>) {
    const s3 = await startS3Server(t)
    const store = await createOriginalsStore({
      url: `s3://${s3.bucket}/originals`,
      s3: { ...s3.options, idleTimeoutMs, ...(endpoint ? { endpoint: await endpoint(s3.options as never) } : {}) },
    })
    t.after(() => store.close())
    return store
  }

  it("a body that pauses mid-part longer than the bound is the client's pace, not the store's: staged whole", async (t) => {
    const store = await boundedStore(t)
    const content = randomBytes(7 * 1024 * 1024)
    async function* paced() {
      // Part 1 whole, then part 2 under way as a streamed request when the source goes quiet.
      yield content.subarray(0, 6 * 1024 * 1024)
      await sleep(idleTimeoutMs * 4)
      yield content.subarray(6 * 1024 * 1024)
    }
    await roundTrip(store, Readable.from(paced()), content)
  })

  it('a store that accepts a connection and then answers nothing fails the write after the bound', async (t) => {
    // A listener that accepts and never reads nor answers: a hung store.
    const held = new Set<Socket>()
    const hung = createServer((socket) => {
      held.add(socket)
      socket.pause()
    })
    await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve))
    t.after(() => {
      for (const socket of held) socket.destroy()
      return new Promise<void>((resolve) => hung.close(() => resolve()))
    })
    const store = await boundedStore(t, async () => `http://127.0.0.1:${(hung.address() as AddressInfo).port}`)
    const started = Date.now()
    await assert.rejects(store.stage('acme', Readable.from([randomBytes(64 * 1024)])), { name: 'TimeoutError' })
    assert.ok(held.size >= 1, 'the write reached the hung store')
    t.diagnostic(`failed after ${Date.now() - started} ms (bound ${idleTimeoutMs} ms)`)
  })
})
