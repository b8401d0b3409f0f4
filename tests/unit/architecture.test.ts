/**
 * The layers of docs/architecture.md hold: no import in the tree crosses a layer the wrong way
 * (scripts/architecture.ts holds the table), every module is in a layer, and the document names
 * every layer. The check itself is shown to fail on graphs with each kind of crossing.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import {
  crossings,
  layers,
  type ModuleNode,
  moduleGraph,
  repositoryRoot,
  resolveSpecifier,
  specifiersOf,
} from '../../scripts/architecture.js'

/** A graph of one module, its imports written as its source would write them. */
const moduleOf = (path: string, source: string): ModuleNode => ({
  path,
  imports: specifiersOf(source).map((s) => resolveSpecifier(path, s)),
})

const whys = (graph: ModuleNode[]) => crossings(graph).map((c) => `${c.from} -> ${c.to}: ${c.why}`)

describe('architecture', () => {
  test('no import in the tree crosses a layer the wrong way, and every module is in a layer', async () => {
    const graph = await moduleGraph(repositoryRoot)
    assert.ok(graph.length > 100, `the graph was read (${graph.length} modules)`)
    assert.ok(graph.some((m) => m.path === 'src/store/queries.ts'))
    assert.deepEqual(whys(graph), [])
  })

  test('every kind of import is read: import type, export from, import(), import().T, in any layout', () => {
    const source = [
      "import type { FileRow } from '../domain/file-record.js'",
      "export { mapBounded } from './sweep-batches.js'",
      "export * from '../providers/types.js'",
      "const { createPgliteStore } = await import('./pglite.js')",
      "type C = import('../config.js').Config",
      'import {',
      '  a,',
      "} from 'fastify'",
      "// import { x } from '../routes/nowhere.js'",
      'const s = "import { y } from \'../plugins/auth.js\'"',
    ].join('\n')
    assert.deepEqual(moduleOf('src/store/x.ts', source).imports.sort(), [
      'fastify',
      'src/config.ts',
      'src/domain/file-record.ts',
      'src/providers/types.ts',
      'src/store/pglite.ts',
      'src/store/sweep-batches.ts',
    ])
  })

  test('fails on a crafted graph with each kind of crossing', () => {
    const graph = [
      // the store reaching up into the domain (a type is enough)
      moduleOf('src/store/queries.ts', "import type { FileRow } from '../domain/file-record.js'"),
      // a route talking to a provider module, and to the store
      moduleOf('routes/openai/index.ts', "import { classifyFailure } from '../../src/providers/errors.js'"),
      moduleOf('routes/health/index.ts', "import { schemaVersion } from '../../src/store/queries.js'"),
      // one HTTP face importing another's internals
      moduleOf('routes/openai/index.ts', "import { sendContent } from '../files/content-reply.js'"),
      // the domain importing Fastify, a route and a plugin
      moduleOf('src/domain/files.ts', "import type { FastifyReply } from 'fastify'"),
      moduleOf('src/domain/reads.ts', "const r = await import('../../routes/intake.js')"),
      moduleOf('src/domain/limits.ts', "export { x } from '../plugins/auth.js'"),
      // a provider importing the domain; SQL outside the store; a plugin importing a route
      moduleOf('src/providers/kimi.ts', "import type { Uploads } from '../domain/uploads.js'"),
      moduleOf('src/domain/spool.ts', "import postgres from 'postgres'"),
      moduleOf('src/plugins/errors.ts', "import { toOpenAiFile } from '../../routes/openai/index.js'"),
      // a module no layer claims
      moduleOf('src/audit.ts', "import { errors } from './errors.js'"),
    ]
    assert.deepEqual(whys(graph), [
      'src/store/queries.ts -> src/domain/file-record.ts: store may not import domain',
      'routes/openai/index.ts -> src/providers/errors.ts: routes may not import providers',
      'routes/health/index.ts -> src/store/queries.ts: routes may not import store',
      'routes/openai/index.ts -> routes/files/content-reply.ts: routes/openai may not import routes/files: share it at routes/ top level',
      'src/domain/files.ts -> fastify: domain may not use Fastify (fastify)',
      'src/domain/reads.ts -> routes/intake.ts: domain may not import routes',
      'src/domain/limits.ts -> src/plugins/auth.ts: domain may not import plugins',
      'src/providers/kimi.ts -> src/domain/uploads.ts: providers may not import domain',
      'src/domain/spool.ts -> postgres: domain may not use a database driver (postgres)',
      'src/plugins/errors.ts -> routes/openai/index.ts: plugins may not import routes',
      'src/audit.ts -> src/audit.ts: src/audit.ts is in no layer (scripts/architecture.ts layerRules)',
    ])
  })

  test('the allowed directions pass: route to domain, shared route modules, domain to store and providers', () => {
    const graph = [
      moduleOf('routes/openai/index.ts', "import { sendContent } from '../content-reply.js'"),
      moduleOf('routes/files/index.ts', "import originalsRoutes from './originals.js'"),
      moduleOf('routes/content-reply.ts', "import type { FileContent } from '../src/domain/files.js'"),
      moduleOf('src/domain/reads.ts', "import { getFile } from '../store/queries.js'\nimport 'node:fs'"),
      moduleOf('src/domain/limits.ts', "import { effectiveMaxBytes } from '../providers/catalog.js'"),
      moduleOf('src/app.ts', "import filesRoutes from '../routes/files/index.js'"),
      moduleOf('src/store/queries.ts', "import type { FileRow } from './rows.js'"),
    ]
    assert.deepEqual(whys(graph), [])
  })

  test('docs/architecture.md names every layer', async () => {
    const doc = await readFile(join(repositoryRoot, 'docs', 'architecture.md'), 'utf8')
    for (const layer of layers) assert.match(doc, new RegExp(`\\| \\*\\*${layer}\\*\\* \\|`), `the ${layer} row`)
  })
})
