/**
 * The fake Kimi files API in its own process, so the fake's busboy parsing and hashing do not
 * share an event loop with the load generator. The parent drives it over the IPC channel.
 */

import type { FakeOp } from '../../tests/fakes/provider-server.js'
import { startFakeProvider } from '../../tests/fakes/provider-server.js'

export type FakeCommand =
  | { id: number; cmd: 'set'; latencyMs: number; ops: FakeOp[] | null }
  | { id: number; cmd: 'seed'; prefix: string; count: number }
  | { id: number; cmd: 'stats' }

export interface FakeStats {
  uploads: number
  deletes: number
  files: number
  deleteMaxInFlight: number
  uploadMaxInFlight: number
}

const send = (msg: unknown) => process.send?.(msg)

const fake = await startFakeProvider({ kind: 'kimi', apiKey: process.env.FAKE_API_KEY ?? 'sk-bench' })
// The bench uploads many files; the account cap of the real service is not what is measured.
fake.maxFiles = Number.POSITIVE_INFINITY

process.on('message', (msg: FakeCommand) => {
  switch (msg.cmd) {
    case 'set':
      fake.latencyMs = msg.latencyMs
      fake.ops = msg.ops
      break
    case 'seed':
      for (let i = 1; i <= msg.count; i++) fake.addFile({ id: `${msg.prefix}${i}`, filename: `bench-${i}.txt` })
      break
    case 'stats':
      break
  }
  const stats: FakeStats = {
    uploads: fake.uploads.length,
    deletes: fake.deletes.length,
    files: fake.files.size,
    deleteMaxInFlight: fake.maxInFlight.delete,
    uploadMaxInFlight: fake.maxInFlight.upload,
  }
  send({ id: msg.id, stats })
})
process.on('disconnect', () => {
  void fake.close().finally(() => process.exit(0))
})
send({ ready: true, baseUrl: fake.baseUrl })
