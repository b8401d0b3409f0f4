/**
 * tus 1.0 resumable uploads at /v1/uploads (tus.io/protocols/resumable-upload, core protocol plus
 * the creation, creation-with-upload, expiration and termination extensions), and this product's
 * GET /v1/uploads/{id} (JSON). The protocol is parsed here; the domain (src/domain/resumable.ts)
 * decides everything else. Every answer carries `Tus-Resumable: 1.0.0`; errors are problem+json.
 */
import type { Readable } from 'node:stream'
import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox'
import type { FastifyReply } from 'fastify'
import type { Config } from '../../src/config.js'
import { type ResumableState, uploadClosed } from '../../src/domain/resumable.js'
import { AppError } from '../../src/errors.js'
import { FileRef, FileSchema, problems, SafeText } from '../schemas.js'
import { parseUploadMetadata } from './metadata.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A tus request: it must send `Tus-Resumable: 1.0.0` (412 otherwise). */
    tus?: boolean
  }
}

const tusVersion = '1.0.0'
const tusExtensions = 'creation,creation-with-upload,expiration,termination'
const chunkType = 'application/offset+octet-stream'

const IdParams = Type.Object({ id: SafeText(64, 'The upload id (uuid), the last segment of Location') })
const Offset = Type.String({ pattern: '^[0-9]{1,16}$' })
const NoContent = Type.Null({ description: 'No body: the tus headers say it all' })

const UploadStatus = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    offset: Type.Integer({ minimum: 0, description: 'Bytes received so far (Upload-Offset)' }),
    length: Type.Integer({ minimum: 1, description: 'The declared size (Upload-Length)' }),
    status: Type.Union(['receiving', 'processing', 'completed', 'failed'].map((s) => Type.Literal(s))),
    file: Type.Union([FileRef, Type.Null()], {
      description: 'The File once completed (a live duplicate when one existed)',
    }),
    error: Type.Union([Type.String(), Type.Null()], {
      description:
        'Why the upload failed; while it is processing, why the last attempt to complete it failed (it is tried again)',
    }),
    attempts: Type.Integer({ minimum: 0, description: 'Attempts to complete the upload so far' }),
    next_attempt_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
      description: 'While processing after a failed attempt: when filegate tries again by itself',
    }),
    expires_at: Type.String({
      format: 'date-time',
      description: 'An unfinished upload is gone after this; one still processing then fails',
    }),
  },
  { $id: 'TusUpload', description: 'A tus upload as filegate sees it' },
)

/** The tus headers of an upload's state; Filegate-File-Id once its File is recorded. */
function tusState(reply: FastifyReply, state: ResumableState): FastifyReply {
  const { upload, file } = state
  reply.header('upload-offset', String(upload.received)).header('upload-length', String(upload.bytes))
  if (upload.status === 'receiving') reply.header('upload-expires', new Date(upload.expires_at).toUTCString())
  if (file) reply.header('filegate-file-id', file.id)
  return reply.header('cache-control', 'no-store')
}

/** The upload as JSON (POST's body, GET /v1/uploads/{id}). */
const statusOf = ({ upload, file }: ResumableState) => ({
  id: upload.id,
  offset: Number(upload.received),
  length: Number(upload.bytes),
  status: upload.status as 'receiving' | 'processing' | 'completed' | 'failed',
  file,
  error: upload.error,
  attempts: upload.attempts,
  next_attempt_at: upload.next_attempt_at === null ? null : new Date(upload.next_attempt_at).toISOString(),
  expires_at: new Date(upload.expires_at).toISOString(),
})

/** Expired, terminated or failed: no request can take the upload further (HEAD answers 410). */
const isGone = ({ upload }: ResumableState) => !['receiving', 'processing', 'completed'].includes(upload.status)

