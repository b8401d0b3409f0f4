/**
 * A 100 MB upload raises the process's resident memory by no more than 64 MB. The body
 * is generated chunk by chunk, sent over real HTTP to the app, spooled, and forwarded to the
 * fake Kimi on loopback (which hashes without buffering); RSS is sampled every 50 ms meanwhile.
 * Everything runs in this one process, so the bound covers client, app and fake together. The test
 * runner runs under the service's V8 flags (`--max-semi-space-size=1 --single-threaded-gc`, as
 * `npm start` and the image): the young generation's size decides how much garbage waits for a scavenge.
 *
 * Profile (with --expose-gc and a gc() before each sample): live array buffers stay at 1-12 MB
 * and RSS within ~20 MB of the baseline for the whole upload, whatever the file size; without
 * forced collections the peak is garbage awaiting V8's external-memory GC (per-read socket and
 * file buffers), 17-47 MB over ten runs. Nothing in the path holds the file.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { describe, type TestContext, test } from 'node:test'
import {
  as,
  filePart,
  freshTenant,
  httpRequest,
  listen,
  metric,
  multipartFrame,
  postFile,
  readResponse,
  setupUploads,
  spoolEntries,
  useFileDatabase,
} from './uploads-support.js'

const database = useFileDatabase()
const setup = (t: TestContext) => setupUploads(t, database)

const MB = 1024 * 1024
const fileBytes = 100 * MB
const chunkBytes = 64 * 1024
const boundMb = 64

/**
 * The body, chunk by chunk, from a small ring of random chunks. The client shares this process
 * with the app, so it must not add 100 MB of its own garbage buffers to what is measured: each
 * chunk is reused only after the pipeline waited for the socket to drain it (pipeline writes one
 * chunk at a time with backpressure), and the content still differs from chunk to chunk.
 */
function* content(hash: ReturnType<typeof createHash>) {
  const ring = Array.from({ length: 7 }, () => randomBytes(chunkBytes))
  for (let i = 0; i < fileBytes / chunkBytes; i++) {
    const chunk = ring[i % ring.length] as Buffer
    hash.update(chunk)
    yield chunk
  }
}

describe('memory', () => {
  test('a 100 MB upload raises resident memory by no more than 64 MB', { timeout: 60_000 }, async (t) => {
    const ctx = await setup(t)
    if (!ctx) return
    const { host, port } = await listen(ctx.app)
    // Warm the paths once (module loading, JIT, pools) so the measure is the upload's own.
    const warm = await postFile(ctx.app, freshTenant(), [['provider', 'kimi'], filePart('warm up')])
    assert.equal(warm.statusCode, 201, warm.body)

    const tenant = freshTenant()
    const frame = multipartFrame([['provider', 'kimi']], { filename: 'hundred.pdf', type: 'application/pdf' })
    const hash = createHash('sha256')
    const baseline = process.memoryUsage().rss
    let peak = baseline
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss)
    }, 50)
    t.after(() => clearInterval(sampler))

    const req = httpRequest({
      host,
      port,
      method: 'POST',
      path: '/v1/files',
      headers: {
        ...as(tenant),
        'content-type': frame.contentType,
        'content-length': String(frame.head.length + fileBytes + frame.tail.length),
      },
    })
    const response = new Promise<Awaited<ReturnType<typeof readResponse>>>((resolve, reject) => {
      req.on('response', (res) => readResponse(res).then(resolve, reject))
      req.on('error', reject)
    })
    await pipeline(
      Readable.from(
        (function* () {
          yield frame.head
          yield* content(hash)
          yield frame.tail
        })(),
      ),
      req,
    )
    const res = await response
    clearInterval(sampler)
    peak = Math.max(peak, process.memoryUsage().rss)

    assert.equal(res.status, 201, res.body)
    const file = JSON.parse(res.body) as { bytes: number; sha256: string; provider_file_id: string }
    const digest = hash.digest('hex')
    assert.equal(file.bytes, fileBytes)
    assert.equal(file.sha256, digest)
    const received = ctx.fakes.kimi.uploads.find((u) => u.id === file.provider_file_id)
    assert.equal(received?.bytes, fileBytes, 'the provider received all of it')
    assert.equal(received?.sha256, digest)
    assert.deepEqual(await spoolEntries(ctx.spoolDir), [])
    assert.equal(await metric(ctx.app, 'filegate_file_active_uploads'), 0)

    const grewMb = (peak - baseline) / MB
    t.diagnostic(
      `rss baseline ${(baseline / MB).toFixed(1)} MB, peak ${(peak / MB).toFixed(1)} MB, +${grewMb.toFixed(1)} MB`,
    )
    assert.ok(grewMb <= boundMb, `resident memory grew by ${grewMb.toFixed(1)} MB (bound ${boundMb} MB)`)
  })
})
