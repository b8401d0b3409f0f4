/**
 * The layers of the code and which way imports run between them (docs/architecture.md), as data,
 * and the check over the module graph that tests/unit/architecture.test.ts runs on the tree.
 * Every import counts: `import`, `import type`, `export … from`, `import()` and `import('…').T`
 * (TypeScript's own pre-processor reads them, so comments and strings are never taken for one).
 */
import { readdir, readFile } from 'node:fs/promises'
import { join, posix, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

export const layers = [
  'entry',
  'cli',
  'routes',
  'plugins',
  'domain',
  'store',
  'providers',
  'originals',
  'config',
  'kernel',
  'tools',
  'tests',
] as const
export type Layer = (typeof layers)[number]

/** The layer of a module: the first rule whose pattern matches its path from the repository root. */
export const layerRules: ReadonlyArray<{ layer: Layer; match: RegExp }> = [
  { layer: 'entry', match: /^src\/(app|server|migrate)\.ts$/ },
  { layer: 'cli', match: /^src\/cli\// },
  { layer: 'routes', match: /^routes\// },
  { layer: 'plugins', match: /^src\/(plugins\/|openapi\.ts$|tracing\.ts$|cors\.ts$|schema-compilers\.ts$)/ },
  { layer: 'domain', match: /^src\/domain\// },
  { layer: 'store', match: /^src\/store\// },
  { layer: 'providers', match: /^src\/providers\// },
  { layer: 'originals', match: /^src\/(originals|staging)\// },
  { layer: 'config', match: /^src\/config\.ts$/ },
  { layer: 'kernel', match: /^src\/(errors|schemas|spans|metrics|file-batches|tenant|audit-context)\.ts$/ },
  { layer: 'tools', match: /^(scripts|bench)\// },
  { layer: 'tests', match: /^tests\// },
]

const product: Layer[] = ['cli', 'routes', 'plugins', 'domain', 'store', 'providers', 'originals', 'config', 'kernel']

/** The layers each layer may import, besides its own. Everything else is a crossing. */
export const allowedImports: Readonly<Record<Layer, readonly Layer[]>> = {
  // The composition roots: they build the service from every part.
  entry: product,
  // The command line works on the database and the providers directly, without HTTP.
  cli: ['domain', 'store', 'providers', 'originals', 'config', 'kernel'],
  // A route reaches the rest only through the domain (and the errors, schemas and config types).
  routes: ['domain', 'config', 'kernel'],
  // Fastify wiring: plugins decorate the app with the domain's services and their ports.
  plugins: ['domain', 'store', 'providers', 'originals', 'config', 'kernel'],
  domain: ['store', 'providers', 'originals', 'config', 'kernel'],
  store: ['config', 'kernel'],
  providers: ['kernel'],
  originals: ['kernel'],
  // The configuration resolves each provider's documented facts and parses ORIGINALS_URL.
  config: ['providers', 'originals', 'kernel'],
  kernel: [],
  tools: ['entry', ...product, 'tests'],
  tests: [...layers],
}

/** Packages only some layers may use: Fastify is the HTTP layer's, the SQL drivers the store's. */
export const packageOwners: ReadonlyArray<{ match: RegExp; layers: readonly Layer[]; what: string }> = [
  {
    match: /^(fastify|fastify-plugin|@fastify\/[^/]+)$/,
    layers: ['entry', 'routes', 'plugins', 'tools', 'tests'],
    what: 'Fastify',
  },
  {
    match: /^(postgres|@electric-sql\/pglite|@supabase\/supabase-js)$/,
    layers: ['store', 'tools', 'tests'],
    what: 'a database driver',
  },
]

/** The directories whose modules make up the graph. */
export const graphRoots = ['src', 'routes', 'scripts', 'bench', 'tests']

/** A module and what it imports: relative imports as repository paths (`.js` read as `.ts`), packages by name. */
export interface ModuleNode {
  path: string
  imports: string[]
}

export function layerOf(path: string): Layer | undefined {
  return layerRules.find((rule) => rule.match.test(path))?.layer
}

/** Every module specifier in a TypeScript source. */
export function specifiersOf(source: string): string[] {
  return ts.preProcessFile(source, true, true).importedFiles.map((f) => f.fileName)
}

/** A relative specifier as a repository path (`../store/port.js` → `src/store/port.ts`); a package by its name. */
export function resolveSpecifier(from: string, specifier: string): string {
  if (!specifier.startsWith('.')) {
    const parts = specifier.split('/')
    return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] as string)
  }
  return posix.join(posix.dirname(from), specifier).replace(/\.js$/, '.ts')
}

const isPackage = (target: string) => !/^(src|routes|scripts|bench|tests)\//.test(target)

/** One import that runs the wrong way, or a module no layer claims. */
export interface Crossing {
  from: string
  to: string
  why: string
}

/** The route area of a module (`routes/files/index.ts` → `files`); undefined for the shared routes/*.ts. */
const routeArea = (path: string) => /^routes\/([^/]+)\//.exec(path)?.[1]

function crossingOf(from: string, fromLayer: Layer, to: string): string | undefined {
  if (to.startsWith('node:')) return undefined
  if (isPackage(to)) {
    const owner = packageOwners.find((o) => o.match.test(to))
    return owner && !owner.layers.includes(fromLayer) ? `${fromLayer} may not use ${owner.what} (${to})` : undefined
  }
  const toLayer = layerOf(to)
  if (!toLayer) return `${to} is in no layer (scripts/architecture.ts layerRules)`
  if (toLayer !== fromLayer && !allowedImports[fromLayer].includes(toLayer)) {
    return `${fromLayer} may not import ${toLayer}`
  }
  // One HTTP face never reaches into another: what several share sits beside routes/intake.ts.
  if (fromLayer === 'routes' && toLayer === 'routes' && routeArea(to) && routeArea(to) !== routeArea(from)) {
    return `routes/${routeArea(from) ?? '*.ts'} may not import routes/${routeArea(to)}: share it at routes/ top level`
  }
  return undefined
}

/** The crossings of a graph: every import that runs the wrong way, every module in no layer. */
export function crossings(graph: readonly ModuleNode[]): Crossing[] {
  const found: Crossing[] = []
  for (const node of graph) {
    const fromLayer = layerOf(node.path)
    if (!fromLayer) {
      found.push({
        from: node.path,
        to: node.path,
        why: `${node.path} is in no layer (scripts/architecture.ts layerRules)`,
      })
      continue
    }
    for (const to of new Set(node.imports)) {
      const why = crossingOf(node.path, fromLayer, to)
      if (why) found.push({ from: node.path, to, why })
    }
  }
  return found
}

async function* typeScriptFiles(dir: string): AsyncGenerator<string> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue
    const path = join(dir, entry.name)
    if (entry.isDirectory()) yield* typeScriptFiles(path)
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) yield path
  }
}

/** The module graph of the repository at `root`. */
export async function moduleGraph(root: string): Promise<ModuleNode[]> {
  const graph: ModuleNode[] = []
  for (const top of graphRoots) {
    for await (const file of typeScriptFiles(join(root, top))) {
      const path = relative(root, file).split(sep).join('/')
      const source = await readFile(file, 'utf8')
      graph.push({ path, imports: specifiersOf(source).map((s) => resolveSpecifier(path, s)) })
    }
  }
  return graph
}

/** Where the repository is when this module runs from it. */
export const repositoryRoot = fileURLToPath(new URL('..', import.meta.url))
