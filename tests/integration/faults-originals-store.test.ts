/**
 * The originals store (S3, s3rver behind a TCP front) failing at each step of a write while
 * uploads are under way at once: refusing connections, resetting them mid-body, holding them and
 * then resetting them. Every answer is the documented 503 ORIGINALS_UNAVAILABLE, the process lives
 * on (an uncaught error in this process fails the test: node:test reports it), and nothing of a
 * failed write is left open: no file descriptor of the process points at a temp file it removed
 * (a read stream over a part file or a spool handed to a request that failed before reading it).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readdir, readlink } from 'node:fs/promises'
import { describe, it, type TestContext } from 'node:test'
import { type FrontMode, startTcpFront, type TcpFront } from '../fakes/tcp-front.js'
import { within } from '../process-support.js'
import { type Backend, backends, type OriginalsApp, setupOriginals } from './originals-support.js'
import {
  assertProblem,
  eventually,
  freshTenant,
  metric,
  postFile,
  spoolEntries,
  useFileDatabase,
} from './uploads-support.js'

const database = useFileDatabase()
const s3 = backends.find((b) => b.name.startsWith('s3')) as Backend

/** The app's originals store reached through a TCP front before the S3 server. */
async function behindFront(
  t: TestContext,
  env: Record<string, string> = {},
): Promise<{ ctx: OriginalsApp; front: TcpFront } | undefined> {
  const front: { current?: TcpFront } = {}
  const backend: Backend = {
    name: 's3 behind a TCP front',
    async open(t) {
      const originals = await s3.open(t)
      const target = new URL(originals.env.S3_ENDPOINT as string)
      front.current = await startTcpFront(t, { host: target.hostname, port: Number(target.port) })
      return { ...originals, env: { ...originals.env, S3_ENDPOINT: front.current.origin } }
    },
  }
  const ctx = await setupOriginals(t, database, backend, env)
  return ctx && { ctx, front: front.current as TcpFront }
}

