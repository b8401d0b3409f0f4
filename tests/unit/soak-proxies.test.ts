/**
 * The soak's cuttable TCP proxy (refuse, hang, pass) and its provider tap (what the service was
 * told of each delete), against real sockets and the fake Kimi on loopback.
 */
import assert from 'node:assert/strict'
import { connect, createServer, type Socket } from 'node:net'
import { describe, test } from 'node:test'
import { request } from 'undici'
import { bufferedForm } from '../../bench/harness/client.js'
import { startProviderTap } from '../../bench/soak/provider-tap.js'
import { startCuttableProxy } from '../../bench/soak/tcp-proxy.js'
import { startFakeProvider } from '../fakes/provider-server.js'

/** An echo server on loopback. */
async function echo(t: { after(fn: () => Promise<void>): void }): Promise<number> {
  const sockets = new Set<Socket>()
  const server = createServer((s) => {
    sockets.add(s)
    s.on('error', () => {})
    s.pipe(s)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(async () => {
    for (const s of sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return (server.address() as { port: number }).port
}

/** Sends `text` on `socket` and resolves with what comes back within `ms` ('' when nothing). */
function roundTrip(socket: Socket, text: string, ms: number): Promise<string> {
  return new Promise((resolve) => {
    let got = ''
    const onData = (c: Buffer) => {
      got += c.toString()
      if (got.length >= text.length) done()
    }
    const timer = setTimeout(() => done(), ms)
    const done = () => {
      clearTimeout(timer)
      socket.off('data', onData)
      resolve(got)
    }
    socket.on('data', onData)
    socket.write(text)
  })
}

const open = (port: number) =>
  new Promise<Socket>((resolve, reject) => {
    const s = connect(port, '127.0.0.1')
    s.once('connect', () => resolve(s))
    s.once('error', reject)
  })

describe('soak TCP proxy', () => {
  test('passes, holds while hanging and goes on after, refuses and resets, then passes again', async (t) => {
    const proxy = await startCuttableProxy('127.0.0.1', await echo(t))
    t.after(() => proxy.close())
    const a = await open(proxy.port)
    a.on('error', () => {})
    assert.equal(await roundTrip(a, 'one', 2_000), 'one')

    await proxy.set('hang')
    const held = roundTrip(a, 'two', 5_000)
    const b = await open(proxy.port)
    assert.equal(await roundTrip(b, 'new', 300), '', 'a connection made while hanging gets nothing')
    await proxy.set('pass')
    assert.equal(await held, 'two', 'the held bytes arrive once it passes again')
    assert.equal(await roundTrip(b, '', 2_000), 'new')

    const closed = new Promise((resolve) => a.once('close', resolve))
    await proxy.set('refuse')
    await closed
    await assert.rejects(open(proxy.port), /ECONNREFUSED/)
    await proxy.set('pass')
    const c = await open(proxy.port)
    assert.equal(await roundTrip(c, 'three', 2_000), 'three')
    for (const s of [b, c]) s.destroy()
  })
})

describe('soak provider tap', () => {
  test('notes each delete with its status and whether the answer reached the caller, and upload ids', async (t) => {
    const fake = await startFakeProvider({ kind: 'kimi', apiKey: 'sk-tap-0123456789' })
    t.after(() => fake.close())
    const tap = await startProviderTap(fake.baseUrl)
    t.after(() => tap.close())
    const file = fake.addFile({ filename: 'a.txt' })
    const headers = { authorization: 'Bearer sk-tap-0123456789' }
    for (let i = 0; i < 2; i++) {
      const res = await request(`${tap.baseUrl}/files/${file.id}`, { method: 'DELETE', headers })
      await res.body.dump()
    }
    assert.deepEqual(
      tap.deletes.map((d) => [d.id, d.status, d.delivered]),
      [
        [file.id, 200, true],
        [file.id, 404, true],
      ],
    )
    const form = bufferedForm([['purpose', 'file-extract']], Buffer.from('hello'), 'b.txt')
    const uploaded = await request(`${tap.baseUrl}/files`, {
      method: 'POST',
      headers: { ...headers, 'content-type': form.contentType },
      body: form.body,
    })
    const { id } = (await uploaded.body.json()) as { id: string }
    await new Promise((r) => setImmediate(r))
    assert.equal(tap.uploads.get(id)?.delivered, true)
    fake.failNext(1, 500)
    const failed = await request(`${tap.baseUrl}/files?limit=1`, { headers })
    await failed.body.dump()
    assert.equal(tap.statusCount(500), 1)
  })
})
