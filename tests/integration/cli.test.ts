/**
 * The `filegate` executable (package.json "bin"), run as a child process in its own process group:
 * help and exit codes, keys, migrate, cleanup and doctor against real Postgres and the fake
 * providers. The bin is the compiled src/cli/main.ts; the tests run this run's build of it (or the
 * source through tsx when the file runs on its own: tests/process-support.ts serviceModule).
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { globSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { loadConfig } from '../../src/config.js'
import { startFakeAnthropic } from '../fakes/anthropic-server.js'
import { startFakeGemini } from '../fakes/gemini-server.js'
import {
  auth,
  build,
  createTestDatabase,
  fakeKeys,
  freePort,
  multipart,
  requirePostgres,
  startFakes,
  tempDir,
  testKeys,
} from '../helper.js'
import { type Child, serviceModule, spawnChild } from '../process-support.js'
import { toolRuns } from '../tools.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const cli = serviceModule('src/cli/main.ts')

interface Run {
  code: number | string
  stdout: string
  stderr: string
}

/** Runs `filegate args…` with only `env` (plus PATH); resolves when it exits. */
async function filegate(
  t: TestContext,
  args: string[],
  env: Record<string, string> = {},
  stdin?: string,
): Promise<Run & { child: Child }> {
  const child = spawnChild(t, process.execPath, [...cli.nodeArgs, cli.entry, ...args], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'warn', ...env },
    ...(stdin === undefined ? {} : { stdin }),
  })
  const code = await child.exited
  return { code, stdout: child.stdout(), stderr: child.stderr(), child }
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex')

/** dist/src/cli/main.js exists, is executable, and is newer than every file the build reads. */
async function builtBinIsCurrent(): Promise<boolean> {
  const bin = await stat(join(root, 'dist/src/cli/main.js')).catch(() => undefined)
  if (!bin || (bin.mode & 0o111) === 0) return false
  const inputs = [
    ...globSync('{src,routes}/**/*.ts', { cwd: root }),
    'package.json',
    'tsconfig.json',
    'tsconfig.build.json',
  ]
  const times = await Promise.all(inputs.map(async (file) => (await stat(join(root, file))).mtimeMs))
  return times.every((time) => time <= bin.mtimeMs)
}

