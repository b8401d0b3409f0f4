/** The soak's judge (bench/soak/classify.ts): each answer against the docs' error table and the fault then active; and the database figures its report reads from /metrics. */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { classify, type Judge, readDocumentedCodes } from '../../bench/soak/classify.js'
import type { FaultWindow } from '../../bench/soak/faults.js'
import type { Outcome } from '../../bench/soak/ledger.js'
import { dbFigures, poolWaiting } from '../../bench/soak/report.js'

const documented = readDocumentedCodes(join(import.meta.dirname, '..', '..', 'docs', 'api.md'))
const judge = (windows: FaultWindow[]): Judge => ({
  documented,
  windows,
  slotWaitMs: 8_000,
  tails: { dbMs: 5_000, storeMs: 5_000, providerMs: 7_000 },
})
const at = (start: number, end: number, rest: Partial<Outcome>): Outcome => ({
  op: 'upload',
  tenant: 'acme',
  replica: 'replica-a',
  start,
  end,
  provider: 'kimi',
  ...rest,
})
const kinds = (o: Outcome, windows: FaultWindow[]) => {
  const v = classify(o, judge(windows))
  return v.kind === 'violation' ? v.cls : v.kind
}

describe('soak classification', () => {
  test('reads the codes and statuses of the error table in docs/api.md', () => {
    assert.equal(documented.get('DATABASE_UNAVAILABLE'), 503)
    assert.equal(documented.get('PROVIDER_TIMEOUT'), 504)
    assert.equal(documented.get('VALIDATION_FAILED'), 400)
    assert.ok(documented.size > 25)
  })

  test('503 DATABASE_UNAVAILABLE is expected during a Postgres cut and its tail, a violation otherwise', () => {
    const cut: FaultWindow = { kind: 'db-refuse', target: 'db', start: 10_000, end: 15_000, detail: '' }
    const answer = { status: 503, code: 'DATABASE_UNAVAILABLE' }
    assert.equal(kinds(at(12_000, 12_500, answer), [cut]), 'expected')
    assert.equal(kinds(at(19_000, 19_500, answer), [cut]), 'expected')
    assert.equal(kinds(at(30_000, 30_500, answer), [cut]), 'unexpected-5xx')
  })

  test('a 500, an undocumented code and a code with the wrong status are violations whatever the fault', () => {
    const all: FaultWindow[] = [{ kind: 'db-hang', target: 'db', start: 0, end: 100_000, detail: '' }]
    assert.equal(kinds(at(1, 2, { status: 500, code: 'INTERNAL' }), all), 'server-error')
    assert.equal(kinds(at(1, 2, { status: 503, code: 'POOL_EXHAUSTED' }), all), 'undocumented')
    assert.equal(kinds(at(1, 2, { status: 500, code: 'DATABASE_UNAVAILABLE' }), all), 'server-error')
    assert.equal(kinds(at(1, 2, { status: 502, code: 'DATABASE_UNAVAILABLE' }), all), 'undocumented')
  })

  test('provider codes count only for a fault at the provider the request needed', () => {
    const burst: FaultWindow = { kind: 'provider-500', target: 'glm', start: 0, end: 5_000, detail: '' }
    const answer = { status: 502, code: 'PROVIDER_ERROR' }
    assert.equal(kinds(at(1_000, 2_000, { ...answer, provider: 'glm' }), [burst]), 'expected')
    assert.equal(kinds(at(1_000, 2_000, { ...answer, provider: 'kimi' }), [burst]), 'unexpected-5xx')
    const slow: FaultWindow = { kind: 'provider-latency', target: 'kimi', start: 0, end: 5_000, detail: '' }
    assert.equal(kinds(at(1_000, 2_000, answer), [slow]), 'unexpected-5xx')
  })

  test('a 4xx the request did not deserve is a violation; one a concurrent delete explains is not', () => {
    const gone = { op: 'original' as const, status: 409, code: 'ORIGINAL_UNAVAILABLE' }
    assert.equal(kinds(at(1, 2, gone), []), 'undeserved-4xx')
    assert.equal(kinds(at(1, 2, { ...gone, fileDeleted: true }), []), 'expected')
    assert.equal(kinds(at(1, 2, { status: 400, code: 'VALIDATION_FAILED' }), []), 'undeserved-4xx')
  })

  test('connections refused by a killed replica are expected; a reset after SIGTERM of a request in flight is not', () => {
    const kill: FaultWindow = { kind: 'replica-sigkill', target: 'replica-a', start: 10_000, end: 20_000, detail: '' }
    const term: FaultWindow = { kind: 'replica-sigterm', target: 'replica-a', start: 10_000, end: 20_000, detail: '' }
    assert.equal(kinds(at(9_000, 10_100, { error: 'UND_ERR_SOCKET' }), [kill]), 'expected')
    assert.equal(kinds(at(9_000, 10_100, { error: 'UND_ERR_SOCKET' }), [term]), 'dropped-in-flight')
    assert.equal(kinds(at(11_000, 11_001, { error: 'ECONNREFUSED' }), [term]), 'expected')
    assert.equal(kinds(at(11_000, 11_001, { error: 'ECONNREFUSED', replica: 'replica-b' }), [kill]), 'connection-error')
    assert.equal(kinds(at(1, 40_000, { error: 'timeout' }), []), 'no-answer')
  })

  test("a download of an original cut short is expected only while a store fault overlaps it, and only that op's", () => {
    const refuse: FaultWindow = { kind: 'store-refuse', target: 'store', start: 10_000, end: 20_000, detail: '' }
    const cut = { op: 'original' as const, error: 'UND_ERR_SOCKET' }
    assert.equal(kinds(at(9_990, 10_030, cut), [refuse]), 'expected')
    assert.equal(kinds(at(25_000, 25_030, cut), [refuse]), 'connection-error')
    assert.equal(kinds(at(9_990, 10_030, { ...cut, op: 'list' }), [refuse]), 'connection-error')
    assert.equal(kinds(at(9_990, 40_000, { ...cut, error: 'timeout' }), [refuse]), 'no-answer')
  })

  test('an answer whose content is wrong is a violation even when its status is right', () => {
    assert.equal(kinds(at(1, 2, { status: 201, contentProblem: 'another sha256' }), []), 'wrong-answer')
    assert.equal(kinds(at(1, 2, { status: 201 }), []), 'ok')
  })
})

describe('soak report: the database figures of /metrics', () => {
  test('connect durations and the highest pool wait per replica when exported, nothing when not', () => {
    const text = [
      '# HELP filegate_db_connect_duration_seconds Time to open a database connection',
      '# TYPE filegate_db_connect_duration_seconds histogram',
      'filegate_db_connect_duration_seconds_bucket{le="0.01"} 3',
      'filegate_db_connect_duration_seconds_bucket{le="0.1"} 4',
      'filegate_db_connect_duration_seconds_bucket{le="+Inf"} 4',
      'filegate_db_connect_duration_seconds_sum 0.12',
      'filegate_db_connect_duration_seconds_count 4',
      'filegate_db_pool_waiting 2',
    ].join('\n')
    assert.equal(poolWaiting(text), 2)
    assert.equal(poolWaiting('filegate_http_requests_total 1'), undefined)
    const lines = dbFigures(new Map([['replica-a#1', text]]), new Map([['replica-a#1', 5]]))
    assert.deepEqual(lines, ['  replica-a#1: 4 connects, mean 30.0 ms, all within 0.1 s; pool waiting at most 5'])
    assert.deepEqual(dbFigures(new Map([['replica-a#1', 'process_cpu_seconds_total 1']]), new Map()), [])
  })
})
