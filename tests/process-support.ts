/**
 * Every child process a test starts, and the plain HTTP helpers the process tests share (one
 * request on a new connection, polling a probe, bounded waits). A child starts detached, leading
 * its own process group (and session); after the test the whole group is killed, so nothing the
 * child started outlives the test; its stdout and stderr are captured.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process'
import { request } from 'node:http'
import { dirname, join } from 'node:path'
import type { TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { tempDir, testKeys } from './helper.js'

export const root = join(dirname(fileURLToPath(import.meta.url)), '..')

export const apiKeys = `alice:${testKeys.alice},*:${testKeys.admin}`

export interface Child {
  proc: ChildProcess
  /** stdout so far. */
  stdout(): string
  /** stderr so far. */
  stderr(): string
  /** stdout + stderr so far, in the order they came, for assertions and failure messages. */
  output(): string
  /** Resolves with the exit code (or the signal name) once the process has exited and its output is read. */
  exited: Promise<number | string>
  /** Milliseconds since the epoch at which the process exited (undefined while it runs). */
  exitedAt(): number | undefined
}

/** What src/server.ts logs (pino, JSON) when close-with-grace catches an uncaughtException or unhandledRejection. */
export const uncaughtMessage = 'fatal error, closing'

/** The log line of an uncaught error in `output`, if any. */
export function uncaughtIn(output: string): string | undefined {
  return output.split('\n').find((line) => line.includes(`"msg":"${uncaughtMessage}"`))
}

/** Kills a child's whole process group (it leads one: spawned detached). */
export function killGroup(proc: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (proc.pid === undefined) return
  try {
    process.kill(-proc.pid, signal)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
  }
}

/**
 * Spawns `command` detached into its own process group, `stdin` (default: nothing) on its standard
 * input, its output captured; after the test the group is killed (whatever the child itself
 * started dies too).
 */
export function spawnChild(
  t: Pick<TestContext, 'after'>,
  command: string,
  args: string[],
  options: SpawnOptions & { stdin?: string; uncaughtExpected?: boolean } = {},
): Child {
  const { stdin, uncaughtExpected: _, ...spawnOptions } = options
  const proc = spawn(command, args, { ...spawnOptions, detached: true, stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  let all = ''
  proc.stdout?.on('data', (chunk) => {
    out += String(chunk)
    all += String(chunk)
  })
  proc.stderr?.on('data', (chunk) => {
    err += String(chunk)
    all += String(chunk)
  })
  proc.stdin?.on('error', () => {})
  proc.stdin?.end(stdin ?? '')
  let exitedAt: number | undefined
  proc.once('exit', () => {
    exitedAt = Date.now()
  })
  const exited = new Promise<number | string>((resolve) => {
    proc.once('error', (e) => {
      err += e.message
      all += e.message
      resolve('spawn-error')
    })
    proc.once('close', (code, signal) => resolve(code ?? signal ?? 'unknown'))
  })
  t.after(async () => {
    // The group may hold more than the child (and outlive it): kill it in any case.
    killGroup(proc)
    await exited
    // A service that met an uncaught exception or an unhandled rejection fails the test that ran it,
    // whatever the test itself asserted: no failure of one request may end the process.
    const uncaught = uncaughtIn(all)
    if (uncaught && !options.uncaughtExpected) {
      throw new Error(`the process met an uncaught error (src/server.ts logs "${uncaughtMessage}"): ${uncaught}`)
    }
  })
  return { proc, stdout: () => out, stderr: () => err, output: () => all, exited, exitedAt: () => exitedAt }
}

/**
 * `node [nodeArgs] entry [args]` from the repository root with only the given environment (plus
 * PATH and this test run's FILEGATE_TEST_RUN token, by which the test guard knows its processes).
 */
export function spawnNode(
  t: Pick<TestContext, 'after'>,
  entry: string,
  env: Record<string, string>,
  nodeArgs?: string[],
  args: string[] = [],
): Child {
  const run = nodeArgs === undefined ? serviceModule(entry) : { nodeArgs, entry }
  return spawnChild(t, process.execPath, [...run.nodeArgs, run.entry, ...args], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'test',
      ...(process.env.FILEGATE_TEST_RUN ? { FILEGATE_TEST_RUN: process.env.FILEGATE_TEST_RUN } : {}),
      ...env,
    },
  })
}

