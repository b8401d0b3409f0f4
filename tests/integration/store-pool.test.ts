/**
 * The Postgres pool, against real Postgres behind a TCP front: each connection's establishment is
 * timed (filegate_db_connect_duration_seconds: a handshake the front delays shows as long, a refused
 * connect as failed), the calls waiting for a connection are counted (filegate_db_pool_waiting: a
 * pool of one held by the migration lock has the next call waiting), a pool whose connects
 * failed through a cut connects again within a second or so once the database is back (the
 * driver's own backoff kept it away for up to 20 s), and a call issued as its connection is reset
 * is answered (the driver left it waiting for ever) and the connection it poisoned is replaced (the
 * driver timed out its every connect: CONNECT_TIMEOUT with nothing wrong on the network).
 */
import assert from 'node:assert/strict'
import { describe, it, type TestContext } from 'node:test'
import { createMetrics, type Metrics } from '../../src/metrics.js'
import { createPostgresStore, reconnectBackoff } from '../../src/store/postgres.js'
import { startTcpFront } from '../fakes/tcp-front.js'
import { adminUrl, postgresSuiteSkip } from '../helper.js'
import { eventually, within } from '../process-support.js'

const skip = await postgresSuiteSkip()

async function storeBehindFront(t: TestContext, max: number) {
  const target = new URL(adminUrl)
  const front = await startTcpFront(t, { host: target.hostname, port: Number(target.port || 5432) })
  const url = new URL(adminUrl)
  url.port = String(front.port)
  const metrics = createMetrics()
  const store = createPostgresStore(url.toString(), { max, metrics })
  t.after(() => store.close())
  return { store, front, metrics }
}

async function connects(metrics: Metrics, outcome: 'connected' | 'failed') {
  const { values } = await metrics.dbConnectDuration.get()
  const value = (name: string, le?: number) =>
    values.find(
      (v) =>
        v.metricName === name &&
        v.labels.outcome === outcome &&
        (le === undefined || (v.labels as { le?: number }).le === le),
    )?.value ?? 0
  return {
    count: value('filegate_db_connect_duration_seconds_count'),
    sum: value('filegate_db_connect_duration_seconds_sum'),
    within250ms: value('filegate_db_connect_duration_seconds_bucket', 0.25),
  }
}

const waiting = async (metrics: Metrics) => (await metrics.dbPoolWaiting.get()).values[0]?.value ?? 0

const backendPid = (store: { call<T>(fn: string): Promise<T> }) => store.call<number>('pg_backend_pid')

describe('the Postgres pool: connects, waiting calls, reconnecting after a cut', { skip }, () => {
  it('a handshake the network delays is in filegate_db_connect_duration_seconds; a refused connect counts as failed', async (t) => {
    const { store, front, metrics } = await storeBehindFront(t, 1)
    await front.set({ kind: 'delay', ms: 400 })
    assert.ok((await backendPid(store)) > 0)
    const delayed = await connects(metrics, 'connected')
    assert.equal(delayed.count, 1, 'one connection made')
    assert.ok(delayed.sum >= 0.4, `the 400 ms the front held the handshake are in it (${delayed.sum} s)`)
    assert.equal(delayed.within250ms, 0, 'not in the buckets under the delay')
    // The connection is cut and the database refuses: the connects that follow fail.
    await front.set({ kind: 'refuse' })
    await eventually(
      'a refused connect is counted',
      async () => {
        await assert.rejects(backendPid(store), (err: { code?: string }) => err.code === 'DATABASE_UNAVAILABLE')
        return (await connects(metrics, 'failed')).count >= 1
      },
      10_000,
    )
  })

  it('a pool of one held by the migration lock: the next call waits (filegate_db_pool_waiting 1), then runs (0)', async (t) => {
    const { store, metrics } = await storeBehindFront(t, 1)
    let release: () => void = () => {}
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    let holding: () => void = () => {}
    const lockTaken = new Promise<void>((resolve) => {
      holding = resolve
    })
    const lock = store.migrator?.withLock(async () => {
      holding()
      await held
    })
    await lockTaken
    assert.equal(await waiting(metrics), 0)
    const call = backendPid(store)
    await eventually('the call waits for the connection', async () => (await waiting(metrics)) === 1, 10_000)
    release()
    await within(10_000, 'the waiting call', call)
    await lock
    assert.equal(await waiting(metrics), 0, 'none waiting once it ran')
    // A call that fails while waiting (the pool closing) leaves the count as well.
    await store.close()
    await assert.rejects(backendPid(store))
    assert.equal(await waiting(metrics), 0)
  })

  it('after a cut that failed many connects, the pool connects again within a second or so of the database coming back', async (t) => {
    const { store, front } = await storeBehindFront(t, 4)
    assert.ok((await backendPid(store)) > 0)
    await front.set({ kind: 'refuse' })
    // Enough failed connects for the driver's own backoff to reach its 20 s ceiling (3^8 / 100 s).
    for (let i = 0; i < 10; i++) await assert.rejects(backendPid(store))
    await front.set({ kind: 'pass' })
    // reconnectBackoff waits at most 1 s; the bound leaves a loaded machine room and stays far
    // below the 10 to 20 s the driver's backoff waited here.
    const started = Date.now()
    assert.ok((await within(8_000, 'a call once the database is back', backendPid(store))) > 0)
    t.diagnostic(`answered ${Date.now() - started} ms after the database came back`)
  })

  it('a call issued as its connection is reset is answered 503, not left waiting for ever', async (t) => {
    const { store, front } = await storeBehindFront(t, 1)
    assert.ok((await backendPid(store)) > 0)
    await front.set({ kind: 'refuse' })
    // The first call's write meets the reset (ECONNRESET); the second is issued as soon as the
    // first failed, while the driver still holds the broken connection as busy: the driver queued
    // it there and, on the close that followed, never settled it.
    await assert.rejects(backendPid(store), (err: { code?: string }) => err.code === 'DATABASE_UNAVAILABLE')
    await assert.rejects(
      within(10_000, 'the call issued on the broken connection', backendPid(store)),
      (err: { code?: string }) => err.code === 'DATABASE_UNAVAILABLE',
    )
    await front.set({ kind: 'pass' })
    // The broken connection had a write batched when it closed: the driver never writes on it
    // again, so each of its connects timed out (CONNECT_TIMEOUT every 5 s, for good). It is now
    // found stuck within a second, its call answered 503, and the pool replaced: the next call runs.
    const first = await within(
      10_000,
      'a call once the database is back',
      backendPid(store).catch((err) => err),
    )
    if (typeof first !== 'number') {
      assert.match(String((first as Error).cause), /sent nothing on a new connection/)
    }
    assert.ok((await within(10_000, 'the next call', backendPid(store))) > 0)
  })

  it("a failed call's error carries neither its query text nor its arguments as enumerable properties (logs)", async (t) => {
    const { store } = await storeBehindFront(t, 1)
    const err = await store.call('length', { no_such_argument: 'secret-argument-value' }).catch((e: unknown) => e)
    assert.ok(err instanceof Error)
    assert.doesNotMatch(JSON.stringify(err), /secret-argument-value/)
    for (const key of ['query', 'parameters', 'args']) assert.ok(!Object.keys(err).includes(key), key)
  })

  it('reconnectBackoff: 50 ms doubling, never over 1 s', () => {
    for (let retries = 0; retries < 40; retries++) {
      const delay = reconnectBackoff(retries)
      assert.ok(delay > 0 && delay <= 1, `${retries}: ${delay}`)
      assert.ok(delay <= 0.05 * 2 ** retries)
    }
  })
})
