/**
 * Loaded into every test file's process by scripts/run-tests.ts (`--import`): once the file's tests
 * and hooks are over, a process still alive LINGER_SECONDS (30) later holds a handle a test opened and
 * never closed (a server, a socket, a timer). It would keep the run waiting for ever; instead it says
 * which file it is and exits 1, which fails that file. The timer itself does not keep a process alive.
 */
import { relative } from 'node:path'
import { after } from 'node:test'

const lingerMs = Number(process.env.LINGER_SECONDS ?? 30) * 1000

after(() => {
  setTimeout(() => {
    const file = relative(process.cwd(), process.argv[1] ?? '?')
    process.stderr.write(
      `# ${file}: its tests ended ${lingerMs / 1000} s ago and its process is still alive: a handle one of them opened was never closed\n`,
    )
    process.exit(1)
  }, lingerMs).unref()
})
