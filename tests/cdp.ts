/**
 * A small Chrome DevTools Protocol client for tests: launches the system Chromium headless (its
 * own process group, killed after the test) and drives one page over the browser's WebSocket
 * (Node's global WebSocket), with flattened target sessions. Protocol:
 * https://chromedevtools.github.io/devtools-protocol/
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnChild } from './process-support.js'

export const chromium = process.env.CHROMIUM ?? 'chromium'

interface Pending {
  resolve(value: Record<string, unknown>): void
  reject(err: Error): void
}

export interface Page {
  /** Sends a CDP command to the page's session. */
  send<T = Record<string, unknown>>(method: string, params?: Record<string, unknown>): Promise<T>
  /** Evaluates `expression` in the page (awaiting a promise) and returns its value. */
  evaluate<T>(expression: string): Promise<T>
  /** Polls `expression` until it is truthy; rejects after `timeoutMs` naming `what`. */
  waitFor<T>(expression: string, what: string, timeoutMs?: number): Promise<T>
  /** Console messages and exceptions the page reported. */
  console: string[]
}

/** Launches headless Chromium and opens `url` in a new page. */
export async function openPage(t: { after(fn: () => Promise<void>): void }, url: string): Promise<Page> {
  const profile = await mkdtemp(join(tmpdir(), 'filegate-chromium-'))
  const browser = spawnChild(
    t,
    chromium,
    [
      '--headless=new',
      // The sandbox needs user namespaces that containers and root often lack; the page is our own.
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--no-first-run',
      '--no-default-browser-check',
      `--user-data-dir=${profile}`,
      '--remote-debugging-port=0',
      'about:blank',
    ],
    {
      // Chromium keeps its singleton socket in TMPDIR: inside the profile, it goes with it.
      env: { ...process.env, TMPDIR: profile },
    },
  )
  // After hooks run in registration order: the browser's group is killed, then its profile removed.
  t.after(() => rm(profile, { recursive: true, force: true, maxRetries: 5 }))
  const endpoint = await new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(browser.stderr())
      if (m?.[1]) {
        clearInterval(timer)
        resolve(m[1])
      }
    }, 50)
    browser.exited.then((code) => {
      clearInterval(timer)
      reject(new Error(`chromium exited (${code}) before listening:\n${browser.stderr().slice(-2000)}`))
    })
  })

  const socket = new WebSocket(endpoint)
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener('open', () => resolve(), { once: true })
    socket.addEventListener('error', () => reject(new Error(`cannot connect to ${endpoint}`)), { once: true })
  })
  t.after(async () => socket.close())
  let nextId = 0
  const pending = new Map<number, Pending>()
  const consoleLines: string[] = []
  socket.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data)) as {
      id?: number
      result?: Record<string, unknown>
      error?: { message: string }
      method?: string
      params?: Record<string, unknown>
    }
    if (message.id !== undefined) {
      const waiter = pending.get(message.id)
      pending.delete(message.id)
      if (message.error) waiter?.reject(new Error(message.error.message))
      else waiter?.resolve(message.result ?? {})
    } else if (message.method === 'Runtime.consoleAPICalled') {
      const args = (message.params?.args as Array<{ value?: unknown; description?: string }>) ?? []
      consoleLines.push(args.map((a) => String(a.value ?? a.description ?? '')).join(' '))
    } else if (message.method === 'Runtime.exceptionThrown') {
      consoleLines.push(`exception: ${JSON.stringify(message.params?.exceptionDetails)}`)
    }
  })
  const call = <T>(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const id = ++nextId
      pending.set(id, { resolve: resolve as Pending['resolve'], reject })
      socket.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }))
    })

  const { targetId } = await call<{ targetId: string }>('Target.createTarget', { url: 'about:blank' })
  const { sessionId } = await call<{ sessionId: string }>('Target.attachToTarget', { targetId, flatten: true })
  const send = <T>(method: string, params: Record<string, unknown> = {}) => call<T>(method, params, sessionId)
  await send('Runtime.enable')
  await send('Page.enable')
  await send('Page.navigate', { url })

  const evaluate = async <T>(expression: string): Promise<T> => {
    const result = await send<{
      result: { value?: T }
      exceptionDetails?: { text: string; exception?: { description?: string } }
    }>('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true })
    if (result.exceptionDetails)
      throw new Error(
        `${expression}: ${result.exceptionDetails.exception?.description ?? result.exceptionDetails.text}`,
      )
    return result.result.value as T
  }
  const waitFor = async <T>(expression: string, what: string, timeoutMs = 30_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const value = await evaluate<T>(expression).catch(() => undefined)
      if (value) return value
      if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms\n${consoleLines.join('\n')}`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  return { send, evaluate, waitFor, console: consoleLines }
}
