/** Postgres transport (DATABASE_URL): the `postgres` driver, one pool per process. */
import postgres from 'postgres'
import { listenOnPostgres } from './listen.js'
import {
  type CallArgs,
  databaseUnavailable,
  isConnectionError,
  namedCallSql,
  type StorePort,
  storeError,
} from './port.js'

export const migrationLockKey = 7_261_019_301 // arbitrary, constant: pg_advisory_lock(bigint)

export function createPostgresStore(databaseUrl: string, options: { max?: number } = {}): StorePort {
  const sql = postgres(databaseUrl, {
    max: options.max ?? 4,
    connect_timeout: 5,
    idle_timeout: 60,
    max_lifetime: 60 * 30,
    onnotice: () => {},
    connection: { application_name: 'filegate' },
  })

  return {
    transport: 'postgres',
    async call<T>(fn: string, args: CallArgs = {}): Promise<T> {
      const { text, params } = namedCallSql(fn, args)
      try {
        // The call texts are a small fixed set (one per function and argument list): preparing
        // them saves the server a parse and plan on every call.
        const rows = await sql.unsafe(text, params as postgres.ParameterOrJSON<never>[], { prepare: true })
        return (rows[0]?.v ?? null) as T
      } catch (err) {
        throw storeError(err)
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
      await sql.end({ timeout: 5 })
    },
  }
}