/**
 * How a process runs one of the tree's modules (`src/server.ts`, `src/cli/main.ts`, a fake under
 * tests/fakes/…): from this run's build of the tree (FILEGATE_TEST_BUILD, made once by
 * scripts/run-tests.ts: the same TypeScript transform tsx applies, without a loader in each
 * process), else the source through tsx. (Not scripts/: a script there knows it was started, not
 * imported, by comparing its own location with the entry's, and in the build its location is its
 * source's.)
 */
export function serviceModule(source: string): { nodeArgs: string[]; entry: string } {
  const build = process.env.FILEGATE_TEST_BUILD
  if (build && /^(src|routes|tests)\/.+\.ts$/.test(source)) {
    return { nodeArgs: [], entry: join(build, source.replace(/\.ts$/, '.js')) }
  }
  return { nodeArgs: ['--import', 'tsx'], entry: join(root, source) }
}

/** Resolves with what `promise` gives within `ms`, or rejects naming `what`. */
export async function within<T>(ms: number, what: string, promise: Promise<T>, context?: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms\n${context?.() ?? ''}`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

export interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** One HTTP request on a new connection (no keep-alive agent), so "new connections" are what is tested. */
export function httpRequest(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: Buffer; timeoutMs?: number } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        agent: false,
        headers: {
          connection: 'close',
          ...(options.body ? { 'content-length': String(options.body.length) } : {}),
          ...options.headers,
        },
        timeout: options.timeoutMs ?? 5_000,
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
        )
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error(`request to ${path} timed out`)))
    req.on('error', reject)
    req.end(options.body)
  })
}

/** Polls `path` until it answers `status` (connection errors count as "not yet"), within `timeoutMs`. */
export async function waitForStatus(child: Child, port: number, path: string, status: number, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs
  let last = 'no answer'
  while (Date.now() < deadline) {
    if (child.proc.exitCode !== null) {
      throw new Error(
        `the server exited (${child.proc.exitCode}) before ${path} answered ${status}:\n${child.output()}`,
      )
    }
    try {
      const res = await httpRequest(port, path, { timeoutMs: 2_000 })
      if (res.status === status) return res
      last = `${res.status} ${res.body}`
    } catch (err) {
      last = (err as Error).message
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`${path} did not answer ${status} within ${timeoutMs} ms (last: ${last})\n${child.output()}`)
}

/** Polls a condition of the test process (no I/O of its own) within `timeoutMs`. */
export async function waitUntil(what: string, condition: () => boolean, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Polls an asynchronous condition (e.g. an HTTP check) every 100 ms until it holds, within `timeoutMs`. */
export async function eventually(what: string, condition: () => Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** The environment of a server on `port` with its own spool dir, quiet logs and no scheduled sweeps. */
export async function serverEnv(t: Pick<TestContext, 'after'>, port: number, env: Record<string, string> = {}) {
  return {
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    API_KEYS: apiKeys,
    UPLOAD_TMP_DIR: await tempDir(t, 'filegate-proc-spool-'),
    CLEANUP_ENABLED: 'false',
    ...env,
  }
}

/** Polls liveness and readiness side by side until readiness is 200; what was seen on the way. */
export async function watchStartUp(child: Child, port: number, timeoutMs: number) {
  const seen = { liveBeforeReady: false, starting: false, readyAfterMs: 0 }
  const started = Date.now()
  const deadline = started + timeoutMs
  while (Date.now() < deadline) {
    if (child.proc.exitCode !== null) assert.fail(`the process exited (${child.proc.exitCode}):\n${child.output()}`)
    const [live, ready] = await Promise.all([
      httpRequest(port, '/healthz', { timeoutMs: 5_000 }).catch(() => undefined),
      httpRequest(port, '/readyz', { timeoutMs: 5_000 }).catch(() => undefined),
    ])
    if (ready?.status === 200) {
      seen.readyAfterMs = Date.now() - started
      return seen
    }
    if (live?.status === 200) seen.liveBeforeReady = true
    if (ready?.status === 503 && JSON.parse(ready.body).reason === 'starting') seen.starting = true
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.fail(`not ready within ${timeoutMs} ms:\n${child.output()}`)
}
