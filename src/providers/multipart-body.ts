/**
 * A streamed multipart/form-data body (RFC 7578) for `POST /files`: the dialect's fields (by
 * default `purpose`), then the file part piped from disk or from a one-shot stream. Nothing is buffered beyond one chunk, and
 * the length is computed up front when the file size is known so the request is not chunked.
 */
import { randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import type { UploadInput } from './types.js'

/**
 * Quoted-string parameters as the HTML form-data encoder writes them (what browsers and the
 * OpenAI SDK send): `"`, CR, LF percent-encoded; `\` too, so no parser sees a quoted-pair.
 * UTF-8 stays as is in `filename` (RFC 7578 §4.2) and is repeated as RFC 8187 `filename*` for
 * parsers that only trust the extended form.
 */
export function contentDispositionFilename(filename: string): string {
  const quoted = filename.replace(
    /[\r\n"\\]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`,
  )
  // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping the other control characters is the point
  const plain = quoted.replace(/[\u0000-\u001f\u007f]/g, '')
  const ascii = /^[\u0020-\u007e]*$/.test(plain)
  if (ascii) return `filename="${plain}"`
  const extended = encodeURIComponent(filename).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  )
  return `filename="${plain}"; filename*=UTF-8''${extended}`
}

const MIME = /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/i

export interface MultipartBody {
  /** Handed to undici as an async iterable: no Readable between the source and the socket. */
  body: AsyncGenerator<Buffer, void, undefined>
  contentType: string
  /** Known when the file size is known; otherwise the request goes chunked. */
  contentLength: number | undefined
}

/** Text fields sent before the file part, in order: [name, value]. */
export type FormFields = ReadonlyArray<readonly [string, string]>

export function buildMultipartBody(
  input: UploadInput,
  fields: FormFields = [['purpose', input.purpose]],
): MultipartBody {
  const boundary = `----filegate${randomBytes(16).toString('hex')}`
  const name = (n: string) => n.replace(/[\r\n"]/g, '')
  const value = (v: string) => v.replace(/[\r\n]/g, '')
  const mimeType = MIME.test(input.mimeType) ? input.mimeType : 'application/octet-stream'
  const head = Buffer.from(
    fields
      .map(([n, v]) => `--${boundary}\r\nContent-Disposition: form-data; name="${name(n)}"\r\n\r\n${value(v)}\r\n`)
      .join('') +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; ${contentDispositionFilename(input.filename)}\r\n` +
      `Content-Type: ${mimeType}\r\n\r\n`,
  )
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`)
  const { source } = input
  const fileBytes = source.bytes
  // A fresh read stream per call: each retry of a file source re-reads it from the start.
  const open = (): AsyncIterable<Buffer> =>
    source.kind === 'file' ? createReadStream(source.path) : (source as { stream: AsyncIterable<Buffer> }).stream
  async function* parts() {
    yield head
    if (source.kind === 'buffer') yield source.buffer
    // for-await destroys the source when the request is aborted and this generator is returned.
    else for await (const chunk of open()) yield chunk
    yield tail
  }
  return {
    body: parts(),
    contentType: `multipart/form-data; boundary=${boundary}`,
    contentLength: fileBytes === undefined ? undefined : head.length + fileBytes + tail.length,
  }
}
