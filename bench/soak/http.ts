/**
 * The soak's HTTP client: undici with a generous timeout of its own (an answer that does not come
 * within it is an outcome, `timeout`), and a round-robin router over the replicas a load balancer
 * would send to (up and ready, not being stopped).
 */
import { Agent, type Dispatcher, request } from 'undici'
import type { Outcome } from './ledger.js'

export interface Target {
  name: string
  baseUrl: string
}

export class Router {
  #turn = 0
  readonly #routable = new Map<string, Target>()
  readonly #all: Target[]

  constructor(targets: Target[]) {
    this.#all = targets
    for (const t of targets) this.#routable.set(t.name, t)
  }

  take(name: string): void {
    this.#routable.delete(name)
  }

  give(name: string): void {
    const t = this.#all.find((x) => x.name === name)
    if (t) this.#routable.set(name, t)
  }

  pick(): Target {
    const pool = this.#routable.size > 0 ? [...this.#routable.values()] : this.#all
    this.#turn = (this.#turn + 1) % pool.length
    return pool[this.#turn] as Target
  }
}

export interface Answer {
  status?: number
  code?: string
  error?: string
  body?: Buffer
  requestId?: string
  contentType?: string
}

export class SoakClient {
  readonly agent = new Agent({ connections: 64, keepAliveTimeout: 4_000, pipelining: 1 })

  constructor(private readonly timeoutMs: number) {}

  async send(
    url: string,
    options: { method: Dispatcher.HttpMethod; headers: Record<string, string>; body?: Buffer | string },
  ): Promise<Answer> {
    try {
      const res = await request(url, {
        dispatcher: this.agent,
        method: options.method,
        headers: options.headers,
        ...(options.body !== undefined ? { body: options.body } : {}),
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      })
      const body = Buffer.from(await res.body.arrayBuffer())
      const contentType = String(res.headers['content-type'] ?? '')
      const answer: Answer = { status: res.statusCode, body, contentType }
      const requestId = res.headers['x-request-id']
      if (typeof requestId === 'string') answer.requestId = requestId
      if (res.statusCode >= 400) {
        const code = problemCode(body, contentType)
        if (code) answer.code = code
      }
      return answer
    } catch (err) {
      return { error: errorName(err) }
    }
  }

  close(): Promise<void> {
    return this.agent.close()
  }
}

function problemCode(body: Buffer, contentType: string): string | undefined {
  if (!contentType.includes('json')) return undefined
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { code?: unknown }
    return typeof parsed.code === 'string' ? parsed.code : undefined
  } catch {
    return undefined
  }
}

function errorName(err: unknown): string {
  const e = err as { code?: string; cause?: { code?: string }; name?: string }
  if (e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT') return 'timeout'
  return e.cause?.code ?? e.code ?? e.name ?? 'error'
}

export const json = <T>(answer: Answer): T | undefined => {
  try {
    return answer.body ? (JSON.parse(answer.body.toString('utf8')) as T) : undefined
  } catch {
    return undefined
  }
}

/** The outcome fields of an answer. */
export function outcomeOf(answer: Answer): Pick<Outcome, 'status' | 'code' | 'error' | 'requestId'> {
  const out: Pick<Outcome, 'status' | 'code' | 'error' | 'requestId'> = {}
  if (answer.status !== undefined) out.status = answer.status
  if (answer.code !== undefined) out.code = answer.code
  if (answer.error !== undefined) out.error = answer.error
  if (answer.requestId !== undefined) out.requestId = answer.requestId
  return out
}
