/**
 * The guard of tests/process-support.ts: a service process that met an uncaught exception or an
 * unhandled rejection fails the test that started it, whatever that test asserted. Proved on the
 * real entry (src/server.ts), with the error injected by a module loaded before it (thrown once
 * the test makes a trigger file, after the service answered); the test's
 * `after` hooks are collected here and run by hand, so that the failure they raise can be seen.
 * (An app built in-process by tests/helper.ts needs no guard of its own: node:test fails the
 * running test on an uncaughtException or unhandledRejection of its process.)
 */
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it, type TestContext } from 'node:test'
import { freePort, tempDir } from '../helper.js'
import {
  killGroup,
  serverEnv,
  serviceModule,
  spawnNode,
  uncaughtIn,
  waitForStatus,
  within,
} from '../process-support.js'

/** A `t` whose after hooks run only when `runAfter` is called. */
function heldHooks() {
  const hooks: Array<() => unknown> = []
  return {
    t: { after: (fn: () => unknown) => void hooks.push(fn) },
    runAfter: async () => {
      for (const hook of hooks.reverse()) await hook()
    },
  }
}

/** The service, `fault` run in it (a statement) once the test calls `trigger`. */
async function service(t: TestContext, fault: string | undefined) {
  const held = heldHooks()
  const port = await freePort()
  const unreachable = await freePort()
  const triggerFile = join(await tempDir(t, 'fg-uncaught-'), 'now')
  const run = serviceModule('src/server.ts')
  // Not a signal: close-with-grace takes most signals as a shutdown.
  const watcher = `import { existsSync } from 'node:fs'
const timer = setInterval(() => { if (existsSync(${JSON.stringify(triggerFile)})) { clearInterval(timer); ${fault} } }, 20)
timer.unref()`
  const nodeArgs = [
    ...run.nodeArgs,
    ...(fault ? ['--import', `data:text/javascript,${encodeURIComponent(watcher)}`] : []),
  ]
  // The database is unreachable: the process listens and keeps trying it in the background.
  const env = await serverEnv(t, port, { DATABASE_URL: `postgres://postgres@127.0.0.1:${unreachable}/none` })
  const child = spawnNode(held.t, run.entry, env, nodeArgs)
  // Whatever becomes of the test, the process does not outlive it.
  t.after(() => killGroup(child.proc))
  return { child, port, runAfter: held.runAfter, trigger: () => writeFile(triggerFile, '') }
}

describe('a spawned service that meets an uncaught error fails its test', () => {
  it('an uncaught exception: the after hook throws, naming the log line', async (t) => {
    const { child, port, runAfter, trigger } = await service(t, "throw new Error('injected for the guard')")
    await waitForStatus(child, port, '/healthz', 200, 20_000)
    await trigger()
    await within(20_000, 'the process to exit', child.exited, child.output)
    assert.ok(uncaughtIn(child.output()), child.output())
    await assert.rejects(runAfter(), /uncaught error.*injected for the guard/)
  })

  it('an unhandled rejection: the same', async (t) => {
    const { child, port, runAfter, trigger } = await service(t, "Promise.reject(new Error('rejected for the guard'))")
    await waitForStatus(child, port, '/healthz', 200, 20_000)
    await trigger()
    await within(20_000, 'the process to exit', child.exited, child.output)
    await assert.rejects(runAfter(), /uncaught error.*rejected for the guard/)
  })

  it('a process that met none: the after hook kills it and passes', async (t) => {
    const { child, port, runAfter } = await service(t, undefined)
    await waitForStatus(child, port, '/healthz', 200, 20_000)
    await runAfter()
    assert.equal(uncaughtIn(child.output()), undefined)
  })
})
