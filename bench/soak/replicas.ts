/**
 * The replicas under soak: the compiled service started as `npm start` starts it (the start
 * script's Node flags), each the leader of its own process group, on a port that stays the same
 * across restarts. Every line it writes is checked to be JSON; an exit the soak did not cause is a
 * crash; its RSS is sampled from /proc; its /metrics scraped for the database pool figures.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createWriteStream, type WriteStream } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { pathToFileURL } from 'node:url'
import { request } from 'undici'
import { benchDir, productionNodeFlags } from '../harness/processes.js'
import { readMemory } from '../harness/rss.js'

export interface OutputProblem {
  replica: string
  stream: 'stdout' | 'stderr'
  at: number
  line: string
}

export interface ExitRecord {
  replica: string
  at: number
  code: number | null
  signal: NodeJS.Signals | null
  /** The soak sent the signal that ended it (SIGKILL, SIGTERM, or the final stop). */
  caused: boolean
  /** The last lines it wrote, for a crash's report. */
  lastLines: string[]
}

export interface RssSample {
  at: number
  rss: number
}

export interface ReplicaObservations {
  outputProblems: OutputProblem[]
  exits: ExitRecord[]
  rss: Map<string, RssSample[]>
  /** Per incarnation (replica#n), the last /metrics text scraped. */
  metrics: Map<string, string>
  jsonLines: number
}

export class Replica {
  readonly name: string
  readonly port: number
  #child: ChildProcess | undefined
  #incarnation = 0
  #signalled: NodeJS.Signals | undefined
  #exited: Promise<void> = Promise.resolve()
  #lines: string[] = []
  #retired = false
  readonly #log: WriteStream

  constructor(
    name: string,
    port: number,
    private readonly compiled: string,
    private readonly env: Record<string, string>,
    private readonly seen: ReplicaObservations,
    logDir: string,
  ) {
    this.name = name
    this.port = port
    this.#log = createWriteStream(join(logDir, `${name}.log`), { flags: 'a' })
  }

  /** Where its lines go (every incarnation's, stdout and stderr, in order). */
  closeLog(): Promise<void> {
    return new Promise((resolve) => this.#log.end(resolve))
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`
  }

  get pid(): number | undefined {
    return this.running() ? this.#child?.pid : undefined
  }

  get incarnation(): string {
    return `${this.name}#${this.#incarnation}`
  }

  running(): boolean {
    const child = this.#child
    return child !== undefined && child.exitCode === null && child.signalCode === null
  }

  /** Never started again (the end of the run, Ctrl-C): a restart in flight becomes a no-op. */
  retire(): void {
    this.#retired = true
  }

  start(): void {
    if (this.#retired) return
    this.#incarnation++
    this.#log.write(`{"soak":"start ${this.name}#${this.#incarnation}","time":${Date.now()}}\n`)
    this.#signalled = undefined
    const preload = pathToFileURL(join(benchDir, 'children', 'exit-with-runner.mjs')).href
    const child = spawn(
      process.execPath,
      [...productionNodeFlags(this.compiled), '--import', preload, join(this.compiled, 'src/server.js')],
      {
        cwd: this.compiled,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...this.env, PORT: String(this.port) },
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
        detached: true,
      },
    )
    this.#child = child
    this.#lines = []
    for (const stream of ['stdout', 'stderr'] as const) {
      createInterface({ input: child[stream] as NodeJS.ReadableStream }).on('line', (line) => this.#note(stream, line))
    }
    this.#exited = new Promise<void>((resolve) =>
      child.once('exit', (code, signal) => {
        this.seen.exits.push({
          replica: this.name,
          at: Date.now(),
          code,
          signal,
          caused: this.#signalled !== undefined,
          lastLines: this.#lines.slice(-8),
        })
        resolve()
      }),
    )
  }

  #note(stream: 'stdout' | 'stderr', line: string): void {
    this.#log.write(stream === 'stdout' ? `${line}\n` : `[stderr] ${line}\n`)
    this.#lines.push(line.slice(0, 400))
    if (this.#lines.length > 50) this.#lines.shift()
    if (line.trim() === '') return
    try {
      const parsed: unknown = JSON.parse(line)
      if (typeof parsed !== 'object' || parsed === null) throw new Error('not an object')
      this.seen.jsonLines++
    } catch {
      this.seen.outputProblems.push({ replica: this.name, stream, at: Date.now(), line: line.slice(0, 300) })
    }
  }

  /** Signals the process group; resolves once the leader has exited. */
  async signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.#child
    if (!child || !this.running()) return
    this.#signalled = signal
    try {
      process.kill(-(child.pid as number), signal)
    } catch {
      // gone already
    }
    await this.#exited
  }

  /** SIGTERM, and SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    const timer = setTimeout(() => void this.signal('SIGKILL'), graceMs)
    await this.signal('SIGTERM')
    clearTimeout(timer)
  }

  exited(): Promise<void> {
    return this.#exited
  }

  /** True once /readyz answers 200 (false when the process is gone or `timeoutMs` passed). */
  async ready(timeoutMs = 60_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline && this.running()) {
      if ((await this.#status('/readyz')) === 200) return true
      await new Promise((r) => setTimeout(r, 100))
    }
    return false
  }

  async #status(path: string): Promise<number | undefined> {
    try {
      const res = await request(`${this.baseUrl}${path}`, { headersTimeout: 2_000, bodyTimeout: 2_000 })
      await res.body.dump()
      return res.statusCode
    } catch {
      return undefined
    }
  }

  async scrapeMetrics(): Promise<void> {
    if (!this.running()) return
    try {
      const res = await request(`${this.baseUrl}/metrics`, { headersTimeout: 3_000, bodyTimeout: 3_000 })
      const text = await res.body.text()
      if (res.statusCode === 200) this.seen.metrics.set(this.incarnation, text)
    } catch {
      // a replica that is down or busy: the next scrape
    }
  }

  async sampleRss(): Promise<void> {
    const pid = this.pid
    if (pid === undefined) return
    try {
      const { rssBytes } = await readMemory(pid)
      // A process between its exit and its reaping has no VmRSS line.
      if (rssBytes === 0) return
      const series = this.seen.rss.get(this.name) ?? []
      series.push({ at: Date.now(), rss: rssBytes })
      this.seen.rss.set(this.name, series)
    } catch {
      // exited between the check and the read
    }
  }
}

export const newObservations = (): ReplicaObservations => ({
  outputProblems: [],
  exits: [],
  rss: new Map(),
  metrics: new Map(),
  jsonLines: 0,
})
