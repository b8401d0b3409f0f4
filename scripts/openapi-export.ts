/**
 * `npm run openapi:export`: writes openapi.yaml from the route schemas. The app is built exactly
 * as the server builds it and asked for its document: the same object /openapi.json serves.
 * `--check` compares instead of writing. The document comes from the routes alone: the app is given
 * no database (a store whose every call fails), so building it needs no cluster (an in-memory PGlite
 * cost seconds of CPU per document) and a route that queried the database while being built would
 * fail the export.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { stringify } from 'yaml'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config.js'
import type { StorePort } from '../src/store/port.js'

export const openApiPath = resolve(fileURLToPath(new URL('..', import.meta.url)), 'openapi.yaml')

const header = '# Generated from the route schemas by `npm run openapi:export`. Do not edit by hand.\n'

/** The app with a fixed configuration, so the document does not depend on the environment. */
export async function withDocumentApp<T>(work: (app: FastifyInstance) => Promise<T>): Promise<T> {
  const store: StorePort = {
    transport: 'pglite',
    call: (fn) => Promise.reject(new Error(`the API document is built without a database, yet ${fn} was called`)),
    close: async () => {},
  }
  const config = loadConfig({ LOG_LEVEL: 'silent', CLEANUP_ENABLED: 'false', RATE_LIMIT_PER_MINUTE: '0' })
  const app = await buildApp(config, { store, logger: false })
  try {
    await app.ready()
    return await work(app)
  } finally {
    await app.close()
    await store.close()
  }
}

/** The document as YAML: no anchors (each operation reads on its own), no folded lines. */
export const toYaml = (document: unknown) =>
  header + stringify(document, { aliasDuplicateObjects: false, lineWidth: 0 })

export const generateOpenApiYaml = () => withDocumentApp(async (app) => toYaml(app.swagger()))

async function main() {
  const generated = await generateOpenApiYaml()
  if (process.argv.includes('--check')) {
    const committed = await readFile(openApiPath, 'utf8').catch(() => '')
    if (committed !== generated) {
      process.stderr.write('openapi.yaml is out of date: run npm run openapi:export and commit it\n')
      process.exit(1)
    }
    process.stdout.write('openapi.yaml is up to date\n')
    return
  }
  await writeFile(openApiPath, generated)
  process.stdout.write(`wrote ${openApiPath}\n`)
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    process.stderr.write(`openapi:export failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  })
}
