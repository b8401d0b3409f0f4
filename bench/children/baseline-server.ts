/**
 * The framework limit for small uploads: bare Fastify + @fastify/multipart whose handler only
 * hashes the file part and answers 200. Same multipart limits as filegate, no logging.
 */
import { createHash } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import multipart from '@fastify/multipart'
import Fastify from 'fastify'

const app = Fastify({ logger: false })
await app.register(multipart, { limits: { fields: 10, files: 1, parts: 12, fieldSize: 8 * 1024 } })
app.post('/v1/files', async (request) => {
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
  return { sha256, bytes }
})
await app.listen({ host: '127.0.0.1', port: 0 })
const { port } = app.server.address() as AddressInfo
process.send?.({ ready: true, baseUrl: `http://127.0.0.1:${port}` })
process.on('disconnect', () => {
  void app.close().finally(() => process.exit(0))
})
