/**
 * The one error handler: every error is mapped by src/errors.ts (catalogue code, log level,
 * headers) and rendered by the face of its path: RFC 9457 problem+json by default, the OpenAI
 * error body under /providers/. Also the answer to unknown paths, malformed URLs and connections
 * that failed before a request could be handled.
 */
import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AppError, asAppError, errors, logFailure, toProblem } from '../errors.js'

/** Kept for routes/files/upload-form.ts until it imports the mapper from src/errors.ts. */

/**
 * Fastify's clientErrorHandler: a connection failed before a request could be handled (the head or
 * the body was not received within REQUEST_TIMEOUT_MS, or could not be parsed). Where nothing of a
 * response has been written yet, the client gets a problem+json answer; the connection is then
 * destroyed, which also aborts a handler still reading that body (its spool file and claim are
 * released on that path). A head larger than Node's limit (16 KiB: an oversized Authorization
 * header, say) is 431 (RFC 6585 §5); the rest of that head is read and dropped for a moment before
 * the connection closes, so that the client reads the answer rather than a reset.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage
  if (socket.writable && !inFlight?.headersSent) {
    const appErr =
      err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? errors.requestTimeout('The request was not received within REQUEST_TIMEOUT_MS')
        : err.code === 'HPE_HEADER_OVERFLOW'
          ? new AppError('HEADERS_TOO_LARGE', { detail: 'The request head is larger than 16 KiB' })
          : errors.validationFailed('The request could not be parsed')
    const problem = toProblem(appErr, randomUUID())
    const body = JSON.stringify(problem.body)
    const headers = Object.entries({
      ...problem.headers,
      connection: 'close',
      'content-length': Buffer.byteLength(body),
    })
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('')
    socket.write(`HTTP/1.1 ${problem.status} ${appErr.title}\r\n${headers}\r\n${body}`)
    if (appErr.code === 'HEADERS_TOO_LARGE') {
      socket.end()
      socket.resume()
      setTimeout(() => socket.destroy(), 1000).unref()
      return
    }
  }
  socket.destroy(err)
}

/** How one HTTP face renders an error already mapped (status, headers and body; nothing else). */
export type ErrorFace = (request: FastifyRequest, reply: FastifyReply, err: AppError) => FastifyReply

export interface ErrorsPluginOptions {
  /** Faces by path prefix: every error under it (its routes', unknown paths, malformed URLs). */
  faces?: Array<{ prefix: string; send: ErrorFace }>
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The one error path, for errors raised before routing (Fastify's frameworkErrors). */
    sendError(err: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply
  }
}

/** The default face: RFC 9457 problem+json. */
const problemFace: ErrorFace = (request, reply, err) => {
  const problem = toProblem(err, String(request.id))
  return reply.code(problem.status).headers(problem.headers).send(problem.body)
}

export default fp(
  async function errorsPlugin(app: FastifyInstance, opts: ErrorsPluginOptions) {
    const faceOf = (url: string) => opts.faces?.find((f) => url.startsWith(f.prefix))?.send ?? problemFace
    const sendError = (err: unknown, request: FastifyRequest, reply: FastifyReply) => {
      const appErr = asAppError(err)
      logFailure(request.log, err, appErr)
      return faceOf(request.url)(request, reply, appErr)
    }
    app.decorate('sendError', sendError)
    app.setErrorHandler(sendError)
    app.setNotFoundHandler((request, reply) =>
      faceOf(request.url)(request, reply, errors.notFound(`No route ${request.method} ${request.url.slice(0, 200)}`)),
    )
  },
  { name: 'filegate-errors' },
)
