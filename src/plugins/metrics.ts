/**
 * Exposes the metrics registry: `/metrics` on the app (route in routes/metrics), the HTTP
 * duration histogram labelled by route template, and optionally a second listener on
 * METRICS_PORT so scrapes never queue behind uploads.
 */
import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { errors, toProblem } from '../errors.js'
import type { Metrics } from '../metrics.js'
import { bearerToken, knownKeys, matchKey } from './auth.js'

/**
 * With METRICS_TOKEN set, a scrape must send it as a bearer token (Prometheus `authorization`
 * in its scrape config); compared by SHA-256 digest in constant time, as API keys are.
 */
export function metricsAccess(tokenSha256: string | undefined): (authorization: string | undefined) => boolean {
  if (tokenSha256 === undefined) return () => true
  const keys = knownKeys([{ tenant: 'metrics', keySha256: tokenSha256 }])
  return (authorization) => {
    const token = bearerToken(authorization)
    return token !== undefined && matchKey(keys, token) !== undefined
  }
}

const metricsUnauthorized = () => errors.unauthorized('Send Authorization: Bearer <METRICS_TOKEN> to read /metrics')

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

export default fp(
  async function metricsPlugin(
    app: FastifyInstance,
    opts: { metrics: Metrics; port: number | undefined; host: string; tokenSha256: string | undefined },
  ) {
    const { metrics } = opts
    app.decorate('metrics', metrics)
    const allowed = metricsAccess(opts.tokenSha256)

    app.addHook('onRequest', (request, _reply, done) => {
      if (request.routeOptions.url === '/metrics' && !allowed(request.headers.authorization)) {
        done(metricsUnauthorized())
        return
      }
      done()
    })

    app.addHook('onResponse', (request, reply, done) => {
      // Unmatched paths share one label so scanners cannot blow up cardinality.
      const route = request.routeOptions.url ?? 'unmatched'
      metrics.httpDuration.observe(
        { method: request.method, route, status_code: String(reply.statusCode) },
        reply.elapsedTime / 1000,
      )
      done()
    })

    if (opts.port !== undefined) {
      let closing = false
      const server: Server = createServer(async (req, res) => {
        // As on the API port: once closing, a scrape's keep-alive connection must not hold the exit.
        res.once('finish', () => {
          if (closing) setImmediate(() => server.closeIdleConnections())
        })
        if (req.method === 'GET' && req.url?.split('?')[0] === '/metrics') {
          if (!allowed(req.headers.authorization)) {
            const problem = toProblem(metricsUnauthorized(), randomUUID())
            if (closing) res.setHeader('connection', 'close')
            res.writeHead(problem.status, problem.headers)
            res.end(JSON.stringify(problem.body))
            return
          }
          const text = await metrics.registry.metrics()
          if (closing) res.setHeader('connection', 'close')
          res.writeHead(200, { 'content-type': metrics.registry.contentType })
          res.end(text)
        } else {
          if (closing) res.setHeader('connection', 'close')
          res.writeHead(404).end()
        }
      })
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(opts.port, opts.host, () => resolve())
      })
      app.log.info({ port: (server.address() as { port: number }).port }, 'metrics listener started')
      app.addHook('onClose', async () => {
        closing = true
        const closed = new Promise<void>((resolve) => server.close(() => resolve()))
        server.closeIdleConnections()
        await closed
      })
    }
  },
  { name: 'filegate-metrics' },
)
