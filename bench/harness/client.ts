/**
 * The one client every upload goes through, straight to the fake or through filegate: undici
 * `request` with a multipart/form-data body streamed from a file on disk (Content-Length known,
 * so neither side sees chunked encoding).
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { copyFile, open, stat } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { Agent, request } from 'undici'

export const clientAgent = new Agent({ connections: 64, headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: 10_000 })

export interface StreamedForm {
  body: Readable
  contentType: string
  contentLength: number
}

/** Text fields first (so filegate knows the provider before the file), then the file part's head. */
function formFrame(fields: Array<[string, string]>, filename: string) {
  const boundary = `----bench${randomBytes(12).toString('hex')}`
  let head = ''
  for (const [name, value] of fields) {
    head += `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`
  }
  head += `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: text/plain\r\n\r\n`
  return {
    headBuf: Buffer.from(head),
    tailBuf: Buffer.from(`\r\n--${boundary}--\r\n`),
    contentType: `multipart/form-data; boundary=${boundary}`,
  }
}

/** A multipart body streamed from a file on disk. */
export async function streamedForm(fields: Array<[string, string]>, path: string, filename: string) {
  const { headBuf, tailBuf, contentType } = formFrame(fields, filename)
  const { size } = await stat(path)
  async function* parts() {
    yield headBuf
    for await (const chunk of createReadStream(path)) yield chunk as Buffer
    yield tailBuf
  }
  return {
    body: Readable.from(parts(), { objectMode: false }),
    contentType,
    contentLength: headBuf.length + size + tailBuf.length,
  } satisfies StreamedForm
}

/** An in-memory multipart body, for small uploads sent many times. */
export function bufferedForm(fields: Array<[string, string]>, content: Buffer, filename: string) {
  const { headBuf, tailBuf, contentType } = formFrame(fields, filename)
  return { body: Buffer.concat([headBuf, content, tailBuf]), contentType }
}

export interface UploadOutcome {
  status: number
  seconds: number
  body: string
}

/** POSTs a file streamed from disk; the clock runs until the whole answer is read. */
export async function uploadFile(
  url: string,
  headers: Record<string, string>,
  fields: Array<[string, string]>,
  path: string,
  filename: string,
): Promise<UploadOutcome> {
  const form = await streamedForm(fields, path, filename)
  const started = process.hrtime.bigint()
  const res = await request(url, {
    dispatcher: clientAgent,
    method: 'POST',
    headers: { ...headers, 'content-type': form.contentType, 'content-length': String(form.contentLength) },
    body: form.body,
  })
  const body = await res.body.text()
  return { status: res.statusCode, seconds: Number(process.hrtime.bigint() - started) / 1e9, body }
}

/**
 * A file of `bytes` random bytes, new content each call: the first one is generated, later ones
 * are copies with their first 32 bytes replaced, so dedup never answers and generation stays cheap.
 */
export async function freshRandomFile(template: string | undefined, path: string, bytes: number): Promise<string> {
  if (template) {
    await copyFile(template, path)
    const fh = await open(path, 'r+')
    try {
      await fh.write(randomBytes(32), 0, 32, 0)
    } finally {
      await fh.close()
    }
    return path
  }
  const fh = await open(path, 'w')
  try {
    const chunk = 4 * 1024 * 1024
    for (let written = 0; written < bytes; written += chunk) {
      await fh.write(randomBytes(Math.min(chunk, bytes - written)))
    }
  } finally {
    await fh.close()
  }
  return path
}

export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}
