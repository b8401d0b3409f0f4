/**
 * `npm run test:unit` runs every test file through this script, in two passes:
 *
 * 1. together: the files that do not need the machine to themselves, TEST_CONCURRENCY at a time
 *    (default twice the cores: most of a file's time is spent waiting on timers, child processes and sockets,
 *    so more files than cores keeps both cores busy), each in its own process with its own database;
 * 2. alone: the files whose header carries the marker `@alone <why>` (they measure resident memory
 *    or event-loop delay, or load every core on purpose), one at a time, with nothing else running.
 *
 * Both passes run whatever happens to the first; the exit code is non-zero when either failed.
 * The files run alone get the Node flags of `npm start` (the memory tests measure what production
 * runs); the others run with Node's defaults, whose larger young generation costs them less time in
 * the garbage collector. Arguments narrow the run to the files given:
 * `npm run test:unit -- tests/unit/x.test.ts`.
 * At the end the slowest files are listed (tests/reporters/slowest-files.ts).
 *
 * Before the passes it makes, once for the run:
 * - a PGlite data directory with the schema applied, the template that tests/helper.ts copies for
 *   every test that needs a PGlite store but not a first start (creating a cluster costs a few
 *   seconds of CPU; a copy costs milliseconds). It is removed at the end;
 * - a build of the tree (src/, routes/, tests/, scripts/, bench/) under .test-build/ (esbuild: the
 *   transform tsx applies to each module as it loads). The test files run from it, and so do the
 *   services and commands the tests start as processes (tests/process-support.ts serviceModule):
 *   without a loader in each process, a test file costs about a second less CPU and a service start
 *   a third less, and the run starts some 90 test files and 150 processes. Coverage (c8) and stack
 *   traces are mapped back to the sources through the build's source maps. In tests/, scripts/ and
 *   bench/, `import.meta.url` and `import.meta.dirname` are the source file's, not the built one's:
 *   paths they compute (the repository's root, docs/, openapi.yaml) are the same either way.
 */
import { spawn } from 'node:child_process'
import { globSync, readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { build, type Plugin } from 'esbuild'
import { migrateStore } from '../src/store/index.js'
import { createPgliteStore } from '../src/store/pglite.js'

/** The Node flags `npm start` runs the service with (the options before the script it runs). */
function productionFlags(): string[] {
  const start = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: { start: string } }).scripts.start
  return start.split(/\s+/).filter((word) => /^--[a-z-]+(=\S+)?$/.test(word))
}
const alonePattern = /^\s*\*?\s*@alone\s+\S/m

const requested = process.argv.slice(2)
const files = requested.length > 0 ? requested : globSync('tests/*/*.test.ts').sort()
const runsAlone = (file: string) => alonePattern.test(readFileSync(file, 'utf8').slice(0, 8192))
const alone = files.filter(runsAlone)
const together = files.filter((file) => !alone.includes(file))
const concurrency = Number(process.env.TEST_CONCURRENCY ?? Math.max(2, 2 * availableParallelism()))
const testTimeoutMs = Number(process.env.TEST_TIMEOUT_MS ?? 600_000)
const passDeadlineSeconds = Number(process.env.TEST_PASS_DEADLINE_SECONDS ?? 2400)

function runPass(passFiles: string[], passConcurrency: number, nodeFlags: string[]): Promise<number> {
  if (passFiles.length === 0) return Promise.resolve(0)
  const args = [
    ...nodeFlags,
    // Failures name the lines of the sources, not of the build.
    '--enable-source-maps',
    '--test',
    `--test-concurrency=${passConcurrency}`,
    // A test, hook or suite that never settles fails after this long, naming itself, and a file whose
    // tests are all done but whose process a forgotten handle keeps alive fails after a grace
    // (tests/linger-guard.ts): a hang costs minutes, not the CI's hour.
    `--test-timeout=${testTimeoutMs}`,
    '--import',
    built('tests/linger-guard.ts'),
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    `--test-reporter=${built('tests/reporters/slowest-files.ts')}`,
    '--test-reporter-destination=stdout',
    ...passFiles.map(built),
  ]
  const child = spawn(process.execPath, args, { stdio: 'inherit' })
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => child.kill(signal))
  // The last resort against a hang no test timeout sees (a file stuck before its first test): the
  // pass is interrupted, which lists the files it had not finished, and fails.
  const watchdog = setTimeout(() => {
    console.error(`# the pass ran past ${passDeadlineSeconds} s (TEST_PASS_DEADLINE_SECONDS): interrupted`)
    child.kill('SIGTERM')
  }, passDeadlineSeconds * 1000)
  return new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      clearTimeout(watchdog)
      resolve(code ?? (signal ? 1 : 0))
    }),
  )
}

