/**
 * A client's own failure never counts against the provider: stream-through uploads (provider
 * first, X-Content-SHA256) that are over the limit, broken off mid-body, or sent more slowly
 * than PROVIDER_TIMEOUT_MS (408) fail for that client alone. They are not retried, the provider's
 * circuit stays closed (or, half-open, is not re-opened), and the next tenant's upload is 201.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  as,
  concurrently,
  eventually,
  filePart,
  freshTenant,
  httpRequest,
  listen,
  metric,
  multipartFrame,
  postFile,
  type RawResponse,
  readResponse,
  rowsOf,
  setupUploads,
  sha256,
  spoolEntries,
  type UploadContext,
  useFileDatabase,
} from './uploads-support.js'

const database = useFileDatabase()

type Misbehaviour = 'too-large' | 'disconnect' | 'too-slow'

/**
 * One stream-through upload to `provider` that fails on the client's side:
 * too-large sends more than the limit; disconnect drops the socket once the provider upload has
 * begun; too-slow sends part of the body and then nothing, longer than PROVIDER_TIMEOUT_MS.
 */
async function misbehave(
  ctx: UploadContext,
  target: { host: string; port: number },
  tenant: string,
  provider: 'glm' | 'kimi',
  how: Misbehaviour,
): Promise<RawResponse | 'dropped'> {
  const frame = multipartFrame([['provider', provider]], { filename: `${how}.txt`, type: 'text/plain' })
  const fileBytes = how === 'too-large' ? 160 * 1024 : 128 * 1024
  const declared = frame.head.length + fileBytes + frame.tail.length
  const fake = ctx.fakes[provider]
  const uploadsBefore = fake.requests.upload
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      ...target,
      method: 'POST',
      path: '/v1/files',
      headers: {
        ...as(tenant),
        'x-content-sha256': sha256(`${how} ${tenant}`),
        'content-type': frame.contentType,
        'content-length': String(declared),
      },
    })
    let answered = false
    req.on('response', (res) => {
      answered = true
      readResponse(res).then(resolve, reject)
    })
    req.on('error', (err) => {
      if (how === 'disconnect') resolve('dropped')
      else if (!answered) reject(err)
    })
    req.write(frame.head)
    if (how === 'too-large') {
      req.end(Buffer.concat([Buffer.alloc(fileBytes, 'L'), frame.tail]))
      return
    }
    req.write(Buffer.alloc(32 * 1024, 'h'), async () => {
      if (how === 'too-slow') return // and send nothing more: the server answers
      try {
        await eventually('the provider upload began', () => fake.requests.upload > uploadsBefore, 5000)
        await sleep(20)
        req.destroy()
      } catch (err) {
        reject(err)
      }
    })
  })
}

const env = {
  GLM_MAX_FILE_BYTES: '131072',
  CIRCUIT_FAILURE_THRESHOLD: '3',
  CIRCUIT_RESET_MS: '600',
  RETRY_MAX_ATTEMPTS: '3',
  PROVIDER_TIMEOUT_MS: '1500',
  UPLOAD_TIMEOUT_MS: '4000',
  REQUEST_TIMEOUT_MS: '8000',
  SHUTDOWN_TIMEOUT_MS: '10000',
}

const circuit = (ctx: UploadContext, provider: string) =>
  metric(ctx.app, 'filegate_provider_circuit_state', { provider })

async function nothingStuck(ctx: UploadContext, tenants: string[]) {
  await eventually(
    'active uploads back to 0',
    async () => (await metric(ctx.app, 'filegate_file_active_uploads')) === 0,
  )
  assert.deepEqual(await spoolEntries(ctx.spoolDir), [], 'no temp file is left')
  for (const tenant of tenants) {
    for (const row of await rowsOf(ctx.app, tenant)) {
      assert.ok(!['uploading', 'pending', 'completed'].includes(row.status), `${tenant}: ${row.status}`)
    }
  }
}

