/**
 * A provider's upload slots (PROVIDER_MAX_CONCURRENT_UPLOADS) and its account's reservations are
 * shared by every tenant; one tenant's slow bodies must not hold them:
 *   - a request waits for a slot holding nothing (no claim, no reservation), and one that waits past
 *     UPLOAD_TIMEOUT_MS answers 503 PROVIDER_UNAVAILABLE with Retry-After, counted, leaving nothing;
 *   - a body streamed through (client-paced) holds a slot only while it keeps pace, and one tenant's
 *     such bodies hold at most its share of the slots (TENANT_MAX_SHARE): another tenant's upload
 *     to the same provider is answered at once, and the account's reservations stay bounded.
 */
import assert from 'node:assert/strict'
import type { ClientRequest } from 'node:http'
import { describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { tempDir } from '../helper.js'
import {
  as,
  assertProblem,
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

interface Trickle {
  /** The Content-Length it declares. */
  declared: number
  /** The answer, and when it came (ms after the request began). */
  answer: Promise<RawResponse & { afterMs: number }>
  stop(): void
}

/**
 * A stream-through upload (provider first, X-Content-SHA256, Content-Length of a 1 MiB file) that
 * sends its head and 1,000 bytes, then one byte every `everyMs`: the attack on the slots.
 */
function trickle(target: { host: string; port: number }, tenant: string, label: string, everyMs = 200): Trickle {
  const fileBytes = 1024 * 1024
  const frame = multipartFrame([['provider', 'kimi']], { filename: `${label}.txt`, type: 'text/plain' })
  const declared = frame.head.length + fileBytes + frame.tail.length
  const started = Date.now()
  let req: ClientRequest | undefined
  let timer: NodeJS.Timeout | undefined
  const stop = () => {
    clearInterval(timer)
    req?.destroy()
  }
  const answer = new Promise<RawResponse & { afterMs: number }>((resolve, reject) => {
    req = httpRequest({
      ...target,
      method: 'POST',
      path: '/v1/files',
      agent: false,
      headers: {
        ...as(tenant),
        'x-content-sha256': sha256(label),
        'content-type': frame.contentType,
        'content-length': String(declared),
      },
    })
    req.on('response', (res) => {
      clearInterval(timer)
      readResponse(res).then((r) => resolve({ ...r, afterMs: Date.now() - started }), reject)
    })
    req.on('error', reject)
    req.write(Buffer.concat([frame.head, Buffer.alloc(1000, 't')]))
    timer = setInterval(() => req?.write('t'), everyMs)
  })
  return { declared, answer, stop }
}

/** The bytes every tenant (or one) occupies or has reserved on `provider`'s account, as the claims count them. */
async function accountBytes(ctx: UploadContext, provider: string, tenant?: string): Promise<number> {
  const usage = await ctx.app.store.call<Array<{ provider: string; bytes: number | string }>>(
    tenant === undefined ? 'provider_usage' : 'tenant_usage',
    tenant === undefined ? {} : { p_tenant_id: tenant },
  )
  return Number(usage.find((u) => u.provider === provider)?.bytes ?? 0)
}

async function nothingLeft(ctx: UploadContext) {
  await eventually('no upload is active', async () => (await metric(ctx.app, 'filegate_file_active_uploads')) === 0)
  assert.deepEqual(await spoolEntries(ctx.spoolDir), [], 'no spool file is left')
}

describe('provider upload slots are shared fairly', () => {
  test('queued past UPLOAD_TIMEOUT_MS: 503 PROVIDER_UNAVAILABLE with Retry-After, counted; no claim, no reservation, no spool file', async (t) => {
    const ctx = await setupUploads(t, database, {
      PROVIDER_MAX_CONCURRENT_UPLOADS: '1',
      PROVIDER_TIMEOUT_MS: '500',
      UPLOAD_TIMEOUT_MS: '1500',
      REQUEST_TIMEOUT_MS: '4000',
      SHUTDOWN_TIMEOUT_MS: '5000',
      CIRCUIT_FAILURE_THRESHOLD: '100',
      RETRY_MAX_ATTEMPTS: '3',
    })
    if (!ctx) return
    // The provider takes uploads and never answers: the first one holds the only slot throughout.
    ctx.fakes.kimi.hang = true
    ctx.fakes.kimi.ops = ['upload']
    const holder = freshTenant('holder')
    const first = postFile(ctx.app, holder, [['provider', 'kimi'], filePart('holds the slot')])
    await eventually('the first upload reached the provider', () => ctx.fakes.kimi.requests.upload === 1)
    const queued = freshTenant('queued')
    const waiting = await Promise.all([
      postFile(ctx.app, queued, [['provider', 'kimi'], filePart('queued one')]),
      postFile(ctx.app, queued, [['provider', 'kimi'], filePart(Buffer.alloc(200_000, 'q'))]),
      postFile(ctx.app, queued, [['provider', 'kimi'], filePart('queued, streamed')], {
        'x-content-sha256': sha256('queued, streamed'),
      }),
    ])
    for (const res of waiting) {
      const problem = assertProblem(res, 503, 'PROVIDER_UNAVAILABLE')
      assert.equal(problem.provider, 'kimi')
      assert.ok(Number(res.headers['retry-after']) >= 1, 'Retry-After')
    }
    assertProblem(await first, 504, 'PROVIDER_TIMEOUT')
    // The holder's attempts (RETRY_MAX_ATTEMPTS, 3) and nothing else: the queued never reached the provider.
    assert.ok(ctx.fakes.kimi.requests.upload <= 3, `${ctx.fakes.kimi.requests.upload} provider uploads`)
    assert.equal(
      await metric(ctx.app, 'filegate_file_upload_slot_refusals_total', { provider: 'kimi', reason: 'timeout' }),
      3,
    )
    assert.deepEqual(await rowsOf(ctx.app, queued), [], 'a request waiting for a slot claimed nothing')
    for (const row of await rowsOf(ctx.app, holder)) assert.equal(row.status, 'failed')
    for (const tenant of [holder, queued])
      assert.equal(await accountBytes(ctx, 'kimi', tenant), 0, 'nothing is reserved')
    await nothingLeft(ctx)
  })

  test("a re-upload whose UPLOAD_TIMEOUT_MS runs out (ensure, healing a vanished copy) is 504 PROVIDER_TIMEOUT, not a bare TimeoutError's 500", async (t) => {
    const originals = await tempDir(t, 'fg-slots-originals-')
    const ctx = await setupUploads(t, database, {
      ORIGINALS_URL: `file://${originals}`,
      PROVIDER_TIMEOUT_MS: '400',
      UPLOAD_TIMEOUT_MS: '1000',
      REQUEST_TIMEOUT_MS: '4000',
      SHUTDOWN_TIMEOUT_MS: '5000',
      CIRCUIT_FAILURE_THRESHOLD: '100',
      RETRY_MAX_ATTEMPTS: '5',
      RETRY_BASE_DELAY_MS: '200',
      RETRY_MAX_DELAY_MS: '400',
    })
    if (!ctx) return
    const tenant = freshTenant('heal-timeout')
    const made = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('healed too slowly')])
    assert.equal(made.statusCode, 201, made.body)
    const file = made.json() as { id: string; provider_file_id: string }
    ctx.fakes.kimi.forget(file.provider_file_id)
    ctx.fakes.kimi.hang = true
    ctx.fakes.kimi.ops = ['upload']
    const res = await ctx.app.inject({ method: 'POST', url: `/v1/files/${file.id}/ensure`, headers: as(tenant) })
    assertProblem(res, 504, 'PROVIDER_TIMEOUT')
    await nothingLeft(ctx)
  })

  test("one tenant's trickling stream-through bodies: another tenant's upload answers at once, reservations stay bounded", async (t) => {
    const capacity = 8
    const ctx = await setupUploads(t, database, {
      PROVIDER_MAX_CONCURRENT_UPLOADS: String(capacity),
      PROVIDER_TIMEOUT_MS: '3000',
      UPLOAD_TIMEOUT_MS: '6000',
      REQUEST_TIMEOUT_MS: '12000',
      SHUTDOWN_TIMEOUT_MS: '15000',
    })
    if (!ctx) return
    const target = await listen(ctx.app)
    const attacker = freshTenant('trickler')
    const bodies = Array.from({ length: 12 }, (_, i) => trickle(target, attacker, `slow ${i} ${attacker}`))
    t.after(() => {
      for (const b of bodies) b.stop()
    })
    // The most a reservation may be: the declared length of the bodies that hold a slot, at most
    // the tenant's share of the slots (TENANT_MAX_SHARE, 0.5 by default).
    const declared = Math.max(...bodies.map((b) => b.declared))
    const allowed = Math.floor(capacity * 0.5) * declared
    let peak = 0
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, await accountBytes(ctx, 'kimi', attacker))
        await sleep(25)
      }
    })()
    await eventually('the trickling uploads reached the provider', () => ctx.fakes.kimi.requests.upload >= 4, 5000)
    await sleep(100)

    const victim = freshTenant('victim')
    const started = Date.now()
    const spooled = await postFile(ctx.app, victim, [
      ['provider', 'kimi'],
      filePart('forty bytes from another tenant .......'),
    ])
    const spooledMs = Date.now() - started
    assert.equal(spooled.statusCode, 201, spooled.body)
    const streamedAt = Date.now()
    const streamed = await postFile(ctx.app, victim, [['provider', 'kimi'], filePart('streamed by another tenant')], {
      'x-content-sha256': sha256('streamed by another tenant'),
    })
    const streamedMs = Date.now() - streamedAt
    assert.equal(streamed.statusCode, 201, streamed.body)
    assert.ok(spooledMs < 1000, `another tenant's upload took ${spooledMs} ms`)
    assert.ok(streamedMs < 1000, `another tenant's streamed upload took ${streamedMs} ms`)

    const answers = await Promise.all(bodies.map((b) => b.answer))
    sampling = false
    await sampler
    for (const res of answers) {
      assert.equal(res.status, 408, res.body)
      assert.equal(JSON.parse(res.body).code, 'REQUEST_TIMEOUT')
    }
    const firstCut = Math.min(...answers.map((a) => a.afterMs))
    t.diagnostic(
      `other tenant: spooled ${spooledMs} ms, streamed ${streamedMs} ms; first trickle cut after ${firstCut} ms; peak reserved ${peak} bytes (bound ${allowed})`,
    )
    assert.ok(firstCut < 1500, `a trickling body let its slot go after ${firstCut} ms, not at PROVIDER_TIMEOUT_MS`)
    assert.ok(peak <= allowed, `reserved at most ${allowed} bytes at once, saw ${peak}`)
    assert.ok(ctx.fakes.kimi.maxInFlight.upload <= capacity)
    for (const row of await rowsOf(ctx.app, attacker)) assert.equal(row.status, 'failed')
    await nothingLeft(ctx)
  })
})
