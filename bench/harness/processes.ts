/**
 * The processes a scenario runs against: the fake provider and the bare-Fastify baseline (forked,
 * driven over IPC) and filegate itself, compiled and started as in production (`node <the start
 * script's flags> src/server.js`) with its configuration in the environment.
 */
import { type ChildProcess, fork, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { copyFile, mkdir, symlink } from 'node:fs/promises'
import { createServer } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { request } from 'undici'
import type { FakeOp } from '../../tests/fakes/provider-server.js'
import type { FakeCommand, FakeStats } from '../children/fake-provider.js'

export const benchDir = dirname(dirname(fileURLToPath(import.meta.url)))
export const repoRoot = dirname(benchDir)
/**
 * Where the service under test is started from: this checkout unless BENCH_SERVICE_DIR names
 * another one (a scratch copy with a candidate fix, measured by the same bench).
 */
export const serviceRoot = process.env.BENCH_SERVICE_DIR || repoRoot

/**
 * A bench child (children/*.ts) leading a process group of its own, so that stopping it kills all
 * it started; each child exits by itself when this process's IPC channel closes.
 */
const forkTs = (file: string, env: Record<string, string> = {}, stdout: 'inherit' | 'pipe' = 'inherit') =>
  fork(join(benchDir, 'children', file), [], {
    execArgv: ['--import', 'tsx'],
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', stdout, 'inherit', 'ipc'],
    detached: true,
  })

/** Settles when `child` has exited (at once if it has already). */
const exitOf = (child: ChildProcess): Promise<void> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((resolve) => child.once('exit', () => resolve()))

function whenReady(child: ChildProcess, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`${what} exited (${code}) before it was ready`))
    child.once('exit', onExit)
    child.on('message', function onMessage(msg: { ready?: boolean; baseUrl?: string }) {
      if (!msg.ready || !msg.baseUrl) return
      child.off('message', onMessage)
      child.off('exit', onExit)
      resolve(msg.baseUrl)
    })
  })
}

/** Closes the child's IPC channel (it exits by itself), then kills its group if it lingers. */
function stopChild(child: ChildProcess): Promise<void> {
  if (!child.connected) return stopGroup(child)
  child.disconnect()
  const timer = setTimeout(() => void stopGroup(child), 5_000)
  return exitOf(child).finally(() => {
    clearTimeout(timer)
    signalGroup(child, 'SIGKILL') // anything it started and left behind
  })
}

export interface FakeHandle {
  baseUrl: string
  apiKey: string
  pid: number
  set(latencyMs: number, ops: FakeOp[] | null): Promise<FakeStats>
  seed(prefix: string, count: number): Promise<FakeStats>
  stats(): Promise<FakeStats>
  stop(): Promise<void>
}

export async function startFake(apiKey: string): Promise<FakeHandle> {
  const child = forkTs('fake-provider.ts', { FAKE_API_KEY: apiKey })
  const baseUrl = await whenReady(child, 'fake provider')
  let seq = 0
  type Command = FakeCommand extends infer C ? (C extends FakeCommand ? Omit<C, 'id'> : never) : never
  const ask = (cmd: Command) =>
    new Promise<FakeStats>((resolve) => {
      const id = ++seq
      child.on('message', function onMessage(msg: { id?: number; stats?: FakeStats }) {
        if (msg.id !== id || !msg.stats) return
        child.off('message', onMessage)
        resolve(msg.stats)
      })
      child.send({ ...cmd, id })
    })
  return {
    baseUrl,
    apiKey,
    pid: child.pid ?? 0,
    set: (latencyMs, ops) => ask({ cmd: 'set', latencyMs, ops }),
    seed: (prefix, count) => ask({ cmd: 'seed', prefix, count }),
    stats: () => ask({ cmd: 'stats' }),
    stop: () => stopChild(child),
  }
}

