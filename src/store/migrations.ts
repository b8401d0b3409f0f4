/**
 * Forward-only migration runner over plain SQL files in `migrations/` (NNNN_name.sql).
 * Applied under the transport's lock, each file in its own transaction with its bookkeeping
 * row, so replicas starting together apply each file exactly once. A file that changed after
 * it was applied is an error: fix forward with a new file.
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { databaseUnavailable, isConnectionError, type MigrationTarget } from './port.js'

export interface Migration {
  version: number
  name: string
  sql: string
  checksum: string
}

/** Finds `migrations/` from this module whether it runs from src/ (tsx) or dist/ (built). */
export function findMigrationsDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'migrations')
    if (existsSync(join(dir, 'package.json')) && existsSync(candidate)) return candidate
    dir = dirname(dir)
  }
  throw new Error('migrations/ directory not found next to package.json')
}

export async function loadMigrations(dir = findMigrationsDir()): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort()
  return Promise.all(
    files.map(async (file) => {
      const sql = await readFile(join(dir, file), 'utf8')
      return {
        version: Number.parseInt(file.slice(0, 4), 10),
        name: file.replace(/\.sql$/, ''),
        sql,
        checksum: createHash('sha256').update(sql).digest('hex'),
      }
    }),
  )
}

export const latestVersion = (migrations: Migration[]) => Math.max(0, ...migrations.map((m) => m.version))

export interface MigrationResult {
  applied: string[]
  version: number
}

export async function applyMigrations(target: MigrationTarget, migrations: Migration[]): Promise<MigrationResult> {
  return target.withLock(async (session) => {
    await session.query(`create table if not exists filegate_schema_migrations (
      version integer primary key, name text not null, checksum text not null,
      applied_at timestamptz not null default now())`)
    const rows = await session.query<{ version: number; name: string; checksum: string }>(
      'select version, name, checksum from filegate_schema_migrations order by version',
    )
    const done = new Map(rows.map((r) => [Number(r.version), r]))
    const applied: string[] = []
    for (const m of migrations) {
      const previous = done.get(m.version)
      if (previous) {
        if (previous.checksum !== m.checksum) {
          throw new Error(`migration ${m.name} changed after it was applied; add a new migration instead`)
        }
        continue
      }
      try {
        await session.transaction(m.sql, {
          sql: 'insert into filegate_schema_migrations (version, name, checksum) values ($1, $2, $3)',
          params: [m.version, m.name, m.checksum],
        })
      } catch (err) {
        // A lost connection is waited for; a migration that fails on its own SQL stops start-up, named.
        if (isConnectionError(err)) throw databaseUnavailable(err)
        throw new Error(`migration ${m.name} failed: ${(err as Error).message}`, { cause: err })
      }
      applied.push(m.name)
    }
    return { applied, version: latestVersion(migrations) }
  })
}
