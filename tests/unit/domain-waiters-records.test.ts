/** SettleWaiters (in-process wake-ups) and the File record mapping and cursors. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { decodeCursor, encodeCursor, type FileRow, iso, isUuid, toFileObject } from '../../src/domain/file-record.js'
import { SettleWaiters } from '../../src/domain/settle-waiters.js'
import { isAppError } from '../../src/errors.js'

describe('SettleWaiters', () => {
  test('notify wakes every waiter of that id at once, and only them', async () => {
    const waiters = new SettleWaiters()
    const woken: string[] = []
    const a = waiters.wait('x', 60_000).then(() => woken.push('a'))
    const b = waiters.wait('x', 60_000).then(() => woken.push('b'))
    const other = waiters.wait('y', 30).then(() => woken.push('y'))
    waiters.notify('x')
    await Promise.all([a, b])
    assert.deepEqual(woken.sort(), ['a', 'b'])
    await other
    assert.deepEqual(woken.sort(), ['a', 'b', 'y'], 'the other waiter ended by its timeout')
    waiters.notify('nobody') // no waiters: nothing happens
  })
})

const row: FileRow = {
  id: '0b6f7c1e-3f6a-4c47-9a55-3c1b1d2f8e10',
  tenant_id: 'acme',
  provider: 'kimi',
  provider_file_id: 'cv123',
  purpose: 'file-extract',
  filename: 'a.pdf',
  mime_type: 'application/pdf',
  bytes: '42' as unknown as number,
  sha256: 'a'.repeat(64),
  status: 'completed',
  error: null,
  metadata: { k: 1 },
  created_at: '2026-11-25T10:00:00.123456+00:00',
  updated_at: '2026-11-25T10:00:01+00:00',
  last_used_at: '2026-11-25T10:00:01+00:00',
  expires_at: null,
  deleted_at: null,
  deletion_reason: null,
  provider_deleted: false,
  original_stored: false,
  provider_deleted_at: null,
  delete_attempts: 3,
  last_delete_error: 'x',
}

describe('file records', () => {
  test('toFileObject: RFC 3339 UTC, numeric bytes, no bookkeeping columns', () => {
    const file = toFileObject(row, true)
    assert.equal(file.bytes, 42)
    assert.equal(file.created_at, '2026-11-25T10:00:00.123Z')
    assert.equal(file.deduplicated, true)
    assert.ok(!('delete_attempts' in file) && !('last_delete_error' in file) && !('provider_deleted_at' in file))
    assert.ok(!('deduplicated' in toFileObject(row)))
  })

  test('iso: the same instant Date would give, to the millisecond, for every timestamp shape', () => {
    for (const ts of [
      '2026-11-26T00:46:46.123456+00:00',
      '2026-11-26T00:46:46.1+00:00',
      '2026-11-26T00:46:46+00:00',
      '2026-11-26T00:46:46.999999+00:00',
      '2026-11-26T08:46:46.5+08:00',
      '2026-11-26T00:46:46.123Z',
    ]) {
      assert.equal(iso(ts), new Date(ts).toISOString(), ts)
    }
  })

  test('cursors round-trip the exact timestamp and id; anything else is VALIDATION_FAILED', () => {
    const cursor = encodeCursor(row)
    assert.deepEqual(decodeCursor(cursor), { createdAt: row.created_at, id: row.id })
    for (const bad of [
      '',
      'not-a-cursor',
      Buffer.from('[1,2]').toString('base64url'),
      encodeCursor({ ...row, id: 'x' }),
    ]) {
      assert.throws(
        () => decodeCursor(bad),
        (err: unknown) => isAppError(err) && err.code === 'VALIDATION_FAILED',
      )
    }
    assert.ok(isUuid(row.id))
    assert.ok(!isUuid('../etc'))
  })
})
