/** A throwaway Postgres database per bench run, created here and dropped at the end. */
import { randomBytes } from 'node:crypto'
import postgres from 'postgres'

export const adminUrl = process.env.BENCH_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'

export interface BenchDatabase {
  name: string
  url: string
  sql: postgres.Sql
  drop(): Promise<void>
}

export async function createBenchDatabase(label: string): Promise<BenchDatabase> {
  const name = `filegate_bench_${label}_${process.pid}_${randomBytes(3).toString('hex')}`
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} })
  try {
    await admin.unsafe(`create database ${name}`)
  } finally {
    await admin.end()
  }
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  const sql = postgres(url.toString(), { max: 2, onnotice: () => {} })
  return {
    name,
    url: url.toString(),
    sql,
    async drop() {
      await sql.end({ timeout: 1 })
      const dropper = postgres(adminUrl, { max: 1, onnotice: () => {} })
      try {
        await dropper.unsafe(`drop database if exists ${name} with (force)`)
      } finally {
        await dropper.end()
      }
    },
  }
}
