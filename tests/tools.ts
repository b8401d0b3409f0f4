/**
 * External tools some tests drive (promtool, chromium): probed first, so that locally a missing
 * tool skips the test with a notice, and with CI=true it fails, because .ci/run installs them.
 * They run as any child does (process-support.ts).
 */
import { spawnSync } from 'node:child_process'
import type { TestContext } from 'node:test'
import { isCI } from './helper.js'
import { spawnChild } from './process-support.js'

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
  t: Pick<TestContext, 'after'>,
  args: string[],
  stdin?: string,
): Promise<{ code: number | string; output: string }> {
  const child = spawnChild(t, promtool, args, stdin === undefined ? {} : { stdin })
  const code = await child.exited
  return { code, output: child.stdout() + child.stderr() }
}
