/**
 * `npm test` runs the test command through this guard: `node --import tsx scripts/test-guard.ts <command> [args…]`.
 * It fails the run when a process the tests started is still alive once the command has exited,
 * lists it, and kills it, so a leaked child (a busy loop, a server) cannot burn the host's CPU
 * for the rest of the day.
 *
 * "Started by the tests" is known two ways (Linux /proc): every process seen, while the command
 * runs, among the command's descendants (sampled four times a second: a leaked child lives long
 * enough to be seen, even after its parent exits and it is re-parented), and every process whose
 * environment carries this run's FILEGATE_TEST_RUN token (children spawned with an environment of
 * their own keep it when the test passes it on). A process is the same one only when its start
 * time matches too, so a reused pid is never blamed, nor killed.
 *
 * It also fails the run when a test database is left behind: tests/helper.ts names each
 * `filegate_test_<pid>_<hex>` after the test process that made it; one whose pid is among this
 * run's processes and still exists once the command has exited is reported and dropped.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import postgres from 'postgres'

interface ProcInfo {
  ppid: number
  start: string
  state: string
}

/** /proc/<pid>/stat: the fields after the command name (which may hold spaces and parentheses). */
function procInfo(pid: number): ProcInfo | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
    return { state: fields[0] as string, ppid: Number(fields[1]), start: fields[19] as string }
  } catch {
    return undefined
  }
}

const pids = () =>
  readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)

const commandLine = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim().slice(0, 200)
  } catch {
    return '?'
  }
}

const carriesToken = (pid: number, token: string) => {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`FILEGATE_TEST_RUN=${token}`)
  } catch {
    return false
  }
}

/** `root` and the processes seen as its descendants: pid → start time. */
function collectDescendants(root: number, into: Map<number, string>): void {
  const children = new Map<number, number[]>()
  const infos = new Map<number, ProcInfo>()
  for (const pid of pids()) {
    const info = procInfo(pid)
    if (!info) continue
    infos.set(pid, info)
    children.set(info.ppid, [...(children.get(info.ppid) ?? []), pid])
  }
  const queue = [root]
  while (queue.length > 0) {
    const pid = queue.pop() as number
    const info = infos.get(pid)
    if (info && !into.has(pid)) into.set(pid, info.start)
    queue.push(...(children.get(pid) ?? []))
  }
}

/** Of the processes known to belong to this run, those still alive (zombies are dead). */
function survivors(seen: Map<number, string>, token: string): number[] {
  const alive = new Set<number>()
  for (const [pid, start] of seen) {
    const info = procInfo(pid)
    if (info && info.start === start && info.state !== 'Z') alive.add(pid)
  }
  for (const pid of pids()) {
    if (pid === process.pid || alive.has(pid)) continue
    const info = procInfo(pid)
    if (info && info.state !== 'Z' && carriesToken(pid, token)) alive.add(pid)
  }
  return [...alive]
}

/** Test databases made by this run's processes that still exist (none when Postgres is not reachable). */
async function leftDatabases(runPids: ReadonlySet<number>): Promise<string[]> {
  const adminUrl = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
  const sql = postgres(adminUrl, { max: 1, connect_timeout: 3, onnotice: () => {} })
  try {
    const rows = await sql<
      Array<{ datname: string }>
    >`select datname from pg_database where datname like 'filegate_test_%'`
    const left = rows
      .map((r) => r.datname)
      .filter((name) => runPids.has(Number(/^filegate_test_(\d+)_[0-9a-f]+$/.exec(name)?.[1])))
    for (const name of left) await sql.unsafe(`drop database if exists ${name} with (force)`)
    return left
  } catch {
    return []
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {})
  }
}

const [command, ...args] = process.argv.slice(2)
if (!command) {
  process.stderr.write('usage: test-guard <command> [args…]\n')
  process.exit(2)
}
const token = `${process.pid}-${randomBytes(6).toString('hex')}`
const child = spawn(command, args, { stdio: 'inherit', env: { ...process.env, FILEGATE_TEST_RUN: token } })
const seen = new Map<number, string>()
// The command's tree, not this process's: tsx's own helper process belongs to the guard.
const root = child.pid as number
const sampler = setInterval(() => collectDescendants(root, seen), 250)
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => child.kill(signal))

child.on('exit', async (code, signal) => {
  clearInterval(sampler)
  // Give children a test killed a moment to be reaped.
  let left = survivors(seen, token)
  for (let i = 0; i < 20 && left.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 100))
    left = survivors(seen, token)
  }
  if (left.length > 0) {
    process.stderr.write(
      `\ntest-guard: ${left.length} process(es) started by the tests are still alive; killing them:\n` +
        left.map((pid) => `  ${pid}  ${commandLine(pid)}`).join('\n') +
        '\nEvery child a test starts must be killed (with its process group) before the test ends.\n',
    )
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // Gone in between: nothing to kill.
      }
    }
    process.exit(1)
  }
  // The command itself too: a short one may end before the sampler ever saw it.
  const databases = await leftDatabases(new Set([root, ...seen.keys()]))
  if (databases.length > 0) {
    process.stderr.write(
      `\ntest-guard: ${databases.length} test database(s) were left behind (dropped now): ${databases.join(', ')}\n` +
        'Every database a test creates must be dropped when its test or file ends.\n',
    )
    process.exit(1)
  }
  process.exit(code ?? (signal ? 1 : 0))
})
