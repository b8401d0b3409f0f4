/**
 * How file bytes leave filegate, on every route that streams them (/v1/files/{id}/content, its
 * original, and the OpenAI facade's content): both HTTP faces share it. The provider labels the bytes (a `text/html` page with a script is
 * possible), and they would be served on the same origin as /docs: so the browser is told to
 * download rather than render (Content-Disposition: attachment, RFC 6266), not to guess another
 * type (X-Content-Type-Options: nosniff), and, should it render anyway, to run nothing and load
 * nothing (Content-Security-Policy: default-src 'none'; sandbox).
 */
import type { FastifyReply } from 'fastify'
import type { FileRow } from '../src/domain/file-record.js'
import type { FileContent } from '../src/domain/files.js'
import type { OriginalBody } from '../src/domain/original-reads.js'

export const contentSecurityPolicy = "default-src 'none'; sandbox"

/**
 * `attachment` with the sanitised filename: an ASCII `filename` for old clients (anything else,
 * and `"` `\`, become `_`) and the exact name as RFC 8187 `filename*` (RFC 6266 §4.3).
 */
export function attachmentDisposition(filename: string): string {
  const fallback = filename.replace(/[^\x20-\x7e]|["\\]/g, '_')
  const extended = encodeURIComponent(filename).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  )
  return `attachment; filename="${fallback}"; filename*=UTF-8''${extended}`
}

export function sendContent(reply: FastifyReply, filename: string, content: FileContent) {
  reply
    .header('content-type', content.contentType)
    .header('content-disposition', attachmentDisposition(filename))
    .header('x-content-type-options', 'nosniff')
    .header('content-security-policy', contentSecurityPolicy)
  if (content.contentLength !== undefined) reply.header('content-length', content.contentLength)
  return reply.send(content.body)
}

/** A file's original, as the same kind of download, typed with the file's own mime type. */
export function sendOriginal(
  reply: FastifyReply,
  row: Pick<FileRow, 'filename' | 'mime_type'>,
  original: OriginalBody,
) {
  return sendContent(reply, row.filename, {
    contentType: row.mime_type || 'application/octet-stream',
    contentLength: original.bytes,
    body: original.stream,
  })
}
