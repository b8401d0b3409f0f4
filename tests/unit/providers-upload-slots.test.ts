/**
 * A provider's upload slots, shared fairly: a free slot goes to the tenant holding the fewest, one
 * tenant's client-paced uploads hold at most its share even while slots are free, the queue is
 * bounded overall and per tenant, and a wait ends with its deadline or its caller.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { type SlotLease, SlotRefusal, UploadSlots } from '../../src/providers/upload-slots.js'

const ask = (slots: UploadSlots, tenant: string, clientPaced = false, waitMs = 1000, signal?: AbortSignal) =>
  slots.acquire({ tenant, clientPaced, waitMs, signal })

/** Whether `p` settled by the next turn of the event loop. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false
  p.then(
    () => {
      done = true
    },
    () => {
      done = true
    },
  )
  await new Promise((r) => setImmediate(r))
  return done
}

describe('upload slots', () => {
  test('a freed slot goes to the waiting tenant that holds the fewest, not to the longest queue', async () => {
    const slots = new UploadSlots(2, 100, 1)
    const a1 = await ask(slots, 'a')
    const a2 = await ask(slots, 'a')
    const aWaiting = [ask(slots, 'a'), ask(slots, 'a'), ask(slots, 'a')]
    const b = ask(slots, 'b')
    a1.release()
    assert.equal(await settled(b), true, 'b, holding nothing, is served first')
    assert.deepEqual(await Promise.all(aWaiting.map(settled)), [false, false, false])
    a2.release()
    assert.equal(await settled(aWaiting[0] as Promise<SlotLease>), true, "then a's earliest")
    assert.equal(slots.inUse, 2)
  })

  test("a tenant's client-paced uploads hold at most its share, even with slots free; another tenant gets one at once", async () => {
    const slots = new UploadSlots(8, 100, 0.5)
    const paced = await Promise.all(Array.from({ length: 4 }, () => ask(slots, 'a', true)))
    const fifth = ask(slots, 'a', true)
    assert.equal(await settled(fifth), false, 'the fifth waits although four slots are free')
    assert.equal(await settled(ask(slots, 'a', false)), true, 'a body paced by the provider may take a free slot')
    assert.equal(await settled(ask(slots, 'b', true)), true, 'another tenant streams at once')
    paced[0]?.release()
    assert.equal(await settled(fifth), true, 'one of its own done: the next one goes')
  })

  test('the queue is bounded overall and per tenant; a refused or timed-out request holds nothing', async () => {
    const slots = new UploadSlots(1, 4, 0.5)
    await ask(slots, 'a')
    const waiting = [ask(slots, 'a'), ask(slots, 'a')]
    await assert.rejects(ask(slots, 'a'), (err) => err instanceof SlotRefusal && err.reason === 'queue_full')
    const others = [ask(slots, 'b'), ask(slots, 'c')]
    await assert.rejects(ask(slots, 'd'), (err) => err instanceof SlotRefusal && err.reason === 'queue_full')
    await assert.rejects(ask(slots, 'e', false, 20), (err) => err instanceof SlotRefusal && err.reason === 'queue_full')
    for (const p of [...waiting, ...others]) p.catch(() => {})
    const timedOut = new UploadSlots(1, 10, 1)
    const held = await ask(timedOut, 'x')
    await assert.rejects(ask(timedOut, 'y', false, 20), (err) => err instanceof SlotRefusal && err.reason === 'timeout')
    const controller = new AbortController()
    const leaving = ask(timedOut, 'z', false, 1000, controller.signal)
    controller.abort(new Error('client gone'))
    await assert.rejects(leaving, /client gone/)
    held.release()
    held.release()
    assert.equal(timedOut.inUse, 0, 'a release counts once; nobody left waits')
  })
})
