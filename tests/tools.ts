/**
 * Child processes and external tools for tests. Every child starts detached in its own process
 * group and the group is killed after the test, so nothing it started keeps running. Tools some
 * tests drive (promtool, chromium) are probed first: locally a missing tool skips the test with a
 * notice; with CI=true it fails, because .ci/run installs them.
 */
import { type ChildProcess, type SpawnOptions, spawn, spawnSync } from 'node:child_process'
import type { TestContext } from 'node:test'
import { isCI } from './helper.js'

export interface Child {
  proc: ChildProcess
  /** stdout so far. */
  stdout(): string
  /** stderr so far. */
  stderr(): string
  /** Resolves with the exit code (or the signal name) once the process has exited. */
  exited: Promise<number | string>
}

/** Spawns `command` in its own process group; the whole group is SIGKILLed after the test. */
export function spawnChild(
  t: { after(fn: () => Promise<void>): void },
  command: string,
  args: string[],
  options: SpawnOptions & { stdin?: string } = {},
): Child {
  const { stdin, ...spawnOptions } = options
  const proc = spawn(command, args, { ...spawnOptions, detached: true, stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  proc.stdout?.on('data', (chunk) => {
    out += String(chunk)
  })
  proc.stderr?.on('data', (chunk) => {
    err += String(chunk)
  })
  proc.stdin?.on('error', () => {})
  proc.stdin?.end(stdin ?? '')
  const exited = new Promise<number | string>((resolve) => {
    proc.once('error', (e) => {
      err += e.message
      resolve('spawn-error')
    })
    proc.once('close', (code, signal) => resolve(code ?? signal ?? 'unknown'))
  })
  t.after(async () => {
    if (proc.pid === undefined) return
    try {
      process.kill(-proc.pid, 'SIGKILL')
    } catch {
      // The group is gone already.
    }
    await exited
  })
  return { proc, stdout: () => out, stderr: () => err, exited }
}

export const promtool = process.env.PROMTOOL ?? 'promtool'

/** True when `command args` starts and exits 0. */
export function toolRuns(command: string, args: string[]): boolean {
  const probe = spawnSync(command, args, { stdio: 'ignore', timeout: 60_000 })
  return probe.error === undefined && probe.status === 0
}

/** Call at the top of a test that needs the tool: false (and the test skipped) when it is missing. */
export function requireTool(t: TestContext, tool: { command: string; probeArgs: string[]; install: string }): boolean {
  if (toolRuns(tool.command, tool.probeArgs)) return true
  if (isCI) throw new Error(`CI=true but ${tool.command} is not installed (${tool.install})`)
  t.diagnostic(`NOTICE: ${tool.command} not found (${tool.install}); skipping`)
  t.skip(`${tool.command} not installed`)
  return false
}

export const requirePromtool = (t: TestContext) =>
  requireTool(t, { command: promtool, probeArgs: ['--version'], install: 'apt-get install prometheus' })

/** Runs promtool with `args` (and `stdin`); resolves with its exit code and merged output. */
export async function runPromtool(
  t: { after(fn: () => Promise<void>): void },
  args: string[],
  stdin?: string,
): Promise<{ code: number | string; output: string }> {
  const child = spawnChild(t, promtool, args, stdin === undefined ? {} : { stdin })
  const code = await child.exited
  return { code, output: child.stdout() + child.stderr() }
}
