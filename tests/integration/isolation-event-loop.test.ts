/**
 * No request holds the event loop (no input from one tenant slows another's requests): the worst per-request inputs an
 * attacker with one key can send (filenames as long as a multipart part header holds, more
 * fields than allowed, over-long and deeply nested metadata, deeply nested JSON, long query
 * strings and headers) are each handled in linear time, and `/healthz`, polled by a real HTTP
 * client throughout, answers every time within 100 ms. The event-loop delay while each input
 * is handled is printed beside its answer.
 *
 * @alone it times /healthz while hostile inputs are sent: another file beside it would add delay of its own
 */
import assert from 'node:assert/strict'
import { Agent, request as httpRequest } from 'node:http'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { testKeys } from '../helper.js'
import {
  as,
  freshTenant,
  listen,
  multipartFrame,
  type RawResponse,
  readResponse,
  setupUploads,
  spoolEntries,
  useFileDatabase,
} from './uploads-support.js'

const database = useFileDatabase()

/** The bound the issue sets: liveness answers within 100 ms while the worst inputs are handled. */
const healthBoundMs = 100

interface Hostile {
  name: string
  method: 'GET' | 'POST'
  path: string
  headers: Record<string, string>
  body?: Buffer
}

function upload(tenant: string, fields: Array<[string, string]>, filename: string): Hostile {
  const frame = multipartFrame(fields, { filename, type: 'text/plain' })
  const body = Buffer.concat([frame.head, Buffer.from('hostile content'), frame.tail])
  return {
    name: '',
    method: 'POST',
    path: '/v1/files',
    headers: { ...as(tenant), 'content-type': frame.contentType },
    body,
  }
}

function hostileInputs(tenant: string): Hostile[] {
  const nestedMetadata = `${'{"a":'.repeat(800)}1${'}'.repeat(800)}`
  const nestedJson = `{"jobs":${'['.repeat(30_000)}${']'.repeat(30_000)}}`
  const manyFields: Array<[string, string]> = Array.from({ length: 2_000 }, (_, i) => [`f${i}`, 'x'])
  const admin = { authorization: `Bearer ${testKeys.admin}`, 'content-type': 'application/json' }
  return [
    { ...upload(tenant, [['provider', 'kimi']], `${'n'.repeat(20_000)}.txt`), name: 'filename of 20,000 characters' },
    { ...upload(tenant, [['provider', 'kimi']], `${'n'.repeat(200_000)}.txt`), name: 'filename of 200,000 characters' },
    {
      ...upload(tenant, [['provider', 'kimi']], `${'文'.repeat(60_000)}.md`),
      name: 'filename of 60,000 CJK characters',
    },
    {
      ...upload(tenant, [['provider', 'kimi']], `${'\u202e'.repeat(50_000)}x.txt`),
      name: 'filename of 50,000 bidi marks',
    },
    { ...upload(tenant, manyFields, 'a.txt'), name: '2,000 form fields' },
    { ...upload(tenant, [['metadata', 'm'.repeat(8 * 1024)]], 'a.txt'), name: 'metadata of 8 KiB' },
    { ...upload(tenant, [['metadata', nestedMetadata]], 'a.txt'), name: 'metadata nested 800 deep' },
    {
      name: 'JSON body nested 30,000 deep',
      method: 'POST',
      path: '/v1/cleanup',
      headers: admin,
      body: Buffer.from(nestedJson),
    },
    {
      name: 'query string of 15,000 characters',
      method: 'GET',
      path: `/v1/files?purpose=${'p'.repeat(15_000)}`,
      headers: as(tenant),
    },
    {
      name: 'cursor of 15,000 characters',
      method: 'GET',
      path: `/v1/files?after=${'A'.repeat(15_000)}`,
      headers: as(tenant),
    },
    {
      name: 'header values of 7,000 characters',
      method: 'GET',
      path: '/v1/files',
      headers: { ...as(tenant), 'x-request-id': 'r'.repeat(7_000), 'x-content-sha256': 'f'.repeat(7_000) },
    },
  ]
}

function send(
  target: { host: string; port: number },
  input: { method: string; path: string; headers: Record<string, string>; body?: Buffer },
  agent?: Agent,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ ...target, ...input, ...(agent ? { agent } : {}) })
    req.on('response', (res) => readResponse(res).then(resolve, reject))
    req.on('error', reject)
    req.end(input.body)
  })
}

describe('no input holds the event loop', () => {
  test('/healthz answers within 100 ms while the worst inputs are handled', async (t) => {
    const ctx = await setupUploads(t, database)
    if (!ctx) return
    const target = await listen(ctx.app)
    const tenant = freshTenant('loop')

    // The liveness poller: one keep-alive connection, a probe every 10 ms until told to stop.
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    t.after(() => agent.destroy())
    const latencies: number[] = []
    let polling = true
    const poller = (async () => {
      while (polling) {
        const started = performance.now()
        const res = await send(target, { method: 'GET', path: '/healthz', headers: {} }, agent)
        latencies.push(performance.now() - started)
        assert.equal(res.status, 200)
        await sleep(10)
      }
    })()
    t.after(async () => {
      polling = false
      await poller.catch(() => {})
    })

    const loop = monitorEventLoopDelay({ resolution: 10 })
    loop.enable()
    for (const input of hostileInputs(tenant)) {
      const before = latencies.length
      loop.reset()
      // Twice at once, so a held loop would show even between the poller's probes.
      const answers = await Promise.all([send(target, input), send(target, input)])
      for (const res of answers) {
        assert.ok(res.status >= 200 && res.status < 500, `${input.name}: ${res.status} ${res.body.slice(0, 200)}`)
      }
      // Let the poller land at least one probe after the input, then judge what it saw.
      while (latencies.length < before + 2) await sleep(5)
      const worst = Math.max(...latencies.slice(before))
      t.diagnostic(
        `${input.name}: ${answers[0]?.status}; /healthz worst ${worst.toFixed(1)} ms; ` +
          `event-loop delay max ${(loop.max / 1e6).toFixed(1)} ms`,
      )
      assert.ok(worst < healthBoundMs, `${input.name}: /healthz took ${worst.toFixed(1)} ms`)
    }
    loop.disable()
    polling = false
    await poller
    t.diagnostic(`${latencies.length} /healthz probes, worst ${Math.max(...latencies).toFixed(1)} ms`)
    assert.ok(Math.max(...latencies) < healthBoundMs)
    assert.deepEqual(await spoolEntries(ctx.spoolDir), [], 'no temp file is left')
  })
})