/** File descriptors of this process open on a file under `dir` that was removed. */
async function removedButOpen(dir: string): Promise<string[]> {
  const links = await Promise.all(
    (await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')),
  )
  return links.filter((target) => target.startsWith(dir) && target.endsWith('(deleted)'))
}

/** In memory (staged at the claim), spilled within one part (PutObject), spilled over parts (multipart). */
const sizes = [2_000, 1024 * 1024, 7 * 1024 * 1024]

async function uploadsAnswer503(ctx: OriginalsApp, label: string, bodySizes: number[], copies: number) {
  const tenant = freshTenant(label)
  const uploads = bodySizes.flatMap((size) =>
    Array.from({ length: copies }, () =>
      postFile(ctx.app, tenant, [
        ['provider', 'kimi'],
        ['file', { filename: 'a.pdf', content: randomBytes(size) }],
      ]),
    ),
  )
  return { tenant, answers: Promise.all(uploads) }
}

function assertAll503(answers: Awaited<ReturnType<typeof postFile>>[], step: string) {
  for (const res of answers) {
    assert.equal(res.statusCode, 503, `${step}: ${res.statusCode} ${res.body.slice(0, 200)}`)
    assertProblem(res, 503, 'ORIGINALS_UNAVAILABLE')
    assert.ok(Number(res.headers['retry-after']) > 0, `${step}: Retry-After`)
  }
}

async function assertAliveAndClean(ctx: OriginalsApp, step: string) {
  const live = await ctx.app.inject({ method: 'GET', url: '/healthz' })
  assert.equal(live.statusCode, 200, `${step}: the process still answers`)
  await eventually('the uploads are over', async () => (await metric(ctx.app, 'filegate_file_active_uploads')) === 0)
  assert.deepEqual(await spoolEntries(ctx.spoolDir), [], `${step}: no spool or part file left`)
  // A stream over a removed file still open is one that nobody owns: it could fail later, unheard.
  await eventually(`${step}: no descriptor on a removed temp file`, async () => {
    return (await removedButOpen(ctx.spoolDir)).length === 0
  })
}

describe('the originals store failing at each step of concurrent writes (S3 behind a TCP front)', () => {
  it('refusing connections, resetting them mid-body, holding them then failing: every answer is 503 ORIGINALS_UNAVAILABLE', async (t) => {
    const setup = await behindFront(t)
    if (!setup) return
    const { ctx, front } = setup
    const steps: Array<{ name: string; mode: FrontMode; sizes: number[] }> = [
      { name: 'refused', mode: { kind: 'refuse' }, sizes },
      // Below 32 KiB a request passes: the small ones (create, abort) go through, every body is cut.
      { name: 'reset mid-body', mode: { kind: 'reset', afterBytes: 32 * 1024 }, sizes: sizes.slice(1) },
    ]
    for (const step of steps) {
      await front.set(step.mode)
      const { answers } = await uploadsAnswer503(ctx, step.name.replace(/\W/g, ''), step.sizes, 3)
      assertAll503(await answers, step.name)
      await assertAliveAndClean(ctx, step.name)
    }
    // Held: the requests wait on connections that carry nothing, then every one of them is reset
    // and the store refuses from then on.
    await front.set({ kind: 'pause' })
    const { answers } = await uploadsAnswer503(ctx, 'paused', sizes, 3)
    await eventually('requests are held by the store', () => front.held() >= 3)
    await front.set({ kind: 'refuse' })
    assertAll503(await answers, 'held, then failed')
    await assertAliveAndClean(ctx, 'held, then failed')
    assert.ok((await metric(ctx.app, 'filegate_original_writes_total', { outcome: 'failed' })) >= 24)
    // And once the store answers again, the same uploads succeed.
    await front.set({ kind: 'pass' })
    const ok = await postFile(ctx.app, freshTenant('back'), [
      ['provider', 'kimi'],
      ['file', { filename: 'a.pdf', content: randomBytes(6 * 1024 * 1024) }],
    ])
    assert.equal(ok.statusCode, 201, ok.body.slice(0, 300))
  })

  // What a soak found: uploads waited on a store that accepted connections and answered nothing
  // until the client gave up (the server closed the connection at REQUEST_TIMEOUT_MS, no answer).
  it('a store that holds every connection and never answers: each upload is answered 503 within its deadline', async (t) => {
    // UPLOAD_TIMEOUT_MS 4 s: the store may stay silent 5 s (the floor) per request.
    const setup = await behindFront(t, { PROVIDER_TIMEOUT_MS: '2000', UPLOAD_TIMEOUT_MS: '4000' })
    if (!setup) return
    const { ctx, front } = setup
    await front.set({ kind: 'pause' })
    const { answers } = await uploadsAnswer503(ctx, 'hung', sizes, 2)
    // A bound against waiting for ever (the failure before the fix), far above the deadline.
    assertAll503(await within(60_000, 'the uploads into a hung store', answers), 'hung store')
    assert.ok(front.accepted() >= 1, 'the store accepted the connections it then held')
    await assertAliveAndClean(ctx, 'hung store')
    // Once the store answers again, an upload goes through on fresh connections.
    await front.set({ kind: 'pass' })
    const ok = await postFile(ctx.app, freshTenant('after-hung'), [
      ['provider', 'kimi'],
      ['file', { filename: 'a.pdf', content: randomBytes(1024 * 1024) }],
    ])
    assert.equal(ok.statusCode, 201, ok.body.slice(0, 300))
  })

  // What a soak found: after a store outage ended, the client reused a kept-alive connection the
  // store (or a proxy before it) had closed, and an upload failed 503 on a store that was healthy.
  it('a connection dropped before the store answered is sent again: every size of body is stored, 201', async (t) => {
    const setup = await behindFront(t)
    if (!setup) return
    const { ctx, front } = setup
    const tenant = freshTenant('dropped')
    for (const size of sizes) {
      await front.set({ kind: 'drop', requests: 1 })
      const before = front.dropped()
      const res = await postFile(ctx.app, tenant, [
        ['provider', 'kimi'],
        ['file', { filename: 'a.pdf', content: randomBytes(size) }],
      ])
      assert.equal(front.dropped(), before + 1, `${size} bytes: the front dropped one request`)
      assert.equal(res.statusCode, 201, `${size} bytes: ${res.body.slice(0, 300)}`)
      await assertAliveAndClean(ctx, `${size} bytes`)
    }
    assert.equal(await metric(ctx.app, 'filegate_original_writes_total', { outcome: 'failed' }), 0)
  })
})
