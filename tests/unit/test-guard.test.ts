/**
 * scripts/test-guard.ts, which `npm test` runs the tests through: a process the command started
 * and left alive fails the run, is named and is killed; so does a test database it left behind (and it
 * is dropped); a clean run keeps the command's exit code.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { describe, it, type TestContext } from 'node:test'
import postgres from 'postgres'
import { adminUrl, requirePostgres } from '../helper.js'
import { spawnNode, within } from '../process-support.js'

/** Alive, and not a zombie waiting for its new parent to reap it. */
const isAlive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

/** Runs `test-guard node -e script` and returns its exit code and output. */
async function guarded(t: TestContext, script: string) {
  const guard = spawnNode(t, 'scripts/test-guard.ts', {}, ['--import', 'tsx'], [process.execPath, '-e', script])
  const code = await within(30_000, 'the guarded command', guard.exited, guard.output)
  return { code, output: guard.output() }
}

describe('test guard', { skip: process.platform === 'linux' ? false : 'reads /proc' }, () => {
  it('fails the run, names and kills the processes the command left alive', async (t) => {
    // One leak keeps the run's token (an inherited environment) and is left at once; the other gets
    // an environment of its own and is seen as a descendant while its parent still runs.
    const { code, output } = await guarded(
      t,
      `const { spawn } = require('node:child_process')
       const sleep = ['-e', 'setTimeout(() => {}, 120000)']
       const a = spawn(process.execPath, sleep, { detached: true, stdio: 'ignore' })
       const b = spawn(process.execPath, sleep, { detached: true, stdio: 'ignore', env: {} })
       a.unref(); b.unref()
       console.log('leaked ' + a.pid + ' ' + b.pid)
       setTimeout(() => {}, 1000)`,
    )
    const pids = (/leaked (\d+) (\d+)/.exec(output) ?? []).slice(1).map(Number)
    assert.equal(pids.length, 2, output)
    assert.equal(code, 1, output)
    assert.match(output, /2 process\(es\) started by the tests are still alive/)
    for (const pid of pids) {
      assert.match(output, new RegExp(`\\b${pid}\\b.*setTimeout`))
      assert.equal(isAlive(pid), false, `${pid} was killed`)
    }
  })

  it('passes a clean run through with the command’s exit code', async (t) => {
    const clean = await guarded(
      t,
      `const c = require('node:child_process').spawn(process.execPath, ['-e', 'setTimeout(() => {}, 300)'])
       c.on('exit', () => process.exit(3))`,
    )
    assert.equal(clean.code, 3, clean.output)
    assert.doesNotMatch(clean.output, /still alive/)
  })

  it('fails the run and drops a test database the command left behind', async (t) => {
    if (!(await requirePostgres(t))) return
    const hex = randomBytes(4).toString('hex')
    const left = await guarded(
      t,
      `const sql = require('postgres')(${JSON.stringify(adminUrl)}, { max: 1, onnotice: () => {} })
       const name = 'filegate_test_' + process.pid + '_${hex}'
       sql.unsafe('create database ' + name).then(() => sql.end()).then(() => process.exit(0))`,
    )
    assert.equal(left.code, 1, left.output)
    assert.match(left.output, new RegExp(`test database\\(s\\) were left behind .*filegate_test_\\d+_${hex}`))
    const sql = postgres(adminUrl, { max: 1, onnotice: () => {} })
    t.after(() => sql.end())
    const rows = await sql`select 1 from pg_database where datname like ${`filegate_test_%_${hex}`}`
    assert.equal(rows.length, 0, 'the guard dropped it')
  })
})
