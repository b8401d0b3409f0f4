/**
 * Spool files of dead processes, against the real process: a replica SIGKILLed while a body is
 * being spooled and restarted at once (well within UPLOAD_TIMEOUT_MS) removes its old spool file at
 * start; the periodic sweep (on CLEANUP_CRON, even with the cleanup jobs off) removes one left
 * later; a live process's file and another host's young file are spared. UPLOAD_TMP_DIR is made
 * 0700, and one that other users can write to, or that another user owns, stops start-up.
 */
import assert from 'node:assert/strict'
import { chmod, chown, mkdir, readdir, stat, utimes, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { describe, it, type TestContext } from 'node:test'
import {
  createTestDatabase,
  freePort,
  pgliteDataDir,
  postgresSuiteSkip,
  startFakes,
  tempDir,
  testKeys,
} from '../helper.js'
import { eventually, killGroup, serverEnv, spawnChild, spawnNode, waitForStatus, within } from '../process-support.js'

const needsPostgres = await postgresSuiteSkip()
const host = hostname().replace(/[^A-Za-z0-9_.-]/g, '_')
const spoolName = (h: string, pid: number, fill: string) => `fg-${h}-${pid}-${fill.repeat(16)}.part`

/** The pid of a process that has exited (started and awaited here). */
async function deadPid(t: TestContext): Promise<number> {
  const child = spawnChild(t, process.execPath, ['-e', ''])
  await child.exited
  return child.proc.pid as number
}

/** Starts a multipart upload whose first 100 KiB (spooled to disk) arrive, then nothing more. */
function stalledUpload(t: TestContext, port: number) {
  const boundary = 'stalled0boundary'
  const start =
    `--${boundary}\r\nContent-Disposition: form-data; name="provider"\r\n\r\nkimi\r\n` +
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="stalled.txt"\r\nContent-Type: text/plain\r\n\r\n${'z'.repeat(100 * 1024)}`
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  t.after(() => socket.destroy())
  socket.write(
    `POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${testKeys.alice}\r\n` +
      `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${start.length + 1_000_000}\r\n\r\n${start}`,
  )
}

async function deadProcessSpools(t: TestContext, storeEnv: Record<string, string>) {
  // Kimi configured (a fake), so the stalled upload is taken in and spooled.
  const fakes = await startFakes(t)
  const port = await freePort()
  const env = await serverEnv(t, port, {
    ...storeEnv,
    ...fakes.env,
    CLEANUP_CRON: '* * * * * *',
    CLEANUP_ENABLED: 'false',
  })
  const dir = env.UPLOAD_TMP_DIR
  const spools = async () => (await readdir(dir)).filter((n) => n.endsWith('.part'))

  const first = spawnNode(t, 'src/server.ts', env)
  await waitForStatus(first, port, '/readyz', 200, 60_000)
  stalledUpload(t, port)
  await eventually('the stalled body to be spooled', async () => (await spools()).length === 1, 15_000)
  const [left] = await spools()
  assert.match(left as string, new RegExp(`^fg-${host}-${first.proc.pid}-`))
  killGroup(first.proc)
  await within(10_000, 'the killed process to exit', first.exited)
  assert.deepEqual(await spools(), [left], 'the killed process left its spool file')

  // Beside it: a live process's file (this test's), another host's young and old files.
  const old = new Date(Date.now() - 24 * 3_600_000)
  const kept = [spoolName(host, process.pid, 'a'), spoolName('other-host', 4242, 'b')]
  const otherHostOld = spoolName('other-host', 4243, 'c')
  for (const name of [...kept, otherHostOld]) await writeFile(join(dir, name), 'x', { mode: 0o600 })
  await utimes(join(dir, otherHostOld), old, old)

  const restarted = spawnNode(t, 'src/server.ts', env)
  await waitForStatus(restarted, port, '/readyz', 200, 60_000)
  assert.deepEqual(
    (await spools()).sort(),
    [...kept].sort(),
    'removed at start: the dead pid’s young file, the old one',
  )

  // Left later by another dead process: the periodic sweep takes it.
  const later = spoolName(host, await deadPid(t), 'd')
  await writeFile(join(dir, later), 'x', { mode: 0o600 })
  await eventually('the periodic sweep', async () => !(await spools()).includes(later), 15_000)
  assert.deepEqual((await spools()).sort(), [...kept].sort())
}

/** Starts the process on `dir` and expects it to refuse, naming UPLOAD_TMP_DIR and why. */
async function refusedSpoolDir(t: TestContext, dir: string, why: RegExp) {
  const port = await freePort()
  const child = spawnNode(
    t,
    'src/server.ts',
    await serverEnv(t, port, { UPLOAD_TMP_DIR: dir, DATA_DIR: await pgliteDataDir(t) }),
  )
  assert.equal(await within(60_000, 'the refused start-up to exit', child.exited, child.output), 1, child.output())
  assert.match(child.output(), /UPLOAD_TMP_DIR .* refusing it/)
  assert.match(child.output(), why)
}

describe('spool files of dead processes', () => {
  it('on Postgres: removed at start whatever their age, and by the periodic sweep', {
    skip: needsPostgres,
  }, async (t) => {
    const db = await createTestDatabase('filegate_spool')
    t.after(() => db.drop())
    await deadProcessSpools(t, { DATABASE_URL: db.url })
  })

  it('on PGlite: removed at start whatever their age, and by the periodic sweep', async (t) => {
    await deadProcessSpools(t, { DATA_DIR: await pgliteDataDir(t, 'filegate-spool-pglite-') })
  })
})

describe('UPLOAD_TMP_DIR', () => {
  it('is created 0700', async (t) => {
    const port = await freePort()
    const dir = join(await tempDir(t), 'made', 'spool')
    const child = spawnNode(
      t,
      'src/server.ts',
      await serverEnv(t, port, { UPLOAD_TMP_DIR: dir, DATA_DIR: await pgliteDataDir(t) }),
    )
    await waitForStatus(child, port, '/healthz', 200, 60_000)
    assert.equal((await stat(dir)).mode & 0o777, 0o700)
  })

  it('writable by other users stops start-up', async (t) => {
    const dir = join(await tempDir(t), 'shared')
    await mkdir(dir)
    await chmod(dir, 0o777)
    await refusedSpoolDir(t, dir, /writable by other users/)
  })

  it('owned by another user stops start-up', async (t) => {
    // Only root can give a directory away; elsewhere the case cannot be set up.
    if (process.getuid?.() !== 0) return t.skip('needs root to chown a directory to another user')
    const dir = join(await tempDir(t), 'foreign')
    await mkdir(dir, { mode: 0o700 })
    await chown(dir, 65534, 65534)
    await refusedSpoolDir(t, dir, /owned by uid 65534/)
  })
})