describe('filegate executable', () => {
  it('is the package bin, compiled from src/cli/main.ts with a node shebang', async () => {
    const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> }
    const build = JSON.parse(await readFile(join(root, 'tsconfig.build.json'), 'utf8')) as { include: string[] }
    const base = JSON.parse(await readFile(join(root, 'tsconfig.json'), 'utf8')) as {
      compilerOptions: { outDir: string; rootDir?: string }
    }
    assert.ok(build.include.includes('src'))
    assert.equal(pkg.bin.filegate, join(base.compilerOptions.outDir, 'src/cli/main.js').replace(/^\.\//, ''))
    assert.match(await readFile(join(root, 'src/cli/main.ts'), 'utf8'), /^#!\/usr\/bin\/env node\n/)
  })

  it('runs compiled, as `npx filegate` in a checkout (npm run build first)', async (t) => {
    // `npm test` builds before the test files run (beside the typecheck, on the other core); a build
    // older than any source (or none, or a bin that is not executable) is made again here.
    if (!(await builtBinIsCurrent())) {
      const build = spawnChild(t, 'npm', ['run', 'build'], { cwd: root, env: process.env })
      assert.equal(await build.exited, 0, build.stdout() + build.stderr())
    }
    assert.ok(
      await builtBinIsCurrent(),
      'npm run build leaves an executable dist/src/cli/main.js newer than the sources',
    )
    const key = 'a-long-enough-key-0123456789'
    const npx = spawnChild(t, 'npm', ['exec', '--offline', '--', 'filegate', 'keys', 'hash', key], {
      cwd: root,
      env: process.env,
    })
    assert.equal(await npx.exited, 0, npx.stderr())
    assert.equal(npx.stdout(), `sha256:${sha256(key)}\n`)
  })

  it('has --help on every command, with the exit codes', async (t) => {
    for (const command of [[], ['migrate'], ['cleanup'], ['keys'], ['keys', 'hash'], ['keys', 'new'], ['doctor']]) {
      const run = await filegate(t, [...command, '--help'])
      assert.equal(run.code, 0, `${command.join(' ')} --help: ${run.stderr}`)
      assert.match(run.stdout, /^Usage: filegate/m)
      assert.match(run.stdout, /Exit codes:\n\s+0 {2}success\n\s+1 .*\n\s+2 {2}usage error/)
    }
    const version = await filegate(t, ['--version'])
    assert.equal(version.code, 0)
    assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/)
  })

  it('exits 2 on usage errors and 3 on an invalid configuration', async (t) => {
    const unknown = await filegate(t, ['frobnicate'])
    assert.equal(unknown.code, 2)
    assert.match(unknown.stderr, /unknown command 'frobnicate'/)
    assert.equal((await filegate(t, ['cleanup', '--limit', 'lots'])).code, 2)
    const jobs = await filegate(t, ['cleanup', '--jobs', 'expired,everything'])
    assert.equal(jobs.code, 2)
    assert.match(jobs.stderr, /not: everything/)
    assert.equal((await filegate(t, ['doctor', '--timeout', '-1'])).code, 2)
    const config = await filegate(t, ['migrate'], { PORT: 'eighty', RETRY_MAX_ATTEMPTS: '99' })
    assert.equal(config.code, 3)
    assert.match(config.stderr, /PORT: .*\n.*RETRY_MAX_ATTEMPTS/)
  })

  it('keys hash prints the sha256: form API_KEYS accepts, from the argument or stdin', async (t) => {
    const key = 'a-long-enough-key-0123456789'
    const run = await filegate(t, ['keys', 'hash', key])
    assert.equal(run.code, 0, run.stderr)
    assert.equal(run.stdout, `sha256:${sha256(key)}\n`)
    const piped = await filegate(t, ['keys', 'hash', '-', '--json'], {}, `${key}\n`)
    assert.deepEqual(JSON.parse(piped.stdout), { sha256: `sha256:${sha256(key)}` })
    const config = loadConfig({ API_KEYS: `acme:${run.stdout.trim()}` })
    assert.deepEqual(config.apiKeys, [{ tenant: 'acme', keySha256: sha256(key) }])
    const short = await filegate(t, ['keys', 'hash', 'short'])
    assert.equal(short.code, 2)
    assert.equal(short.stdout, '')
  })

  it('keys new makes a strong random key and the API_KEYS entry that authenticates it', async (t) => {
    const a = await filegate(t, ['keys', 'new', 'acme', '--json'])
    const b = await filegate(t, ['keys', 'new', '*'])
    assert.equal(a.code, 0, a.stderr)
    assert.equal(b.code, 0, b.stderr)
    const made = JSON.parse(a.stdout) as { tenant: string; key: string; api_keys_entry: string }
    assert.equal(made.tenant, 'acme')
    assert.match(made.key, /^fg_[A-Za-z0-9_-]{43}$/)
    assert.equal(made.api_keys_entry, `acme:sha256:${sha256(made.key)}`)
    const [, keyB, entryB] = /^key: +(\S+)\nAPI_KEYS: (\S+)\n$/.exec(b.stdout) ?? []
    assert.ok(keyB && entryB, b.stdout)
    assert.notEqual(keyB, made.key)
    const config = loadConfig({ API_KEYS: `${made.api_keys_entry},${entryB}` })
    assert.deepEqual(
      config.apiKeys.map((k) => k.tenant),
      ['acme', '*'],
    )
    assert.equal(config.apiKeys[1]?.keySha256, sha256(keyB))
    assert.equal((await filegate(t, ['keys', 'new', 'no spaces'])).code, 2)
  })
})

describe('filegate against Postgres and the fake providers', () => {
  it('migrate applies the schema, then has nothing to apply', async (t) => {
    if (!(await requirePostgres(t))) return
    const db = await createTestDatabase()
    t.after(() => db.drop())
    const first = await filegate(t, ['migrate'], { DATABASE_URL: db.url })
    assert.equal(first.code, 0, first.stderr)
    assert.match(first.stdout, /^filegate: schema at version \d+ \(applied 0001_provider_file_uploads, /)
    const again = await filegate(t, ['migrate', '--json'], { DATABASE_URL: db.url })
    assert.equal(again.code, 0, again.stderr)
    assert.deepEqual(JSON.parse(again.stdout).applied, [])
    const down = await filegate(t, ['migrate'], { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/filegate' })
    assert.equal(down.code, 1)
    assert.match(down.stderr, /migration failed/)
  })

  it('cleanup runs the sweeps in-process: a dry run lists, a real run deletes at the provider', async (t) => {
    if (!(await requirePostgres(t))) return
    const db = await createTestDatabase()
    t.after(() => db.drop())
    const fakes = await startFakes(t)
    const env = { ...fakes.env, DATABASE_URL: db.url, UPLOAD_TMP_DIR: await tempDir(t, 'filegate-cli-spool-') }
    const app = await build(t, env)
    const ids: string[] = []
    for (const [provider, content] of [
      ['kimi', 'first\n'],
      ['kimi', 'second\n'],
      ['glm', 'third\n'],
    ] as const) {
      const body = multipart([
        ['provider', provider],
        ['expires_in', '1'],
        ['file', { filename: 'old.txt', content, type: 'text/plain' }],
      ])
      const res = await app.inject({
        method: 'POST',
        url: '/v1/files',
        headers: { ...auth(testKeys.alice), ...body.headers },
        payload: body.payload,
      })
      assert.equal(res.statusCode, 201, res.body)
      ids.push(res.json().id)
    }
    assert.equal(fakes.kimi.files.size + fakes.glm.files.size, 3)
    // expires_at has one-second resolution relative to now(): wait until all three are past it.
    await new Promise((r) => setTimeout(r, 1500))

    const dry = await filegate(t, ['cleanup', '--dry-run', '--jobs', 'expired', '--json'], env)
    assert.equal(dry.code, 0, dry.stderr)
    const dryReport = JSON.parse(dry.stdout)
    assert.equal(dryReport.dry_run, true)
    assert.deepEqual(dryReport.jobs.expired.providers.kimi.candidate_ids.length, 2)
    assert.deepEqual(dryReport.jobs.expired.providers.glm.candidate_ids, [ids[2]])
    assert.equal(fakes.kimi.files.size + fakes.glm.files.size, 3, 'a dry run deletes nothing')

    const limited = await filegate(t, ['cleanup', '--jobs', 'expired', '--limit', '1'], env)
    assert.equal(limited.code, 0, limited.stderr)
    assert.match(limited.stdout, /^expired: completed, 1 candidates, 1 deleted, 0 failed \(\w+ 1\/1\/0\)\n$/)
    assert.equal(fakes.kimi.files.size + fakes.glm.files.size, 2)

    const real = await filegate(t, ['cleanup', '--jobs', 'expired,provider_deletes'], env)
    assert.equal(real.code, 0, real.stderr)
    const lines = real.stdout.trim().split('\n')
    assert.equal(lines.length, 2, 'one plain line per job without a terminal')
    assert.match(lines[0] ?? '', /^expired: completed, 2 candidates, 2 deleted, 0 failed/)
    assert.match(lines[1] ?? '', /^provider_deletes: completed/)
    assert.equal(fakes.kimi.files.size + fakes.glm.files.size, 0, 'every expired file is deleted at its provider')
    for (const id of ids) {
      const file = (await app.inject({ method: 'GET', url: `/v1/files/${id}`, headers: auth(testKeys.alice) })).json()
      assert.equal(file.status, 'deleted')
      assert.equal(file.deletion_reason, 'expired')
      assert.equal(file.provider_deleted, true)
    }

    // A provider delete that fails (it is retried later by provider_deletes) makes the run exit 1.
    const body = multipart([
      ['provider', 'kimi'],
      ['expires_in', '1'],
      ['file', { filename: 'late.txt', content: 'fourth\n', type: 'text/plain' }],
    ])
    const late = await app.inject({
      method: 'POST',
      url: '/v1/files',
      headers: { ...auth(testKeys.alice), ...body.headers },
      payload: body.payload,
    })
    assert.equal(late.statusCode, 201)
    await new Promise((r) => setTimeout(r, 1500))
    fakes.kimi.deleteFailNext(10, 500)
    const failing = await filegate(t, ['cleanup', '--jobs', 'expired', '--json'], { ...env, RETRY_MAX_ATTEMPTS: '1' })
    const failed = JSON.parse(failing.stdout)
    assert.equal(failed.jobs.expired.providers.kimi.failed, 1, failing.stdout)
    assert.equal(failing.code, 1, 'a failed provider delete is a failed run')

    // A job whose lease a replica holds is left to it: reported skipped, not a failure.
    const held = await app.store.call<boolean>('acquire_job_lease', {
      p_job: 'cleanup:orphaned',
      p_holder: 'a-replica',
      p_ttl_seconds: 120,
    })
    assert.equal(held, true)
    const skipped = await filegate(t, ['cleanup', '--jobs', 'orphaned'], env)
    assert.equal(skipped.code, 0, skipped.stderr)
    assert.equal(skipped.stdout, 'orphaned: skipped (another worker holds the lease)\n')
  })

  it('cleanup stops after the current batch on an interrupt, and runs no further job', async (t) => {
    if (!(await requirePostgres(t))) return
    const db = await createTestDatabase()
    t.after(() => db.drop())
    const fakes = await startFakes(t)
    const env = { ...fakes.env, DATABASE_URL: db.url, UPLOAD_TMP_DIR: await tempDir(t, 'filegate-cli-spool-') }
    const app = await build(t, env)
    for (let i = 0; i < 6; i++) {
      const body = multipart([
        ['provider', 'kimi'],
        ['expires_in', '1'],
        ['file', { filename: `f${i}.txt`, content: `file ${i}\n`, type: 'text/plain' }],
      ])
      const res = await app.inject({
        method: 'POST',
        url: '/v1/files',
        headers: { ...auth(testKeys.alice), ...body.headers },
        payload: body.payload,
      })
      assert.equal(res.statusCode, 201, res.body)
    }
    await new Promise((r) => setTimeout(r, 1500))
    // Provider deletes hang until their attempt times out: the interrupt lands inside the first batch.
    fakes.kimi.ops = ['delete']
    fakes.kimi.hang = true
    const child = spawnChild(
      t,
      process.execPath,
      [...cli.nodeArgs, cli.entry, 'cleanup', '--jobs', 'expired,provider_deletes'],
      {
        cwd: root,
        env: {
          PATH: process.env.PATH ?? '',
          LOG_LEVEL: 'warn',
          ...env,
          CLEANUP_BATCH_SIZE: '2',
          CLEANUP_CONCURRENCY: '1',
          PROVIDER_TIMEOUT_MS: '1500',
          RETRY_MAX_ATTEMPTS: '1',
        },
      },
    )
    while (fakes.kimi.requests.delete === 0) {
      assert.equal(child.proc.exitCode, null, child.stderr())
      await new Promise((r) => setTimeout(r, 50))
    }
    child.proc.kill('SIGINT')
    const code = await child.exited
    assert.match(child.stderr(), /stopping after the current batch/)
    const lines = child.stdout().trim().split('\n')
    assert.equal(lines.length, 1, child.stdout())
    const [, candidates] = /^expired: completed, (\d+) candidates/.exec(lines[0] ?? '') ?? []
    assert.ok(Number(candidates) < 6, `the sweep stopped early: ${lines[0]}`)
    assert.equal(code, 1, 'the timed-out deletes are failures (provider_deletes retries them)')
  })

  it('cleanup draws a progress bar on a terminal', async (t) => {
    if (!(await requirePostgres(t))) return
    if (!toolRuns('script', ['--version'])) {
      t.skip('script (util-linux) not installed: no pseudo-terminal to test with')
      return
    }
    const db = await createTestDatabase()
    t.after(() => db.drop())
    assert.equal((await filegate(t, ['migrate'], { DATABASE_URL: db.url })).code, 0)
    const command = `${process.execPath} ${[...cli.nodeArgs, cli.entry].join(' ')} cleanup --dry-run`
    const child = spawnChild(t, 'script', ['-qefc', command, '/dev/null'], {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', DATABASE_URL: db.url, TERM: 'dumb' },
    })
    assert.equal(await child.exited, 0, child.stdout() + child.stderr())
    assert.match(child.stdout(), /\r\[-{20}\] 0\/5 stuck…/)
    assert.match(child.stdout(), /\r\[#{4}-{16}\] 1\/5 expired…/)
    assert.match(child.stdout(), /\r\[#{20}\] 5\/5 done/)
    assert.match(child.stdout(), /expired: completed, 0 candidates \(dry run\)/)
  })

  it('doctor checks configuration, database, schema and every provider key; exit 1 when one fails', async (t) => {
    if (!(await requirePostgres(t))) return
    const db = await createTestDatabase()
    t.after(() => db.drop())
    const fakes = await startFakes(t)
    // Anthropic's wire (x-api-key, version and beta headers) and Gemini's (x-goog-api-key, its own
    // client) are checked too; OpenAI has no key: skipped.
    const anthropic = await startFakeAnthropic()
    t.after(() => anthropic.close())
    const gemini = await startFakeGemini()
    t.after(() => gemini.close())
    const env = {
      ...fakes.env,
      ANTHROPIC_API_KEY: anthropic.apiKey,
      ANTHROPIC_BASE_URL: anthropic.baseUrl,
      GEMINI_API_KEY: gemini.apiKey,
      GEMINI_BASE_URL: gemini.baseUrl,
      DATABASE_URL: db.url,
      API_KEYS: `acme:${testKeys.alice}`,
    }

    const unmigrated = await filegate(t, ['doctor'], env)
    assert.equal(unmigrated.code, 1, unmigrated.stdout)
    assert.match(unmigrated.stdout, /^FAIL {2}schema +version 0, expected \d+: run `filegate migrate`$/m)

    assert.equal((await filegate(t, ['migrate'], env)).code, 0)
    const healthy = await filegate(t, ['doctor'], env)
    assert.equal(healthy.code, 0, healthy.stdout + healthy.stderr)
    const lines = healthy.stdout.trim().split('\n')
    assert.deepEqual(
      lines.map((l) => l.split(/\s{2,}/).slice(0, 2)),
      [
        ['OK', 'configuration'],
        ['OK', 'database'],
        ['OK', 'schema'],
        ['SKIP', 'originals'],
        ['OK', 'provider kimi'],
        ['OK', 'provider glm'],
        ['SKIP', 'provider openai'],
        ['OK', 'provider anthropic'],
        ['OK', 'provider gemini'],
      ],
    )
    assert.ok(anthropic.requests.list >= 1, 'an authenticated Anthropic list call')
    assert.ok(fakes.kimi.requests.list >= 1 && fakes.glm.requests.list >= 1, 'one authenticated call each')
    assert.ok(gemini.requests.list >= 1, "Gemini's key is checked through its own wire")
    assert.ok(!healthy.stdout.includes(fakeKeys.kimi), 'no key in the output')

    const wrongKey = await filegate(t, ['doctor', '--json'], { ...env, GLM_API_KEY: 'glm-wrong-key-0123456789.x' })
    assert.equal(wrongKey.code, 1)
    const report = JSON.parse(wrongKey.stdout) as {
      ok: boolean
      checks: Array<{ name: string; status: string; detail: string }>
    }
    assert.equal(report.ok, false)
    const glm = report.checks.find((c) => c.name === 'provider glm')
    assert.equal(glm?.status, 'fail')
    assert.match(glm?.detail ?? '', /HTTP 401/)
    assert.equal(report.checks.find((c) => c.name === 'provider kimi')?.status, 'ok')
    assert.ok(!wrongKey.stdout.includes('glm-wrong-key'), 'no key in the output')

    const noDb = await filegate(t, ['doctor', '--timeout', '5'], {
      ...env,
      DATABASE_URL: 'postgres://postgres@127.0.0.1:1/filegate',
    })
    assert.equal(noDb.code, 1)
    assert.match(noDb.stdout, /^FAIL {2}database +postgres: /m)
    assert.match(noDb.stdout, /^OK {4}provider kimi/m)

    const originalsRoot = await tempDir(t, 'fg-doctor-originals-')
    const withOriginals = await filegate(t, ['doctor'], { ...env, ORIGINALS_URL: `file://${originalsRoot}` })
    assert.equal(withOriginals.code, 0, withOriginals.stdout)
    assert.match(withOriginals.stdout, /^OK {4}originals +file:\/\/\/.+ answers$/m)
    const storeDown = await filegate(t, ['doctor', '--timeout', '5'], {
      ...env,
      ORIGINALS_URL: 's3://filegate-originals/x',
      S3_ENDPOINT: `http://127.0.0.1:${await freePort()}`,
      S3_ACCESS_KEY_ID: 'AKIAEXAMPLE',
      S3_SECRET_ACCESS_KEY: 'secret-not-to-print-0123',
      S3_FORCE_PATH_STYLE: 'true',
    })
    assert.equal(storeDown.code, 1, storeDown.stdout)
    assert.match(storeDown.stdout, /^FAIL {2}originals +s3:\/\/filegate-originals\/x: /m)
    assert.ok(!storeDown.stdout.includes('secret-not-to-print'), 'no secret in the output')

    const badConfig = await filegate(t, ['doctor'], { ...env, CIRCUIT_RESET_MS: 'soon' })
    assert.equal(badConfig.code, 1)
    assert.match(badConfig.stdout, /^FAIL {2}configuration +CIRCUIT_RESET_MS: must be integer$/m)
  })
})
