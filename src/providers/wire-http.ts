/**
 * What every provider wire does the same way over undici, whatever its shapes: one keep-alive
 * Agent per provider with idle timeouts, a transport failure as a provider error, a JSON answer
 * read or its failure classified, an error body read up to a cap, and a close that cannot hang.
 */
import type { Readable } from 'node:stream'
import { Agent, type Dispatcher } from 'undici'
import {
  badResponse,
  type ErrorDialect,
  mapUpstreamError,
  networkError,
  type ProviderError,
  parseRetryAfter,
  sanitizeMessage,
  timeoutError,
} from './errors.js'
import type { ProviderFile, ProviderOp } from './types.js'

/**
 * A provider file id as filegate keeps and passes it on: 1-256 visible ASCII characters (Kimi
 * `cq7n…`, GLM and OpenAI `file-…`, Anthropic `file_…`, Gemini `files/…` reduced to its id), the
 * longest a path parameter accepts. Anything else (a NUL, spaces, a kilobyte of text) cannot be a
 * provider's id and is not stored.
 */
export const providerIdPattern = /^[\x21-\x7e]{1,256}$/

/**
 * What is wrong with a file object a dialect read from a provider's reply, if anything: its id, its
 * size (a whole number of bytes), its times (unix seconds). The documented shapes all satisfy it.
 */
export function providerFileProblem(file: ProviderFile): string | undefined {
  if (!providerIdPattern.test(file.id)) return 'a file id that is not 1-256 visible ASCII characters'
  if (!Number.isSafeInteger(file.bytes) || file.bytes < 0) return 'a size that is not a whole number of bytes'
  if (!Number.isFinite(file.createdAt) || file.createdAt < 0) return 'a created_at that is not a time'
  if (file.expiresAt != null && (!Number.isFinite(file.expiresAt) || file.expiresAt < 0)) {
    return 'an expires_at that is not a time'
  }
  return undefined
}

/** Error bodies are read up to this much; the rest is dropped. */
export const ERROR_BODY_CAP = 64 * 1024

/** undici idle timeouts bound a stall even after an attempt returned a streamed body. */
export function wireAgent(idleTimeoutMs: number, connections: number): Agent {
  return new Agent({
    keepAliveTimeout: 10_000,
    connections,
    headersTimeout: idleTimeoutMs,
    bodyTimeout: idleTimeoutMs,
  })
}

/**
 * Lets requests in flight finish, then destroys what is left after `graceMs` (an unread
 * content body, a hung upstream) so shutdown cannot hang on a provider.
 */
export async function closeAgent(agent: Agent, graceMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const grace = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), graceMs)
  })
  const outcome = await Promise.race([agent.close().then(() => 'closed' as const), grace])
  clearTimeout(timer)
  if (outcome === 'late') await agent.destroy()
}

/** A request that failed before an answer: an idle timeout, or the provider (or the path to it) failing. */
export function transportError(
  err: unknown,
  signal: AbortSignal | undefined,
  provider: string,
  idleTimeoutMs: number,
): unknown {
  // Aborts are the caller's (or the attempt timer's) decision; resilience.ts tells them apart.
  if (signal?.aborted) return err
  const code = (err as { code?: string }).code
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return timeoutError(provider, idleTimeoutMs)
  }
  return networkError(provider, err)
}

/** A JSON answer; a stalled, cut or malformed body as the provider error it is. */
export async function readJson(
  res: Dispatcher.ResponseData,
  provider: string,
  idleTimeoutMs: number,
): Promise<unknown> {
  try {
    return await res.body.json()
  } catch (err) {
    const code = (err as { code?: string }).code
    if (code === 'UND_ERR_BODY_TIMEOUT') throw timeoutError(provider, idleTimeoutMs)
    if (err instanceof SyntaxError) throw badResponse(provider, 'body is not JSON')
    if ((err as Error).name === 'AbortError' || code === 'UND_ERR_ABORTED') throw err
    throw networkError(provider, err)
  }
}

/** The error fields a wire finds in an error body, whatever its shape. */
export interface ErrorBodyFields {
  type?: string
  code?: string
  message?: string
}

/**
 * A non-2xx answer as the provider error it is: its body read up to the cap and parsed in the
 * wire's own error shape, the message cleared of the key, Retry-After honoured, then classified
 * by the dialect's rules and the shared ones.
 */
export async function upstreamError(
  res: Dispatcher.ResponseData,
  op: ProviderOp,
  who: { provider: string; apiKey: string | undefined; limitBytes: number },
  parse: (text: string) => ErrorBodyFields,
  classify: ErrorDialect,
): Promise<ProviderError> {
  const text = await readCapped(res.body, ERROR_BODY_CAP).catch(() => '')
  const parsed = parse(text)
  return mapUpstreamError(
    {
      provider: who.provider,
      op,
      status: res.statusCode,
      type: parsed.type,
      code: parsed.code,
      message: sanitizeMessage(parsed.message ?? '', [who.apiKey]),
      retryAfterMs: parseRetryAfter(res.headers['retry-after']),
      limitBytes: who.limitBytes,
    },
    classify,
  )
}

/** At most `cap` bytes of a body as text; the rest is not read. */
export async function readCapped(body: Readable, cap: number): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    const buf = chunk as Buffer
    chunks.push(buf)
    size += buf.length
    if (size >= cap) {
      body.destroy()
      break
    }
  }
  return Buffer.concat(chunks).subarray(0, cap).toString('utf8')
}
