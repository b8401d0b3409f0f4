/**
 * A request body's framing must cost no more than its bytes. Node's HTTP parser hands each chunk of
 * a chunked body (each read of any body) to JavaScript one by one: 1 MB sent in 1-byte chunks (6 MB
 * on the wire) was a million calls, 5 s of CPU, through the parser, the multipart parser and the
 * hash, while every other tenant's requests waited; and a body nobody reads (a 401, a 404) is read
 * to its end all the same, to keep the connection.
 *
 * So every request's body chunks are counted from the first, as the parser pushes them (the
 * request stream's push, wrapped as the request arrives: it also sees the chunks Node reads to
 * discard an unread body). Past `chunkAllowance` chunks they must average `minAverageChunkBytes` or
 * more. One that does not is refused at once: reading stops (the parser finishes at most the read
 * it is in), an upload being received answers 400 VALIDATION_FAILED (routes/intake.ts), and any
 * other request's connection is closed. At that floor a body costs about twice what the same bytes
 * cost in large chunks; a refused one costs the few thousand chunks read before it was refused.
 *
 * A request answered before its body was read (a 401, a 404, a refusal) closes its connection: Node
 * would otherwise read the rest of the body to keep the connection, chunk by chunk, unseen.
 */
import type { IncomingMessage } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { AppError } from '../src/errors.js'

export const minAverageChunkBytes = 64
export const chunkAllowance = 1024

const refused = Symbol('filegate.framingRefused')
const listener = Symbol('filegate.framingListener')

interface Watched {
  [refused]?: AppError
  [listener]?: (err: AppError) => void
}

/** Counts the body chunks of every request `app` receives (call once, before any plugin or route). */
export function guardBodyFraming(app: FastifyInstance): void {
  // Before Fastify's own listener: the wrapper is in place before the parser pushes the first chunk
  // that follows the head.
  app.server.prependListener('request', (req: IncomingMessage) => watch(req))
  app.addHook('onSend', (request, reply, payload, done) => {
    if (!request.raw.complete && hasBody(request.raw)) reply.header('connection', 'close')
    done(null, payload)
  })
}

const hasBody = (req: IncomingMessage) =>
  req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0

function watch(req: IncomingMessage): void {
  const push = req.push
  let chunks = 0
  let bytes = 0
  req.push = function countedPush(chunk: unknown, encoding?: BufferEncoding): boolean {
    const watched = req as IncomingMessage & Watched
    if (chunk !== null && !watched[refused]) {
      chunks++
      bytes += (chunk as Buffer).length
      if (chunks > chunkAllowance && bytes < chunks * minAverageChunkBytes) refuse(req, chunks, bytes)
    }
    // Once refused, nothing more is taken in: false makes the parser stop reading the socket.
    if (watched[refused] && chunk !== null) return false
    return push.call(this, chunk, encoding)
  }
}

function refuse(req: IncomingMessage, chunks: number, bytes: number): void {
  const watched = req as IncomingMessage & Watched
  const err = new AppError('VALIDATION_FAILED', {
    detail: `The body arrives in chunks of ${Math.round(bytes / chunks)} bytes on average; send chunks of at least ${minAverageChunkBytes} bytes`,
  })
  watched[refused] = err
  req.pause()
  const onRefused = watched[listener]
  // A body a route is receiving answers with the refusal; anything else (a body being discarded
  // after its answer, one a route has not started on) loses its connection.
  if (onRefused) onRefused(err)
  else req.socket?.destroy()
}

/**
 * While a route receives `req`'s body: `onRefused` is called (at once if it already was) when the
 * body's framing is refused. Returns the function that stops listening.
 */
export function onFramingRefused(req: IncomingMessage, onRefused: (err: AppError) => void): () => void {
  const watched = req as IncomingMessage & Watched
  if (watched[refused]) {
    onRefused(watched[refused])
    return () => {}
  }
  watched[listener] = onRefused
  return () => {
    if (watched[listener] === onRefused) watched[listener] = undefined
  }
}

/** Whether `req`'s body was refused for its framing. */
export const refusedFraming = (req: IncomingMessage): boolean =>
  (req as IncomingMessage & Watched)[refused] !== undefined
