/**
 * `npm run openapi:types`: TypeScript types for a client of openapi.yaml (openapi-typescript),
 * written to tests/.generated/filegate-api.d.ts (not committed) for the typed-client test and
 * anyone who wants to see what a generated client gets. `format: binary` becomes `Blob`, as
 * openapi-typescript's docs suggest for multipart uploads, so a File can be passed as is.
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import openapiTS, { astToString } from 'openapi-typescript'
import ts from 'typescript'

const root = fileURLToPath(new URL('..', import.meta.url))
export const typesPath = resolve(root, 'tests/.generated/filegate-api.d.ts')

const BLOB = ts.factory.createTypeReferenceNode(ts.factory.createIdentifier('Blob'))

export async function generateClientTypes(source: URL = pathToFileURL(resolve(root, 'openapi.yaml'))) {
  const ast = await openapiTS(source, {
    silent: true,
    transform: (schema) => (schema.format === 'binary' ? BLOB : undefined),
  })
  return `/** Generated from openapi.yaml by \`npm run openapi:types\`. Do not edit. */\n${astToString(ast)}`
}

async function main() {
  await mkdir(dirname(typesPath), { recursive: true })
  await writeFile(typesPath, await generateClientTypes())
  process.stdout.write(`wrote ${typesPath}\n`)
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    process.stderr.write(`openapi:types failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  })
}