/** Bare Fastify + multipart (children/baseline-server.ts); with `databaseUrl`, plus one indexed lookup of the hash. */
export async function startBaseline(
  databaseUrl?: string,
): Promise<{ baseUrl: string; pid: number; stop(): Promise<void> }> {
  const child = forkTs('baseline-server.ts', databaseUrl ? { BASELINE_DATABASE_URL: databaseUrl } : {})
  const baseUrl = await whenReady(child, 'baseline server')
  return { baseUrl, pid: child.pid ?? 0, stop: () => stopChild(child) }
}

/** The fake Gemini in its own process (children/fake-gemini.ts): scenario 1's Gemini row. */
export async function startGeminiFake(
  apiKey: string,
): Promise<{ baseUrl: string; apiKey: string; pid: number; stop(): Promise<void> }> {
  const child = forkTs('fake-gemini.ts', { FAKE_API_KEY: apiKey })
  const baseUrl = await whenReady(child, 'fake Gemini')
  return { baseUrl, apiKey, pid: child.pid ?? 0, stop: () => stopChild(child) }
}

/** A bare Node relay to `target` (the forwarding limit of scenario 1): children/relay.ts. */
export async function startRelay(target: string): Promise<{ baseUrl: string; pid: number; stop(): Promise<void> }> {
  const child = forkTs('relay.ts', { RELAY_TARGET: target })
  const baseUrl = await whenReady(child, 'relay')
  return { baseUrl, pid: child.pid ?? 0, stop: () => stopChild(child) }
}

/** Kills the process group led by `child` (SIGTERM, then SIGKILL after 5 s) and waits for the leader's exit. */
function stopGroup(child: ChildProcess, graceMs = 5_000): Promise<void> {
  const exited = exitOf(child)
  const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), graceMs)
  signalGroup(child, 'SIGTERM')
  return exited.finally(() => clearTimeout(timer))
}

/** Signals the process group `child` leads (forked or spawned with `detached: true`). */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-(child.pid as number), signal)
  } catch {
    // the group is gone already
  }
}

export interface S3rverHandle {
  endpoint: string
  bucket: string
  pid: number
  stop(): Promise<void>
}

/**
 * s3rver serving `bucket` from `directory` (children/s3rver.ts), in a process group of its own: stop()
 * and any failure to start kill the whole group. Ready when it prints its endpoint on stdout; it
 * also exits by itself when this process's IPC channel closes (this process died).
 */
export async function startS3rver(directory: string, bucket: string): Promise<S3rverHandle> {
  const child = forkTs('s3rver.ts', { S3RVER_DIR: directory, S3RVER_BUCKET: bucket }, 'pipe')
  try {
    const endpoint = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('s3rver did not print its endpoint within 30 s')), 30_000)
      const onExit = (code: number | null) => reject(new Error(`s3rver exited (${code}) before it was ready`))
      child.once('exit', onExit)
      let seen = ''
      child.stdout?.on('data', function onData(chunk: Buffer) {
        seen += chunk.toString('utf8')
        const match = /^s3rver listening on (\S+)$/m.exec(seen)
        if (!match?.[1]) return
        child.stdout?.off('data', onData)
        child.stdout?.resume()
        child.off('exit', onExit)
        clearTimeout(timer)
        resolve(match[1])
      })
    })
    return { endpoint, bucket, pid: child.pid ?? 0, stop: () => stopGroup(child) }
  } catch (err) {
    await stopGroup(child)
    throw err
  }
}

export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : 0
  await new Promise((resolve) => server.close(resolve))
  return port
}

export interface ServiceHandle {
  baseUrl: string
  pid: number
  /** Sends SIGTERM and waits for the exit (a `--cpu-prof` profile is written then). */
  stop(): Promise<void>
}

export const benchKeys = { tenant: 'bench-key-0123456789abcdef', admin: 'bench-admin-0123456789abcdef' }

export interface ServiceOptions {
  databaseUrl: string
  fake: FakeHandle
  spoolDir: string
  env?: Record<string, string>
  /** Run the compiled build in this directory (`node src/server.js`) instead of tsx. */
  compiledRoot?: string | undefined
  /** Node/V8 flags for the service beyond the production ones (e.g. ones NODE_OPTIONS refuses). */
  nodeArgs?: string[]
}

