/**
 * `npm run bench:perf-check`: checks on this machine that BENCH_PERF=1 can profile the service:
 * records a process that spends its time hashing, and expects OpenSSL's SHA-256 among its top
 * symbols. A tool for the person about to run the bench with BENCH_PERF=1, not a unit test: it
 * needs perf, permission to attach, and a core free enough to sample the target.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { perfAvailable, startPerf, summarisePerf } from './harness/perf.js'

if (!perfAvailable()) {
  process.stderr.write('perf-check: perf cannot attach to a process here (not installed, or not permitted)\n')
  process.exit(1)
}
const dir = await mkdtemp(join(tmpdir(), 'filegate-perf-check-'))
// The child hashes until it is killed, so the recording's length does not depend on its start-up.
const script =
  "const h = require('node:crypto').createHash('sha256'); const b = Buffer.alloc(1 << 20); for (;;) h.update(b)"
const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore', detached: true })
const exited = new Promise((resolve) => child.once('exit', resolve))
const killChild = () => {
  if (child.exitCode === null && child.signalCode === null) process.kill(-(child.pid as number), 'SIGKILL')
}
process.once('SIGINT', killChild)
let failed = false
try {
  const file = join(dir, 'hash.data')
  const recording = await startPerf(child.pid as number, file)
  await new Promise((resolve) => setTimeout(resolve, 1000))
  await recording.stop()
  killChild()
  await exited
  const summary = summarisePerf(file)
  if (!summary || summary.samples === 0) {
    failed = true
    process.stderr.write('perf-check: the recording holds no samples (a loaded machine, or sampling not permitted)\n')
  } else {
    const top = summary.topSymbols.slice(0, 5)
    failed = !top.some((s) => /sha256/i.test(s.name))
    process.stdout.write(
      `perf-check: ${summary.samples} samples; top symbols:\n${top.map((s) => `  ${(s.share * 100).toFixed(1)} %  ${s.object} ${s.name}`).join('\n')}\n`,
    )
    if (failed) process.stderr.write('perf-check: SHA-256 is not among the top symbols\n')
  }
} finally {
  killChild()
  await rm(dir, { recursive: true, force: true })
}
process.exit(failed ? 1 : 0)
