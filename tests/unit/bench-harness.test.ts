/**
 * The bench's own instruments: the node:http upload client sends what a plain client sends (the
 * declared Content-Length, the fields before the file, the file intact), the summary compares the
 * right figures in the right direction, and BENCH_QUICK fills only the settings left unset.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { type AddressInfo, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Busboy } from '@fastify/busboy'
import { uploadFile } from '../../bench/harness/client.js'
import type { Figure } from '../../bench/harness/context.js'
import { quickSettings } from '../../bench/quick.js'
import { consoleSummary, summaryFigures, worseBy } from '../../bench/report.js'
import { tempDir } from '../helper.js'

/**
 * `server` listening on loopback for the suite; the URL of its upload path (its port set before the tests).
 * At the end its connections are destroyed before it closes: a server that stopped reading (the
 * early answer) never sees the client's FIN behind the unread body, so close() alone would wait for ever.
 */
function served(server: Server | NetServer): URL {
  const url = new URL('http://127.0.0.1/v1/files')
  const sockets = new Set<Socket>()
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url.port = String((server.address() as AddressInfo).port)
  })
  after(async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    for (const socket of sockets) socket.destroy()
    await closed
  })
  return url
}

describe('bench upload client, node:http', () => {
  const seen: Array<{ contentLength: string | undefined; received: number; fields: string[]; sha256: string }> = []
  const server = createServer((req, res) => {
    const fields: string[] = []
    let received = 0
    let sha256 = ''
    req.on('data', (c: Buffer) => {
      received += c.length
    })
    const bb = Busboy({ headers: req.headers as { 'content-type': string } })
    bb.on('field', (name) => fields.push(name))
    bb.on('file', (name, stream) => {
      fields.push(name)
      const hash = createHash('sha256')
      stream.on('data', (c: Buffer) => hash.update(c))
      stream.on('end', () => {
        sha256 = hash.digest('hex')
      })
    })
    bb.on('finish', () => {
      seen.push({ contentLength: req.headers['content-length'], received, fields, sha256 })
      res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ sha256 }))
    })
    req.pipe(bb)
  })
  const url = served(server)

  test('streams the file with its Content-Length, the provider field first, and reads the whole answer', async (t) => {
    const dir = await tempDir(t, 'bench-client-')
    const content = randomBytes(3 * 1024 * 1024 + 17)
    const path = join(dir, 'upload.bin')
    await writeFile(path, content)
    const expected = createHash('sha256').update(content).digest('hex')
    for (const run of [1, 2]) {
      const r = await uploadFile(url.href, { authorization: 'Bearer x' }, [['provider', 'kimi']], path, 'a.bin', 'http')
      assert.equal(r.status, 201, `run ${run}`)
      assert.deepEqual(JSON.parse(r.body), { sha256: expected })
      assert.ok(r.seconds > 0)
      const last = seen.at(-1)
      assert.equal(Number(last?.contentLength), last?.received, 'Content-Length is what was sent')
      assert.deepEqual(last?.fields, ['provider', 'file'])
      assert.equal(last?.sha256, expected)
    }
  })
})

describe('bench upload client, an early answer', () => {
  // Answers 413 at once and keeps the connection open without reading another byte of the body.
  const answer = '{"code":"FILE_TOO_LARGE"}'
  const server = createNetServer((socket) => {
    socket.once('data', () => {
      socket.pause()
      socket.write(
        `HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\ncontent-length: ${answer.length}\r\n\r\n${answer}`,
      )
    })
  })
  const url = served(server)

  test('returns the answer and stops sending instead of waiting on a body nobody reads', async (t) => {
    const dir = await tempDir(t, 'bench-client-early-')
    const path = join(dir, 'big.bin')
    await writeFile(path, randomBytes(64 * 1024 * 1024))
    const r = await uploadFile(url.href, {}, [['provider', 'kimi']], path, 'big.bin', 'http')
    assert.equal(r.status, 413)
    assert.match(r.body, /FILE_TOO_LARGE/)
  })
})

describe('bench summary', () => {
  const figure = (key: string, value: number, ratio?: number): Figure => ({
    scenario: 0,
    name: key,
    value,
    unit: 'x',
    ...(ratio === undefined ? {} : { ratio }),
    target: 'goal',
    met: true,
    key,
  })

  test('a ratio is worse when lower, a peak when higher', () => {
    assert.equal(worseBy('dedup-vs-lookup', 0.8, 0.7).toFixed(3), '0.125')
    assert.ok(worseBy('dedup-vs-lookup', 0.8, 0.9) < 0)
    assert.equal(worseBy('rss-store-and-forward-off', 100, 115).toFixed(2), '0.15')
    assert.ok(worseBy('rss-store-and-forward-off', 100, 90) < 0)
  })

  test('picks the keyed figures in the summary order, ratios as ratios and peaks as values', () => {
    const figures = [
      figure('rss-stream-through-off', 180),
      { ...figure('unrelated', 1, 1), key: undefined },
      figure('dedup-vs-lookup', 300, 0.85),
    ]
    const picked = summaryFigures(figures)
    assert.deepEqual(
      picked.map((p) => p.key),
      ['dedup-vs-lookup', 'rss-stream-through-off'],
    )
    const text = consoleSummary(figures)
    assert.match(text, /Postgres lookup \(3\)\s+\| 0\.85 /)
    assert.match(text, /stream-through \(2\)\s+\| 180 MB /)
    assert.equal(consoleSummary([figure('unrelated', 1)]), '')
  })
})

describe('BENCH_QUICK', () => {
  test('sets small sizes only where nothing is set, and nothing without BENCH_QUICK=1', (t) => {
    const names = ['BENCH_QUICK', 'BENCH_LARGE_BYTES', 'BENCH_RESUMABLE_BYTES']
    const saved = Object.fromEntries(names.map((n) => [n, process.env[n]]))
    t.after(() => {
      for (const n of names) {
        if (saved[n] === undefined) delete process.env[n]
        else process.env[n] = saved[n]
      }
    })
    for (const n of names) delete process.env[n]
    assert.deepEqual(quickSettings(), [])
    assert.equal(process.env.BENCH_LARGE_BYTES, undefined)
    process.env.BENCH_QUICK = '1'
    process.env.BENCH_LARGE_BYTES = '5000000'
    const set = quickSettings()
    assert.equal(process.env.BENCH_LARGE_BYTES, '5000000', 'an explicit setting stays')
    assert.ok(!set.some((s) => s.startsWith('BENCH_LARGE_BYTES=')))
    assert.ok(set.includes('BENCH_RESUMABLE_BYTES=64000000'))
    assert.equal(process.env.BENCH_RESUMABLE_BYTES, '64000000')
  })
})
