/**
 * Cold start under load, against the real process: a fresh PGlite DATA_DIR (its WebAssembly
 * compiled, its schema created) while every core is busy. The process listens at once (liveness
 * 200, readiness 503 "starting") and turns ready when the store is; it never dies of Fastify's
 * plugin timeout.
 *
 * @alone it keeps every core busy on purpose (a cold start under load): every file beside it would slow down
 */
import assert from 'node:assert/strict'
import { availableParallelism } from 'node:os'
import { describe, it, type TestContext } from 'node:test'
import { freePort, tempDir } from '../helper.js'
import { serverEnv, spawnChild, spawnNode, watchStartUp } from '../process-support.js'

/** One busy loop per core (probed), each in its own process group, killed after the test. */
function busyCores(t: TestContext): number {
  const cores = availableParallelism()
  for (let i = 0; i < cores; i++) {
    spawnChild(t, process.execPath, ['-e', 'for (;;) {}'])
  }
  return cores
}

describe('cold start, every core busy', () => {
  it('a fresh PGlite DATA_DIR with every core busy: listens at once, "starting", then ready', async (t) => {
    const cores = busyCores(t)
    const port = await freePort()
    const dataDir = await tempDir(t, 'filegate-cold-pglite-')
    const started = Date.now()
    const child = spawnNode(t, 'src/server.ts', await serverEnv(t, port, { DATA_DIR: dataDir }))
    const seen = await watchStartUp(child, port, 240_000)
    t.diagnostic(`${cores} cores busy: ready ${Date.now() - started} ms after spawn`)
    assert.ok(seen.liveBeforeReady, 'liveness answered before readiness')
    assert.ok(seen.starting, 'readiness said "starting" meanwhile')
  })
})
