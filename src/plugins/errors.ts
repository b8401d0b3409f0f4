/**
 * The one error handler: every error leaves as RFC 9457 problem+json with a catalogue code.
 * Fastify's own errors (schema validation, content type, multipart limits, body size) are
 * translated here; anything unknown is a 500 whose detail says nothing about internals.
 */
import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { AppError, type ErrorCode, isAppError, toProblem } from '../errors.js'

const fastifyCodes: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'VALIDATION_FAILED',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'VALIDATION_FAILED',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'VALIDATION_FAILED',
  FST_ERR_CTP_INVALID_JSON_BODY: 'VALIDATION_FAILED',
  FST_ERR_CTP_BODY_TOO_LARGE: 'VALIDATION_FAILED',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'VALIDATION_FAILED',
  FST_PROTO_VIOLATION: 'VALIDATION_FAILED',
  FST_PARTS_LIMIT: 'VALIDATION_FAILED',
  FST_FIELDS_LIMIT: 'VALIDATION_FAILED',
  FST_FILES_LIMIT: 'TOO_MANY_FILES',
  FST_REQ_FILE_TOO_LARGE: 'FILE_TOO_LARGE',
}

/** Maps any thrown value to an AppError (the catalogue's view of it). */
export function asAppError(err: unknown): AppError {
  if (isAppError(err)) return err
  const e = err as Partial<FastifyError> & { validation?: unknown[]; validationContext?: string }
  if (e?.validation) {
    return new AppError('VALIDATION_FAILED', {
      detail: e.message ?? 'Request validation failed',
      extensions: {
        errors: (e.validation as Array<{ instancePath?: string; message?: string; params?: unknown }>).map((v) => ({
          in: e.validationContext,
          path: v.instancePath ?? '',
          message: v.message ?? 'invalid',
        })),
      },
    })
  }
  const mapped = e?.code ? fastifyCodes[e.code] : undefined
  if (mapped) return new AppError(mapped, { detail: e.message ?? undefined })
  if (e?.statusCode === 429) return new AppError('RATE_LIMITED')
  if (e?.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
    return new AppError('VALIDATION_FAILED', { detail: e.message ?? 'Bad request' })
  }
  return new AppError('INTERNAL', { detail: 'An unexpected error occurred; see the server log with this request id' })
}

export function sendProblem(reply: FastifyReply, request: FastifyRequest, err: AppError) {
  const problem = toProblem(err, String(request.id))
  return reply.code(problem.status).headers(problem.headers).send(problem.body)
}

/**
 * Fastify's clientErrorHandler: a connection failed before a request could be handled (the head or
 * the body was not received within REQUEST_TIMEOUT_MS, or could not be parsed). Where nothing of a
 * response has been written yet, the client gets a problem+json answer; the connection is then
 * destroyed, which also aborts a handler still reading that body (its spool file and claim are
 * released on that path).
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage
  if (socket.writable && !inFlight?.headersSent) {
    const appErr =
      err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new AppError('REQUEST_TIMEOUT', { detail: 'The request was not received within REQUEST_TIMEOUT_MS' })
        : new AppError('VALIDATION_FAILED', { detail: 'The request could not be parsed' })
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
  }
  socket.destroy(err)
}

/** How one HTTP face renders an error (problem+json by default; the OpenAI facade its own body). */
export type ErrorFace = (request: FastifyRequest, reply: FastifyReply, err: AppError) => FastifyReply

export interface ErrorsPluginOptions {
  /** Faces by path prefix, for what no route of theirs handles: unknown paths and malformed URLs. */
  faces?: Array<{ prefix: string; send: ErrorFace }>
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The one error path, for errors raised before routing (Fastify's frameworkErrors). */
    sendError(err: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply
  }
}

const problemFace: ErrorFace = (request, reply, err) => sendProblem(reply, request, err)

export default fp(
  async function errorsPlugin(app: FastifyInstance, opts: ErrorsPluginOptions) {
    const faceOf = (url: string) => opts.faces?.find((f) => url.startsWith(f.prefix))?.send ?? problemFace
    const sendError = (err: unknown, request: FastifyRequest, reply: FastifyReply) => {
      const appErr = asAppError(err)
      if (appErr.status >= 500) {
        request.log.error({ err, code: appErr.code }, 'request failed')
      } else {
        request.log.info({ code: appErr.code, detail: appErr.detail }, 'request refused')
      }
      if (appErr.code === 'UNAUTHORIZED') reply.header('www-authenticate', 'Bearer realm="filegate"')
      return faceOf(request.url)(request, reply, appErr)
    }
    app.decorate('sendError', sendError)
    app.setErrorHandler(sendError)
    app.setNotFoundHandler((request, reply) =>
      faceOf(request.url)(
        request,
        reply,
        new AppError('NOT_FOUND', { detail: `No route ${request.method} ${request.url.slice(0, 200)}` }),
      ),
    )
  },
  { name: 'filegate-errors' },
)
