/**
 * Loaded into every test file's process by scripts/run-tests.ts (`--import`). Once the file's tests
 * and hooks are over:
 * - it appends the file's CPU time to FILEGATE_TEST_CPU_FILE when that is set: this process's own
 *   and that of the children it has reaped (the services and commands its tests started), from
 *   /proc/self/stat, for the runner's list of the files that cost the most CPU;
 * - a process still alive LINGER_SECONDS (30) later holds a handle a test opened and never closed (a
 *   server, a socket, a timer). It would keep the run waiting for ever; instead it says which file it
 *   is and exits 1, which fails that file. The timer itself does not keep a process alive.
 */
import { appendFileSync, readFileSync } from 'node:fs'
import { after } from 'node:test'
import { sourceName } from './source-name.js'

const lingerMs = Number(process.env.LINGER_SECONDS ?? 30) * 1000
const file = sourceName(process.argv[1] ?? '?')

/** utime + stime and cutime + cstime (fields 14-17 of /proc/<pid>/stat, in clock ticks), as seconds. */
function cpuSeconds(): { own: number; children: number } | undefined {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8')
    // The command name (field 2) may hold spaces: count from the parenthesis that closes it.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const tick = (i: number) => Number(fields[i - 3]) / 100
    return { own: tick(14) + tick(15), children: tick(16) + tick(17) }
  } catch {
    return undefined
  }
}

// Only in a test file's process (node:test marks those it spawns), not in the runner's own.
if (process.env.NODE_TEST_CONTEXT)
  after(() => {
    const report = process.env.FILEGATE_TEST_CPU_FILE
    const cpu = report ? cpuSeconds() : undefined
    if (report && cpu) appendFileSync(report, `${JSON.stringify({ file, ...cpu })}\n`)
    setTimeout(() => {
      process.stderr.write(
        `# ${file}: its tests ended ${lingerMs / 1000} s ago and its process is still alive: a handle one of them opened was never closed\n`,
      )
      process.exit(1)
    }, lingerMs).unref()
  })
