/**
 * The cost of a body is linear in its bytes, whatever its framing. A multipart upload sent with
 * Transfer-Encoding: chunked in 1-byte chunks (six bytes on the wire for each byte of the file)
 * cost 170 times the CPU of the same file sent plainly, and held the event loop for every other
 * tenant meanwhile. A body whose chunks average under a sane size, past a small allowance, is
 * refused (400 VALIDATION_FAILED, the connection closed) before it costs more than a few
 * milliseconds; another tenant's request is timed while the worst framing is sent, and while a
 * framing near the floor, still accepted, is sent.
 *
 * @alone it times another tenant's requests while the worst framing is sent: another file beside it would add delay of its own
 */
import assert from 'node:assert/strict'
import { Agent, request as httpRequest } from 'node:http'
import { connect } from 'node:net'
import { describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { minAverageChunkBytes } from '../../routes/body-framing.js'
import { testKeys } from '../helper.js'
import { listen, metric, multipartFrame, setupUploads, spoolEntries, useFileDatabase } from './uploads-support.js'

const database = useFileDatabase()

/** A whole HTTP request whose body is framed in chunks of `chunkBytes`: built once, written as fast as the socket takes. */
function chunkedRequest(key: string, fileBytes: number, chunkBytes: number, fill: string): Buffer {
  const frame = multipartFrame([['provider', 'kimi']], { filename: 'tiny-chunks.txt', type: 'text/plain' })
  const body = Buffer.concat([frame.head, Buffer.alloc(fileBytes, fill), frame.tail])
  const size = chunkBytes.toString(16)
  const unit = Buffer.byteLength(`${size}\r\n`) + chunkBytes + 2
  const whole = Math.floor(body.length / chunkBytes)
  const rest = body.length - whole * chunkBytes
  const wire = Buffer.alloc(whole * unit + (rest ? rest.toString(16).length + 4 + rest : 0) + 5)
  let at = 0
  for (let i = 0; i < whole; i++) {
    at += wire.write(`${size}\r\n`, at)
    at += body.copy(wire, at, i * chunkBytes, (i + 1) * chunkBytes)
    at += wire.write('\r\n', at)
  }
  if (rest) {
    at += wire.write(`${rest.toString(16)}\r\n`, at)
    at += body.copy(wire, at, whole * chunkBytes)
    at += wire.write('\r\n', at)
  }
  wire.write('0\r\n\r\n', at)
  const head =
    'POST /v1/files HTTP/1.1\r\nHost: filegate\r\n' +
    `Authorization: Bearer ${key}\r\nContent-Type: ${frame.contentType}\r\nTransfer-Encoding: chunked\r\n\r\n`
  return Buffer.concat([Buffer.from(head), wire])
}

/** Writes the request on a fresh socket; resolves with the answer once it is whole (status 0: closed unanswered). */
function send(target: { host: string; port: number }, wire: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const socket = connect(target.port, target.host)
    let received = Buffer.alloc(0)
    let settled = false
    const finish = (status: number, body: string) => {
      if (settled) return
      settled = true
      socket.destroy()
      resolve({ status, body })
    }
    socket.on('data', (d: Buffer) => {
      received = Buffer.concat([received, d])
      const end = received.indexOf('\r\n\r\n')
      if (end === -1) return
      const head = received.subarray(0, end).toString('latin1')
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? Number.NaN)
      const body = received.subarray(end + 4)
      if (body.length >= length) finish(Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]), body.toString('utf8'))
    })
    socket.on('close', () => finish(0, ''))
    socket.on('error', () => {})
    socket.write(wire)
  })
}

/** GET /v1/files?limit=1 as another tenant, over and over while `busy()`, at least `min` times: each one's ms. */
async function timeOtherTenant(target: { host: string; port: number }, busy: () => boolean, min = 5) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  const samples: number[] = []
  try {
    while (busy() || samples.length < min) {
      const started = performance.now()
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpRequest(
          { ...target, agent, path: '/v1/files?limit=1', headers: { authorization: `Bearer ${testKeys.bob}` } },
          (res) => {
            res.resume()
            res.on('end', () => resolve(res.statusCode ?? 0))
          },
        )
        req.on('error', reject)
        req.end()
      })
      samples.push(performance.now() - started)
      assert.equal(status, 200)
      await sleep(5)
    }
  } finally {
    agent.destroy()
  }
  return samples
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number

