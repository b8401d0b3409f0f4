/**
 * The forwarding limit of the machine: a bare Node HTTP relay that hashes a request body as it
 * passes and pipes it unchanged to the fake provider, answering with the fake's answer. No
 * multipart parsing, no database, no limits: any service that forwards bytes over one more
 * loopback hop in Node pays at least this.
 */
import { createHash } from 'node:crypto'
import { createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'

const target = new URL(process.env.RELAY_TARGET ?? 'http://127.0.0.1:1/files')
const server = createServer((req, res) => {
  const hash = createHash('sha256')
  const upstream = request(
    {
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: target.pathname,
      headers: {
        'content-type': req.headers['content-type'] ?? 'application/octet-stream',
        'content-length': req.headers['content-length'] ?? '0',
        authorization: req.headers.authorization ?? '',
      },
    },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, { 'content-type': answer.headers['content-type'] ?? 'text/plain' })
      answer.pipe(res)
    },
  )
  upstream.on('error', () => res.destroy())
  req.on('data', (chunk: Buffer) => hash.update(chunk))
  req.pipe(upstream)
})
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo
  process.send?.({ ready: true, baseUrl: `http://127.0.0.1:${port}` })
})
process.on('disconnect', () => {
  server.close()
  process.exit(0)
})