/**
 * The Node flags production runs the service with: those of the `start` script in the checkout's
 * package.json (the image's CMD carries the same, scripts/validate-deploy.ts checks it).
 */
export function productionNodeFlags(root: string): string[] {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts?: Record<string, string> }
  const argv = (pkg.scripts?.start ?? '').trim().split(/\s+/)
  return argv[0] === 'node' ? argv.slice(1).filter((a) => a.startsWith('--')) : []
}

/** Node/V8 flags written as one space-separated string (an environment variable, a bench:ab variant). */
export const splitFlags = (text: string | undefined): string[] => (text ?? '').split(/\s+/).filter(Boolean)

/** `BENCH_SERVICE_NODE_ARGS="--trace-gc --no-opt"`: extra Node/V8 flags for every service the bench starts. */
export const benchNodeArgs = (): string[] => splitFlags(process.env.BENCH_SERVICE_NODE_ARGS)

export async function startService(options: ServiceOptions): Promise<ServiceHandle> {
  const port = await freePort()
  // Compiled, the service runs with the flags of the image's CMD and `npm start`.
  const execArgv = options.compiledRoot ? productionNodeFlags(options.compiledRoot) : ['--import', 'tsx']
  execArgv.push('--import', pathToFileURL(join(benchDir, 'children', 'exit-with-runner.mjs')).href)
  execArgv.push(...benchNodeArgs(), ...(options.nodeArgs ?? []))
  const entry = options.compiledRoot ? 'src/server.js' : 'src/server.ts'
  const child = spawn(process.execPath, [...execArgv, entry], {
    cwd: options.compiledRoot ?? serviceRoot,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATABASE_URL: options.databaseUrl,
      API_KEYS: `bench:${benchKeys.tenant},*:${benchKeys.admin}`,
      DEFAULT_PROVIDER: 'kimi',
      KIMI_API_KEY: options.fake.apiKey,
      KIMI_BASE_URL: options.fake.baseUrl,
      LOG_LEVEL: 'warn',
      RATE_LIMIT_PER_MINUTE: '0',
      CLEANUP_ENABLED: 'false',
      UPLOAD_TMP_DIR: options.spoolDir,
      // Node flags for the service only (e.g. --max-semi-space-size), to try a setting.
      ...(process.env.BENCH_SERVICE_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_SERVICE_NODE_OPTIONS } : {}),
      ...options.env,
    },
    // Its own process group (stopped with it); the IPC channel only tells it when this process is gone.
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    detached: true,
  })
  const baseUrl = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 60_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`filegate exited with ${child.exitCode} at start`)
    try {
      const res = await request(`${baseUrl}/readyz`)
      await res.body.dump()
      if (res.statusCode === 200) break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      signalGroup(child, 'SIGKILL')
      throw new Error('filegate did not become ready within 60 s')
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  return {
    baseUrl,
    pid: child.pid ?? 0,
    async stop() {
      await stopGroup(child, 30_000)
    },
  }
}

/**
 * `tsc -p tsconfig.build.json` of the service into `dir`, laid out like the package (package.json,
 * migrations/ and node_modules beside it) so `node src/server.js` finds everything. Nothing is
 * written into the checkout.
 */
export async function buildCompiled(dir: string, root: string = serviceRoot): Promise<string> {
  await mkdir(dir, { recursive: true })
  const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc')
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', dir], {
      cwd: root,
      stdio: ['ignore', 'inherit', 'inherit'],
    })
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`tsc exited with ${code}`))))
  })
  await copyFile(join(root, 'package.json'), join(dir, 'package.json'))
  await symlink(join(root, 'migrations'), join(dir, 'migrations'))
  await symlink(join(repoRoot, 'node_modules'), join(dir, 'node_modules'))
  return dir
}
