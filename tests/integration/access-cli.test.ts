/**
 * `filegate keys create|list|revoke|rotate`, run as a real child process (its own process group,
 * killed with it) straight on Postgres, beside a running app on the same database: the first key
 * made by the CLI ends the app's open mode within a second, a key it makes works on the app, its
 * revoke and rotation reach the app within a second, and the audit names the actor `cli`.
 */
import assert from 'node:assert/strict'
import { describe, it, type TestContext } from 'node:test'
import { auth, build, fileDatabase, requirePostgres, startFakes } from '../helper.js'
import { root, serviceModule, spawnChild } from '../process-support.js'
import { statusWith, within } from './access-support.js'

const cli = serviceModule('src/cli/main.ts')

/** `filegate args…` with only `env` (and PATH); its exit code and output. */
async function filegate(t: TestContext, args: string[], env: Record<string, string>) {
  const child = spawnChild(t, process.execPath, [...cli.nodeArgs, cli.entry, ...args], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'warn', ...env },
  })
  const code = await child.exited
  return { code, stdout: child.stdout(), stderr: child.stderr() }
}

describe('filegate keys, straight on the database', () => {
  it('creates, lists, rotates and revokes keys that a running app honours within a second', async (t) => {
    if (!(await requirePostgres(t))) return
    const db = await fileDatabase(t)
    const fakes = await startFakes(t)
    // The app runs open (no API_KEYS): the CLI makes the first key, without open mode.
    const app = await build(t, { DATABASE_URL: db.url, ...fakes.env, API_KEYS: '' })
    await within('the app hears key changes', 5000, async () => app.keyring.announcing)
    assert.equal((await app.inject({ method: 'GET', url: '/v1/files' })).statusCode, 200, 'open mode')
    const env = { DATABASE_URL: db.url, ...fakes.env }

    const created = await filegate(
      t,
      [
        'keys',
        'create',
        '--tenant',
        'acme',
        '--name',
        'from the cli',
        '--scopes',
        'files:read,keys',
        '--providers',
        'kimi',
        '--json',
      ],
      env,
    )
    assert.equal(created.code, 0, created.stderr)
    const made = JSON.parse(created.stdout) as {
      id: string
      key: string
      tenant_id: string
      created_by: string
      scopes: string[]
      providers: string[]
    }
    assert.match(made.key, /^fg_[a-z0-9]{16}_[A-Za-z0-9]{43}$/)
    assert.equal(made.created_by, 'cli')
    assert.deepEqual(made.scopes, ['files:read', 'keys'])
    assert.deepEqual(made.providers, ['kimi'])
    const closed = await within(
      'the app leaves open mode',
      1000,
      async () => (await app.inject({ method: 'GET', url: '/v1/files' })).statusCode === 401,
    )
    t.diagnostic(`open mode ended ${closed.toFixed(1)} ms after the CLI's create returned`)
    assert.equal(await statusWith(app, made.key), 200)

    const listed = await filegate(t, ['keys', 'list', '--tenant', 'acme', '--json'], env)
    assert.equal(listed.code, 0, listed.stderr)
    const page = JSON.parse(listed.stdout) as { data: Array<Record<string, unknown>> }
    assert.deepEqual(
      page.data.map((k) => k.id),
      [made.id],
    )
    assert.equal(page.data[0]?.key, undefined, 'never the key again')
    const text = await filegate(t, ['keys', 'list'], env)
    assert.match(
      text.stdout,
      new RegExp(`^${made.id}  acme  live  files:read,keys  kimi  …${made.key.slice(-4)}  from the cli$`, 'm'),
    )

    const rotated = await filegate(t, ['keys', 'rotate', made.id, '--grace-seconds', '0', '--json'], env)
    assert.equal(rotated.code, 0, rotated.stderr)
    const fresh = JSON.parse(rotated.stdout) as { id: string; key: string }
    assert.equal(fresh.id, made.id)
    const oldRefused = await within(
      'the old secret refused by the app',
      1000,
      async () => (await statusWith(app, made.key)) === 401,
    )
    assert.equal(await statusWith(app, fresh.key), 200)

    const revoked = await filegate(t, ['keys', 'revoke', made.id], env)
    assert.equal(revoked.code, 0, revoked.stderr)
    assert.match(revoked.stdout, /^revoked: +\d{4}-/m)
    const refused = await within(
      'the revoked key refused by the app',
      1000,
      async () => (await statusWith(app, fresh.key)) === 401,
    )
    t.diagnostic(
      `CLI rotate → app refused the old secret after ${oldRefused.toFixed(1)} ms; CLI revoke → ${refused.toFixed(1)} ms`,
    )

    // The audit names the CLI; an admin key made by it reads the audit.
    const adminKey = await filegate(t, ['keys', 'create', '--tenant', 'ops', '--scopes', 'admin', '--json'], env)
    const opsKey = JSON.parse(adminKey.stdout).key as string
    const audit = await app.inject({ method: 'GET', url: `/v1/audit?target=${made.id}`, headers: auth(opsKey) })
    assert.equal(audit.statusCode, 200, audit.body)
    assert.deepEqual(
      audit.json().data.map((e: { action: string; actor: string }) => [e.action, e.actor]),
      [
        ['key.revoke', 'cli'],
        ['key.rotate', 'cli'],
        ['key.create', 'cli'],
      ],
    )
  })

  it('refuses a bad command line (2) and an unknown key (1), saying why', async (t) => {
    if (!(await requirePostgres(t))) return
    const db = await fileDatabase(t)
    const app = await build(t, { DATABASE_URL: db.url })
    assert.ok(app.readiness.schemaReady)
    const env = { DATABASE_URL: db.url }
    const cases: Array<[string[], number, RegExp]> = [
      [['keys', 'create'], 2, /--tenant/],
      [['keys', 'create', '--tenant', 'a/b'], 2, /tenant must be/],
      [['keys', 'create', '--tenant', 'acme', '--scopes', 'everything'], 2, /--scopes/],
      [['keys', 'create', '--tenant', 'acme', '--providers', 'nosuch'], 2, /Unknown provider/],
      [['keys', 'create', '--tenant', 'acme', '--expires-in', 'soon'], 2, /--expires-in/],
      [['keys', 'revoke', 'abcdefghijklmnop'], 1, /No key abcdefghijklmnop/],
      [['keys', 'rotate', 'abcdefghijklmnop', '--grace-seconds', '90000'], 2, /--grace-seconds/],
    ]
    for (const [args, code, message] of cases) {
      const run = await filegate(t, args, env)
      assert.equal(run.code, code, `${args.join(' ')}: ${run.stderr}`)
      assert.match(run.stderr, message, args.join(' '))
    }
  })
})