const uploadsRoutes: FastifyPluginAsyncTypebox<{ config: Config }> = async (app, opts) => {
  app.addSchema(FileSchema)
  app.addSchema(UploadStatus)
  // A chunk is read by the handler as it streams, never parsed or buffered.
  app.addContentTypeParser(chunkType, (_request, payload, done) => done(null, payload))
  app.addHook('onRequest', (request, _reply, done) => {
    const version = request.headers['tus-resumable']
    if (request.routeOptions.config?.tus && version !== tusVersion) {
      done(
        new AppError('TUS_VERSION_UNSUPPORTED', {
          detail: `Send Tus-Resumable: ${tusVersion}`,
          extensions: { supported: [tusVersion] },
        }),
      )
      return
    }
    done()
  })
  app.addHook('onSend', (_request, reply, payload, done) => {
    reply.header('tus-resumable', tusVersion).header('tus-version', tusVersion)
    done(null, payload)
  })
  const largestFileBytes = Math.max(...opts.config.providers.map((p) => p.maxFileBytes))

  app.options(
    '/v1/uploads',
    {
      // tus discovery, behind the key like every /v1 route (tus clients do not need it; a browser's
      // CORS preflight is answered before routing).
      schema: {
        operationId: 'tusOptions',
        tags: ['uploads'],
        summary: 'tus discovery: the version, extensions and largest size this server takes',
        security: [{ bearerAuth: [] }],
        response: { 204: NoContent, ...problems(401, 403, 429) },
      },
      config: { scope: 'files:write' },
    },
    async (_request, reply) =>
      reply
        .code(204)
        .header('tus-extension', tusExtensions)
        .header('tus-max-size', String(largestFileBytes))
        .send(null),
  )

  app.post(
    '/v1/uploads',
    {
      schema: {
        operationId: 'tusCreate',
        tags: ['uploads'],
        summary: 'tus creation (and creation-with-upload): a new resumable upload',
        description:
          'tus 1.0 creation: `Upload-Length` (at most the provider limit, else 413 before a byte is stored) and ' +
          '`Upload-Metadata` (base64 values: `filename` required; `provider`, `purpose`, `expires_in`, ' +
          '`metadata` (a JSON object), `sha256`). A body (`Content-Type: application/offset+octet-stream`) is ' +
          'the first chunk. 201 with `Location`, `Upload-Offset`, `Upload-Expires`; with `Filegate-File-Id` ' +
          'when that body was the whole file.',
        security: [{ bearerAuth: [] }],
        headers: Type.Object({
          'upload-length': Offset,
          'upload-metadata': Type.Optional(Type.String({ maxLength: 16 * 1024 })),
        }),
        response: {
          201: { ...Type.Ref(UploadStatus), description: 'Created; the same upload as GET /v1/uploads/{id} answers' },
          ...problems(400, 401, 403, 404, 409, 412, 413, 415, 422, 429, 502, 503, 504, 507),
        },
      },
      config: { scope: 'files:write', tus: true },
    },
    async (request, reply) => {
      const fields = parseUploadMetadata(request.headers['upload-metadata'], opts.config.defaultProvider)
      const upload = await app.resumable.create({
        tenant: request.auth.tenant,
        allowed: request.auth.providers,
        protocol: 'tus',
        bytes: Number(request.headers['upload-length']),
        ...fields,
      })
      const body = request.body as Readable | undefined
      const state = body ? await app.resumable.append(request.auth.tenant, upload.id, 0, body) : { upload, file: null }
      return tusState(reply.code(201).header('location', `/v1/uploads/${upload.id}`), state).send()
    },
  )

  app.head(
    '/v1/uploads/:id',
    {
      schema: {
        operationId: 'tusHead',
        tags: ['uploads'],
        summary: 'tus: where the upload is (Upload-Offset, Upload-Length, Upload-Expires)',
        security: [{ bearerAuth: [] }],
        params: IdParams,
        response: { 200: NoContent, ...problems(401, 403, 404, 410, 412, 429, 503) },
      },
      config: { scope: 'files:write', tus: true },
    },
    async (request, reply) => {
      const state = await app.resumable.get(request.auth.tenant, request.params.id)
      if (isGone(state)) throw uploadClosed(state.upload)
      return tusState(reply.code(200), state).send()
    },
  )

  app.patch(
    '/v1/uploads/:id',
    {
      schema: {
        operationId: 'tusPatch',
        tags: ['uploads'],
        summary: 'tus: append a chunk at Upload-Offset; the chunk that completes the file answers once it is recorded',
        description:
          'Body: `application/offset+octet-stream`. 204 with the new `Upload-Offset`; the PATCH that completes the ' +
          'upload answers after the File is recorded, with `Filegate-File-Id`. A wrong offset is 409, a PATCH ' +
          'while another writes is 423, an expired or terminated upload 410. When that completion fails in a way ' +
          'waiting cures (the provider failing or unavailable, 5xx or 429), the PATCH answers that error but the ' +
          'upload stays `processing` with its bytes and filegate completes it by itself (GET /v1/uploads/{id}).',
        security: [{ bearerAuth: [] }],
        params: IdParams,
        headers: Type.Object({ 'upload-offset': Offset }),
        consumes: [chunkType],
        response: {
          204: NoContent,
          ...problems(400, 401, 403, 404, 409, 410, 412, 413, 415, 422, 423, 429, 502, 503, 504, 507),
        },
      },
      config: { scope: 'files:write', tus: true },
    },
    async (request, reply) => {
      const body = request.body as Readable | undefined
      if (!body) throw new AppError('VALIDATION_FAILED', { detail: `A PATCH carries Content-Type: ${chunkType}` })
      const offset = Number(request.headers['upload-offset'])
      const state = await app.resumable.append(request.auth.tenant, request.params.id, offset, body)
      return tusState(reply.code(204), state).send()
    },
  )

  app.delete(
    '/v1/uploads/:id',
    {
      schema: {
        operationId: 'tusTerminate',
        tags: ['uploads'],
        summary: 'tus termination: the upload and its staged bytes are removed',
        security: [{ bearerAuth: [] }],
        params: IdParams,
        response: { 204: NoContent, ...problems(401, 403, 404, 409, 412, 429, 503) },
      },
      config: { scope: 'files:write', tus: true },
    },
    async (request, reply) => {
      await app.resumable.cancel(request.auth.tenant, request.params.id, true)
      return reply.code(204).send(null)
    },
  )

  app.get(
    '/v1/uploads/:id',
    {
      exposeHeadRoute: false,
      schema: {
        operationId: 'getUpload',
        tags: ['uploads'],
        summary: 'A tus upload as JSON: offset, length, status, the File once recorded, the error of a failure',
        description:
          'A client that disconnected while the last PATCH was being processed finds the result here; so does one ' +
          'whose last PATCH failed while the completion is retried (`processing`, with `error`, `attempts` and ' +
          '`next_attempt_at`). An expired upload is 410; a terminated one 404.',
        security: [{ bearerAuth: [] }],
        params: IdParams,
        response: { 200: Type.Ref(UploadStatus), ...problems(401, 403, 404, 410, 429, 503) },
      },
      config: { scope: 'files:write' },
    },
    async (request) => {
      const state = await app.resumable.get(request.auth.tenant, request.params.id)
      if (isGone(state) && state.upload.status !== 'failed') throw uploadClosed(state.upload)
      return statusOf(state)
    },
  )
}

export default uploadsRoutes
