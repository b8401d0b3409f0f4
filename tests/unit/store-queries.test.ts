/**
 * The typed queries are the one place that names SQL functions: no other module under src/ or
 * routes/ spells the name of a function migrations/ defines, and every name the queries spell is
 * one migrations/ defines (a typo would otherwise surface only when that path runs).
 */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { describe, it } from 'node:test'

const root = join(import.meta.dirname, '..', '..')
const queriesModule = 'src/store/queries.ts'

function sourceFiles(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => relative(root, join(e.parentPath, e.name)))
}

const migrations = readdirSync(join(root, 'migrations'))
  .filter((f) => f.endsWith('.sql'))
  .map((f) => readFileSync(join(root, 'migrations', f), 'utf8'))
  .join('\n')
const sqlFunctions = new Set(
  [...migrations.matchAll(/create\s+(?:or\s+replace\s+)?function\s+(?:public\.)?([a-z_][a-z0-9_]*)/gi)].map((m) =>
    (m[1] as string).toLowerCase(),
  ),
)
/** A string literal holding one identifier, as a name passed to store.call would be (comments may name functions). */
const quotedNames = (text: string) => [...text.matchAll(/(['"])([a-z_][a-z0-9_]*)\1/g)].map((m) => m[2] as string)

describe('typed queries', () => {
  it('migrations define the functions the service calls', () => {
    assert.ok(
      sqlFunctions.has('claim_upload') && sqlFunctions.has('filegate_schema_version'),
      [...sqlFunctions].join(' '),
    )
  })

  it('no module but src/store/queries.ts names a SQL function', () => {
    const offenders: string[] = []
    for (const file of [...sourceFiles('src'), ...sourceFiles('routes')]) {
      if (file === queriesModule) continue
      const text = readFileSync(join(root, file), 'utf8')
      for (const name of quotedNames(text)) if (sqlFunctions.has(name)) offenders.push(`${file}: ${name}`)
    }
    assert.deepEqual(offenders, [])
  })

  it('every SQL function the queries call is defined by a migration', () => {
    const text = readFileSync(join(root, queriesModule), 'utf8')
    const called = [
      ...text.matchAll(/(?:call|batch)(?:<[^>]*>)?\(\s*'([a-z0-9_]+)'/g),
      ...text.matchAll(/traced(?:<[^>]*>)?\(store, '[^']*', \w+, '([a-z0-9_]+)'/g),
    ].map((m) => m[1] as string)
    const viaVariable = [...text.matchAll(/\?\s*'([a-z0-9_]+)'\s*:\s*'([a-z0-9_]+)'/g)].flatMap((m) => [
      m[1] as string,
      m[2] as string,
    ])
    const names = [...called, ...viaVariable]
    assert.ok(new Set(names).size >= 30, `found ${names.length} calls in ${queriesModule}`)
    assert.deepEqual(
      names.filter((n) => !sqlFunctions.has(n)),
      [],
    )
  })
})