/**
 * Another tenant is "not held" while its median answer stays under this. A held tenant waits out
 * the body being parsed: half a second for the near-floor upload, seconds for the 1-byte chunks
 * before they were refused early. Seen when not held: 3 to 30 ms, 56 ms once on a slow phase of the
 * 2-core VM; the bound stays well below the held case and well above the noise.
 */
const notHeldMs = 100

describe('chunk framing costs no more than the bytes', () => {
  test('1-byte chunks: refused at once; another tenant answered in a median under 100 ms while they are sent', async (t) => {
    const ctx = await setupUploads(t, database)
    if (!ctx) return
    const target = await listen(ctx.app)
    const wire = chunkedRequest(testKeys.alice, 1024 * 1024, 1, 'o')
    // The attacker sends the same body again and again for the whole sampling window.
    const windowMs = 1500
    const until = Date.now() + windowMs
    const answers: Array<{ status: number; body: string }> = []
    const attack = (async () => {
      do {
        const started = Date.now()
        const answer = await send(target, wire)
        answers.push(answer)
        assert.ok(Date.now() - started < 1000, `refused within a second, not after ${Date.now() - started} ms`)
      } while (Date.now() < until)
    })()
    let attacking = true
    attack.finally(() => {
      attacking = false
    })
    const samples = await timeOtherTenant(target, () => attacking)
    await attack
    t.diagnostic(
      `${answers.length} attacks; other tenant: median ${median(samples).toFixed(1)} ms over ${samples.length} (max ${Math.max(...samples).toFixed(1)})`,
    )
    for (const answer of answers) {
      assert.equal(answer.status, 400, answer.body)
      assert.equal(JSON.parse(answer.body).code, 'VALIDATION_FAILED')
    }
    assert.ok(median(samples) < notHeldMs, `another tenant's median was ${median(samples).toFixed(1)} ms`)
    assert.equal(ctx.fakes.kimi.requests.upload, 0, 'nothing reached the provider')
    assert.equal(await metric(ctx.app, 'filegate_file_active_uploads'), 0)
    assert.deepEqual(await spoolEntries(ctx.spoolDir), [])
  })

  test('a body nobody reads (a wrong key) is not read to its end: 401, the connection closed at once', async (t) => {
    const ctx = await setupUploads(t, database)
    if (!ctx) return
    const target = await listen(ctx.app)
    const wire = chunkedRequest('not-a-key-0123456789abcdef', 1024 * 1024, 1, 'k')
    const started = Date.now()
    const outcome = await new Promise<{ status: number; closedAfter: number }>((resolve) => {
      const socket = connect(target.port, target.host)
      let head = ''
      socket.on('data', (d: Buffer) => {
        head += d.toString('latin1')
      })
      socket.on('error', () => {})
      socket.on('close', () =>
        resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), closedAfter: Date.now() - started }),
      )
      // Node would keep the connection for its keep-alive timeout: stop waiting long before.
      setTimeout(() => socket.destroy(), 5000).unref()
      socket.write(wire)
    })
    assert.equal(outcome.status, 401)
    assert.ok(outcome.closedAfter < 2000, `the server closed the connection after ${outcome.closedAfter} ms`)
  })

  test('a framing near the floor (chunks of twice its average) uploads, and another tenant is not held', async (t) => {
    const ctx = await setupUploads(t, database)
    if (!ctx) return
    const target = await listen(ctx.app)
    // Twice the floor: a chunk split across two socket reads reaches the parser as two pieces.
    const wire = chunkedRequest(testKeys.alice, 1024 * 1024, 2 * minAverageChunkBytes, 'w')
    let uploading = true
    const upload = send(target, wire).finally(() => {
      uploading = false
    })
    const samples = await timeOtherTenant(target, () => uploading)
    const answer = await upload
    t.diagnostic(
      `other tenant: median ${median(samples).toFixed(1)} ms over ${samples.length} (max ${Math.max(...samples).toFixed(1)})`,
    )
    assert.equal(answer.status, 201, answer.body)
    assert.ok(median(samples) < notHeldMs, `another tenant's median was ${median(samples).toFixed(1)} ms`)
  })
})
