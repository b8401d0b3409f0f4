/**
 * What becomes of a provider copy whose settle never answers (domain/unsettled-copies.ts), against
 * a fake Kimi on loopback and a store port in the states a database outage puts it in: every call
 * refused (nothing can have committed: the copy is deleted before the answer), or a call that never
 * answers (it may yet commit: the copy is journaled, never deleted), or a delete the provider
 * refuses too (journaled). The journal entry is on disk before the error reaches the caller.
 */
import assert from 'node:assert/strict'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it, type TestContext } from 'node:test'
import { UnsettledCopies } from '../../src/domain/unsettled-copies.js'
import { isAppError } from '../../src/errors.js'
import { createMetrics } from '../../src/metrics.js'
import { createProviderRegistry } from '../../src/providers/registry.js'
import { databaseUnavailable, mayHaveCommitted, type StorePort } from '../../src/store/port.js'
import { startFakes, tempDir, testConfig } from '../helper.js'

const refused = () =>
  databaseUnavailable(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))
const cutUnderWay = () =>
  databaseUnavailable(Object.assign(new Error('write CONNECTION_CLOSED'), { code: 'CONNECTION_CLOSED' }))

/** The store port while the database refuses every connection. */
const refusingStore: StorePort = {
  transport: 'postgres',
  call: () => Promise.reject(refused()),
  close: async () => {},
}

async function setup(t: TestContext, options: { retryMs?: number; journalDir?: string } = {}) {
  const fakes = await startFakes(t)
  const providers = createProviderRegistry(testConfig({ ...fakes.env, RETRY_MAX_ATTEMPTS: '2' }))
  t.after(() => providers.close())
  const metrics = createMetrics()
  const journalDir = options.journalDir ?? join(await tempDir(t, 'filegate-journal-'), 'unsettled-copies')
  const lines: Array<{ level: string; obj: object }> = []
  const unsettled = new UnsettledCopies({
    providers,
    metrics,
    deletion: { store: refusingStore, providers, metrics, leaseSeconds: 60 },
    journalDir,
    retryMs: options.retryMs ?? 300,
    log: {
      warn: (obj) => lines.push({ level: 'warn', obj }),
      error: (obj) => lines.push({ level: 'error', obj }),
    },
  })
  const copy = fakes.kimi.addFile({ filename: 'doc.txt' })
  const made = { provider: 'kimi', rowId: '00000000-0000-4000-8000-000000000001', providerFileId: copy.id }
  const outcome = async (name: string) =>
    (await metrics.providerOrphans.get()).values.find((v) => v.labels.outcome === name)?.value ?? 0
  const entries = async () => {
    const names = (await readdir(journalDir).catch(() => [] as string[])).filter((n) => n.endsWith('.json'))
    return Promise.all(names.map(async (n) => JSON.parse(await readFile(join(journalDir, n), 'utf8'))))
  }
  return { fakes, unsettled, made, outcome, entries, lines }
}

const unavailable = (err: unknown) => isAppError(err) && err.code === 'DATABASE_UNAVAILABLE'

describe('a provider copy whose settle never answers', () => {
  it('every attempt refused: tried again, then the copy deleted before the error, its claim journaled', async (t) => {
    const { fakes, unsettled, made, outcome, entries } = await setup(t)
    let attempts = 0
    await assert.rejects(
      unsettled.settle(made, () => {
        attempts++
        return refusingStore.call('complete_upload')
      }),
      unavailable,
    )
    assert.ok(attempts > 1, `the settle was tried again (${attempts} attempts)`)
    assert.deepEqual(fakes.kimi.deletes, [made.providerFileId])
    assert.equal(fakes.kimi.files.size, 0)
    assert.equal(await outcome('deleted'), 1)
    const [entry, ...more] = await entries()
    assert.equal(more.length, 0)
    assert.equal(entry.providerFileId, made.providerFileId)
    assert.equal(typeof entry.deletedAt, 'number', 'journaled as deleted: only its claim is left to let go')
  })

  it('an attempt cut under way may have committed: journaled, not deleted', async (t) => {
    const { fakes, unsettled, made, outcome, entries } = await setup(t)
    await assert.rejects(
      unsettled.settle(made, () => Promise.reject(cutUnderWay())),
      unavailable,
    )
    assert.deepEqual(fakes.kimi.deletes, [])
    assert.equal(fakes.kimi.files.size, 1)
    assert.equal(await outcome('journaled'), 1)
    assert.equal(await outcome('deleted'), 0)
    const [entry] = await entries()
    assert.equal(entry.providerFileId, made.providerFileId)
    assert.equal(entry.deletedAt, undefined)
  })

  it('an attempt that never answers within the window: journaled, the caller answered 503', async (t) => {
    const { fakes, unsettled, made, outcome } = await setup(t, { retryMs: 200 })
    await assert.rejects(
      unsettled.settle(made, () => new Promise(() => {})),
      unavailable,
    )
    assert.deepEqual(fakes.kimi.deletes, [])
    assert.equal(await outcome('journaled'), 1)
  })

  it('the provider refuses the delete too: journaled', async (t) => {
    const { fakes, unsettled, made, outcome, entries } = await setup(t)
    fakes.kimi.deleteFailNext(10, 503)
    await assert.rejects(
      unsettled.settle(made, () => refusingStore.call('complete_upload')),
      unavailable,
    )
    assert.equal(fakes.kimi.files.size, 1)
    assert.equal(await outcome('journaled'), 1)
    assert.equal((await entries())[0].deletedAt, undefined)
  })

  it('a journal that cannot be written and a delete that fails: counted lost, its id in an error line', async (t) => {
    // A regular file where the journal's directory should be: nothing can be written under it.
    const blocker = join(await tempDir(t, 'filegate-journal-'), 'a-file')
    await writeFile(blocker, '')
    const { fakes, unsettled, made, outcome, lines } = await setup(t, { journalDir: join(blocker, 'journal') })
    fakes.kimi.deleteFailNext(10, 503)
    await assert.rejects(
      unsettled.settle(made, () => refusingStore.call('complete_upload')),
      unavailable,
    )
    assert.equal(await outcome('lost'), 1)
    assert.ok(lines.some((l) => l.level === 'error' && JSON.stringify(l.obj).includes(made.providerFileId)))
  })

  it('tells a call that never reached the database from one cut under way', () => {
    assert.equal(mayHaveCommitted(refused()), false)
    assert.equal(mayHaveCommitted(cutUnderWay()), true)
    const timedOut = databaseUnavailable(Object.assign(new Error('connect timeout'), { code: 'CONNECT_TIMEOUT' }))
    assert.equal(mayHaveCommitted(timedOut), false)
    // The database answered with an error: its transaction rolled back.
    assert.equal(mayHaveCommitted(Object.assign(new Error('boom'), { code: '23505' })), false)
    // PostgREST unreachable or timed out (status 0): the transport cannot say whether it committed.
    assert.equal(mayHaveCommitted(databaseUnavailable({ message: 'TypeError: fetch failed', code: '' })), true)
    assert.equal(mayHaveCommitted(new Error('something else')), true)
  })
})
