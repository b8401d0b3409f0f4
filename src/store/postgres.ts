/** Postgres transport (DATABASE_URL): the `postgres` driver, one pool per process. */
import postgres from 'postgres'
import { listenOnPostgres } from './listen.js'
import { type PoolMetrics, poolSockets, WaitingCalls } from './pool-watch.js'
import {
  type CallArgs,
  databaseUnavailable,
  isConnectionError,
  namedCallSql,
  type StorePort,
  storeError,
} from './port.js'

export const migrationLockKey = 7_261_019_301 // arbitrary, constant: pg_advisory_lock(bigint)

/**
 * Seconds before a closed connection connects again, after `retries` failed connects of the pool
 * (the driver counts them for the whole pool and resets the count on a connect that succeeds):
 * 50 ms doubling to at most 1 s, jittered. The driver's own (3^retries / 100 s, up to 20 s) kept
 * every connection away from a database that was back for up to 20 s after a cut of a few seconds,
 * each call waiting meanwhile (docs/operations.md, "Database connections").
 */
export const reconnectBackoff = (retries: number) => Math.min(0.05 * 2 ** retries, 1) * (0.5 + Math.random() / 2)

const queryDetails = new Set(['query', 'parameters', 'args', 'types'])

/**
 * The driver makes a failed query's text, parameters and arguments enumerable (and fixed)
 * properties of its error whenever `debug` is set (it is, to count the waiting calls): such an
 * error is copied without them (same class, every other property), so that no error logged
 * carries a call's arguments.
 */
function hideQueryDetails(err: unknown): unknown {
  if (err === null || typeof err !== 'object') return err
  if (![...queryDetails].some((key) => Object.getOwnPropertyDescriptor(err, key)?.enumerable)) return err
  const copy = Object.create(Object.getPrototypeOf(err)) as object
  for (const key of Object.getOwnPropertyNames(err)) {
    if (!queryDetails.has(key))
      Object.defineProperty(copy, key, Object.getOwnPropertyDescriptor(err, key) as PropertyDescriptor)
  }
  return copy
}

export function createPostgresStore(
  databaseUrl: string,
  options: { max?: number; metrics?: PoolMetrics | undefined } = {},
): StorePort {
  const waiting = options.metrics ? new WaitingCalls(options.metrics.dbPoolWaiting) : undefined
  const open = (): postgres.Sql => {
    const pool: postgres.Sql = postgres(databaseUrl, {
      max: options.max ?? 4,
      connect_timeout: 5,
      idle_timeout: 60,
      max_lifetime: 60 * 30,
      backoff: reconnectBackoff,
      onnotice: () => {},
      connection: { application_name: 'filegate' },
      ...(waiting ? { debug: waiting.handed } : {}),
      // Documented (https://github.com/porsager/postgres#custom-socket), missing from its types.
      ...({ socket: poolSockets(options.metrics, () => replaceStuck(pool)) } as object),
    })
    return pool
  }
  let sql = open()
  let closing = false
  /**
   * A connection of `stuck` is stuck (pool-watch.ts says how): the driver cannot be told to forget
   * it, so the pool is replaced, once; the old one finishes what it has and ends.
   */
  function replaceStuck(stuck: postgres.Sql) {
    if (closing || stuck !== sql) return
    sql = open()
    void stuck.end({ timeout: 5 }).catch(() => {})
  }

  return {
    transport: 'postgres',
    async call<T>(fn: string, args: CallArgs = {}): Promise<T> {
      const { text, params } = namedCallSql(fn, args)
      const call = waiting?.enter(text)
      try {
        // The call texts are a small fixed set (one per function and argument list): preparing
        // them saves the server a parse and plan on every call.
        const rows = await sql.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare: true })
        return (rows[0]?.v ?? null) as T
      } catch (err) {
        throw storeError(hideQueryDetails(err))
      } finally {
        call?.done()
      }
    },
    migrator: {
      async withLock(work) {
        let reserved: postgres.ReservedSql
        try {
          reserved = await sql.reserve()
        } catch (err) {
          if (isConnectionError(err)) throw databaseUnavailable(err)
          throw err
        }
        try {
          await reserved`select pg_advisory_lock(${migrationLockKey})`
          try {
            return await work({
              query: async (text, params = []) =>
                (await reserved.unsafe(text, params as postgres.ParameterOrJSON<never>[])) as never,
              transaction: async (statements, after) => {
                await reserved.unsafe('begin')
                try {
                  await reserved.unsafe(statements)
                  await reserved.unsafe(after.sql, after.params as postgres.ParameterOrJSON<never>[])
                  await reserved.unsafe('commit')
                } catch (err) {
                  await reserved.unsafe('rollback').catch(() => {})
                  throw err
                }
              },
            })
          } finally {
            await reserved`select pg_advisory_unlock(${migrationLockKey})`.catch(() => {})
          }
        } finally {
          reserved.release()
        }
      },
    },
    listen: (channel, handlers) => listenOnPostgres(databaseUrl, channel, handlers),
    async close() {
      closing = true
      await sql.end({ timeout: 5 })
    },
  }
}
