/**
 * Embedded default: PGlite (Postgres compiled to WASM) in this process, data under DATA_DIR.
 * One process owns the directory, so the migration "lock" is the process itself; PGlite
 * serialises queries on its single connection.
 */
import { mkdir } from 'node:fs/promises'
import { PGlite } from '@electric-sql/pglite'
import { type CallArgs, namedCallSql, type StorePort, storeError } from './port.js'

export async function createPgliteStore(dataDir: string | undefined): Promise<StorePort> {
  if (dataDir) await mkdir(dataDir, { recursive: true })
  const db = await PGlite.create(dataDir ? { dataDir } : {})
  return {
    transport: 'pglite',
    async call<T>(fn: string, args: CallArgs = {}): Promise<T> {
      const { text, params } = namedCallSql(fn, args)
      try {
        const result = await db.query<{ v: T }>(text, params)
        return (result.rows[0]?.v ?? null) as T
      } catch (err) {
        throw storeError(err)
      }
    },
    migrator: {
      withLock: (work) =>
        work({
          query: async (text, params = []) => (await db.query(text, params)).rows as never,
          transaction: async (statements, after) => {
            await db.transaction(async (tx) => {
              await tx.exec(statements)
              await tx.query(after.sql, after.params)
            })
          },
        }),
    },
    // One process owns the database: a notification is delivered in-process, and never lost.
    async listen(channel, handlers) {
      const unlisten = await db.listen(channel, (payload) => handlers.notify(payload))
      handlers.listening()
      return async () => {
        if (!db.closed) await unlisten()
      }
    },
    async close() {
      if (!db.closed) await db.close()
    },
  }
}