/** An initialised PGlite cluster with the schema applied, for tests/helper.ts to copy. */
async function pgliteTemplate(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'filegate-pglite-template-'))
  const store = await createPgliteStore(dir)
  try {
    await migrateStore(store)
  } finally {
    await store.close()
  }
  return dir
}

const buildDir = resolve('.test-build')
/** Where a test file (or the guard, or the reporter) of the tree runs from: its build. */
const built = (file: string) => join(buildDir, file.replace(/\.ts$/, '.js'))

/** `import.meta.url`, `.dirname` and `.filename` of a tests/, scripts/ or bench/ module: its source's. */
const sourceLocation: Plugin = {
  name: 'source-location',
  setup(esbuild) {
    const filter = new RegExp(`^${resolve('.').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/(tests|scripts|bench)/.*\\.ts$`)
    esbuild.onLoad({ filter }, async ({ path }) => ({
      contents: (await readFile(path, 'utf8'))
        .replaceAll('import.meta.url', JSON.stringify(pathToFileURL(path).href))
        .replaceAll('import.meta.dirname', JSON.stringify(dirname(path)))
        .replaceAll('import.meta.filename', JSON.stringify(path)),
      loader: 'ts',
    }))
  },
}

/** The tree as JavaScript under .test-build/, beside package.json and migrations/ as dist/ is. */
async function treeBuild(): Promise<string> {
  await rm(buildDir, { recursive: true, force: true })
  await build({
    entryPoints: globSync('{src,routes,tests,scripts,bench}/**/*.ts'),
    outdir: buildDir,
    outbase: '.',
    format: 'esm',
    platform: 'node',
    target: 'node24',
    // Coverage (c8) and stack traces are mapped back to the sources through these.
    sourcemap: 'linked',
    plugins: [sourceLocation],
    logLevel: 'warning',
  })
  return buildDir
}

/** The files that used the most CPU (their own and their children's), from tests/linger-guard.ts. */
async function cpuReport(path: string): Promise<string> {
  const lines = (await readFile(path, 'utf8').catch(() => '')).split('\n').filter(Boolean)
  const rows = lines.map((line) => JSON.parse(line) as { file: string; own: number; children: number })
  const total = rows.reduce((sum, r) => sum + r.own + r.children, 0)
  // TEST_CPU_LIST_ALL=1 lists every file, not only the 15 that used most.
  const top = rows
    .sort((a, b) => b.own + b.children - (a.own + a.children))
    .slice(0, process.env.TEST_CPU_LIST_ALL === '1' ? rows.length : 15)
  const out = [`# CPU: ${total.toFixed(0)} s in all test files; the ${top.length} that used most (own + children's)`]
  for (const r of top) {
    out.push(
      `# ${(r.own + r.children).toFixed(1).padStart(7)} s  ${r.file} (${r.own.toFixed(1)} + ${r.children.toFixed(1)})`,
    )
  }
  return out.join('\n')
}

const started = Date.now()
const [template, treeDir] = await Promise.all([pgliteTemplate(), treeBuild()])
process.env.FILEGATE_TEST_PGLITE_TEMPLATE = template
process.env.FILEGATE_TEST_BUILD = treeDir
const cpuFile = join(tmpdir(), `filegate-test-cpu-${process.pid}.jsonl`)
process.env.FILEGATE_TEST_CPU_FILE = cpuFile
console.log(`# ${together.length} test files ${concurrency} at a time, then ${alone.length} alone`)
let togetherCode: number
let aloneCode: number
let aloneStarted = Date.now()
try {
  togetherCode = await runPass(together, concurrency, [])
  aloneStarted = Date.now()
  aloneCode = await runPass(alone, 1, productionFlags())
} finally {
  await rm(template, { recursive: true, force: true })
}
console.log(await cpuReport(cpuFile))
await rm(cpuFile, { force: true })
const seconds = (ms: number) => `${(ms / 1000).toFixed(0)} s`
console.log(
  `# test files: ${seconds(aloneStarted - started)} together, ${seconds(Date.now() - aloneStarted)} alone` +
    ` (${alone.join(', ') || 'none'})`,
)
process.exitCode = togetherCode || aloneCode
