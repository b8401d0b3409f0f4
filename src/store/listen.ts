/**
 * LISTEN on Postgres, kept alive: one dedicated connection per channel (a pooled one would be
 * handed to other queries and lose the LISTEN). When that connection closes, the listener reports
 * it lost and listens again with backoff; each (re)start reports `listening`, so that whatever was
 * announced in between is treated as missed. A connection can also die without closing (a silent
 * network drop): every `pingMs` the listener notifies itself on its own channel and expects to hear
 * it before the next ping; when it does not, the connection is dropped and opened again.
 */
import { randomBytes } from 'node:crypto'
import postgres from 'postgres'
import type { ListenHandlers } from './port.js'

export interface ListenOptions {
  pingMs?: number
  /** The first retry's delay; doubled up to maxRetryMs. */
  retryMs?: number
  maxRetryMs?: number
}

const pingPrefix = 'ping:'

export async function listenOnPostgres(
  databaseUrl: string,
  channel: string,
  handlers: ListenHandlers,
  options: ListenOptions = {},
): Promise<() => Promise<void>> {
  const { pingMs = 5_000, retryMs = 100, maxRetryMs = 5_000 } = options
  const self = randomBytes(6).toString('hex')
  let connection: postgres.Sql | undefined
  let stopped = false
  let attempt = 0
  let retry: NodeJS.Timeout | undefined
  let sentPing: string | undefined
  let heardPing = true
  let pings = 0

  const onNotify = (payload: string) => {
    if (!payload.startsWith(pingPrefix)) {
      handlers.notify(payload)
      return
    }
    if (payload === sentPing) heardPing = true
  }

  /** The connection is gone or not answering: report it once, close it, and start again later. */
  const drop = (broken: postgres.Sql) => {
    if (connection !== broken) return
    connection = undefined
    handlers.lost()
    void broken.end({ timeout: 0 }).catch(() => {})
    if (stopped) return
    retry = setTimeout(start, Math.min(maxRetryMs, retryMs * 2 ** attempt++))
    retry.unref()
  }

  const start = async (): Promise<void> => {
    if (stopped) return
    const sql: postgres.Sql = postgres(databaseUrl, {
      max: 1,
      idle_timeout: null as unknown as number,
      max_lifetime: null as unknown as number,
      connect_timeout: 5,
      fetch_types: false,
      onnotice: () => {},
      onnotify: (name: string, payload: string) => {
        if (name === channel) onNotify(payload)
      },
      onclose: () => drop(sql),
      connection: { application_name: 'filegate-listen' },
    } as postgres.Options<Record<string, never>>)
    connection = sql
    try {
      await sql.unsafe(`listen "${channel.replaceAll('"', '""')}"`)
    } catch {
      drop(sql)
      return
    }
    if (connection !== sql) return
    attempt = 0
    heardPing = true
    handlers.listening()
  }

  const ping = setInterval(() => {
    const sql = connection
    if (!sql) return
    if (!heardPing) {
      drop(sql)
      return
    }
    heardPing = false
    sentPing = `${pingPrefix}${self}:${pings++}`
    sql.unsafe('select pg_notify($1, $2)', [channel, sentPing]).catch(() => drop(sql))
  }, pingMs)
  ping.unref()

  await start()
  return async () => {
    stopped = true
    clearInterval(ping)
    clearTimeout(retry)
    const sql = connection
    connection = undefined
    await sql?.end({ timeout: 1 }).catch(() => {})
  }
}