describe("a client's failure is not the provider's", () => {
  test('20 client failures (over the limit, disconnected, too slow) leave the circuit closed; the next tenant gets 201', async (t) => {
    const ctx = await setupUploads(t, database, env)
    if (!ctx) return
    const target = await listen(ctx.app)
    const tenants: string[] = []
    const outcomes: Record<Misbehaviour, Array<RawResponse | 'dropped'>> = {
      'too-large': [],
      disconnect: [],
      'too-slow': [],
    }
    const plan: Array<[Misbehaviour, number]> = [
      ['too-large', 7],
      ['disconnect', 7],
      ['too-slow', 6],
    ]
    for (const [how, n] of plan) {
      const results = await concurrently(n, () => {
        const tenant = freshTenant(how)
        tenants.push(tenant)
        return misbehave(ctx, target, tenant, 'glm', how)
      })
      outcomes[how].push(...results)
    }
    for (const res of outcomes['too-large']) {
      assert.notEqual(res, 'dropped')
      if (res !== 'dropped') {
        assert.equal(res.status, 413, res.body)
        assert.equal(JSON.parse(res.body).code, 'FILE_TOO_LARGE')
      }
    }
    for (const res of outcomes['too-slow']) {
      assert.notEqual(res, 'dropped')
      if (res !== 'dropped') {
        assert.equal(res.status, 408, res.body)
        assert.equal(JSON.parse(res.body).code, 'REQUEST_TIMEOUT')
        assert.match(JSON.parse(res.body).detail, /too slowly/)
      }
    }
    assert.equal(outcomes.disconnect.length, 7)

    assert.equal(await circuit(ctx, 'glm'), 0, 'the GLM circuit is closed')
    assert.equal(await metric(ctx.app, 'filegate_file_circuit_breaker_trips_total', { provider: 'glm' }), 0)
    assert.ok(ctx.fakes.glm.requests.upload <= 20, `no client failure was retried (${ctx.fakes.glm.requests.upload})`)
    await nothingStuck(ctx, tenants)
    await eventually('no provider file is left', () => ctx.fakes.glm.files.size === 0)

    const next = await postFile(ctx.app, freshTenant('next'), [['provider', 'glm'], filePart('another tenant')])
    assert.equal(next.statusCode, 201, next.body)
    const streamed = await postFile(ctx.app, freshTenant('next'), [['provider', 'glm'], filePart('streamed')], {
      'x-content-sha256': sha256('streamed'),
    })
    assert.equal(streamed.statusCode, 201, streamed.body)
  })

  test('a disconnect during the half-open trial does not re-open the circuit', async (t) => {
    const ctx = await setupUploads(t, database, env)
    if (!ctx) return
    const target = await listen(ctx.app)
    ctx.fakes.kimi.failNext(3, 500, 'upload')
    for (let i = 0; i < 3; i++) {
      const res = await postFile(ctx.app, freshTenant('outage'), [['provider', 'kimi'], filePart(`outage ${i}`)], {
        'x-content-sha256': sha256(`outage ${i}`),
      })
      assert.equal(res.statusCode, 502, res.body)
    }
    assert.equal(await circuit(ctx, 'kimi'), 2, 'three provider failures opened the circuit')
    await sleep(700)
    const tenant = freshTenant('trial')
    assert.equal(await misbehave(ctx, target, tenant, 'kimi', 'disconnect'), 'dropped')
    await nothingStuck(ctx, [tenant])
    assert.notEqual(await circuit(ctx, 'kimi'), 2, 'the client disconnect did not re-open the circuit')
    assert.equal(await metric(ctx.app, 'filegate_file_circuit_breaker_trips_total', { provider: 'kimi' }), 1)
    const next = await postFile(ctx.app, freshTenant('next'), [['provider', 'kimi'], filePart('after the trial')])
    assert.equal(next.statusCode, 201, next.body)
  })
})
