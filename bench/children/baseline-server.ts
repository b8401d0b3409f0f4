/**
 * The framework limit for small uploads: bare Fastify + @fastify/multipart whose handler only
 * hashes the file part and answers 200. Same multipart limits as filegate, no logging.
 *
 * With BASELINE_DATABASE_URL set, the handler also makes the one lookup a dedup hit needs: the
 * hash looked up in filegate's own table through its (tenant_id, sha256) index, with postgres.js
 * (a pool of 4, statements prepared), answering 200 with the row's id, 404 when there is none.
 * That is the floor under any service that hashes an upload and asks Postgres about it.
 */
import { createHash } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import multipart from '@fastify/multipart'
import Fastify from 'fastify'
import postgres from 'postgres'

const databaseUrl = process.env.BASELINE_DATABASE_URL
const tenant = process.env.BASELINE_TENANT ?? 'bench'
const sql = databaseUrl ? postgres(databaseUrl, { max: 4, onnotice: () => {} }) : undefined

const app = Fastify({ logger: false })
await app.register(multipart, { limits: { fields: 10, files: 1, parts: 12, fieldSize: 8 * 1024 } })
app.post('/v1/files', async (request, reply) => {
  let sha256 = ''
  let bytes = 0
  for await (const part of request.parts()) {
    if (part.type !== 'file') continue
    const hash = createHash('sha256')
    for await (const chunk of part.file) {
      bytes += (chunk as Buffer).length
      hash.update(chunk as Buffer)
    }
    sha256 = hash.digest('hex')
  }
  if (!sql) return { sha256, bytes }
  const [row] = await sql<Array<{ id: string }>>`
    select id from provider_file_uploads where tenant_id = ${tenant} and sha256 = ${sha256} limit 1`
  if (!row) return reply.code(404).send({ sha256, bytes })
  return { id: row.id, sha256, bytes }
})
await app.listen({ host: '127.0.0.1', port: 0 })
const { port } = app.server.address() as AddressInfo
process.send?.({ ready: true, baseUrl: `http://127.0.0.1:${port}` })
process.on('disconnect', () => {
  void app
    .close()
    .then(() => sql?.end({ timeout: 1 }))
    .finally(() => process.exit(0))
})
