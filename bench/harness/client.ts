/**
 * The clients every upload goes through, straight to the fake or through filegate: a
 * multipart/form-data body streamed from a file on disk (Content-Length known, so neither side sees
 * chunked encoding), sent by undici `request` or by `node:http` (what a plain Node client writes:
 * `fs.createReadStream(path).pipe(req)`).
 */
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { copyFile, open, stat } from 'node:fs/promises'
import { Agent as HttpAgent, request as httpRequest } from 'node:http'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Agent, request } from 'undici'

export const clientAgent = new Agent({ connections: 64, headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: 10_000 })
const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 64 })

/** Which client sends a large upload: undici `request`, or `node:http` piping a file stream. */
export type UploadClient = 'undici' | 'http'

/**
 * The client of every large upload unless a scenario names one: `node:http`, what a plain Node
 * client writes (docs/performance.md says why); BENCH_CLIENT=undici for the client of older runs.
 */
export const defaultClient = (): UploadClient => (process.env.BENCH_CLIENT === 'undici' ? 'undici' : 'http')

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
  client: UploadClient = defaultClient(),
): Promise<UploadOutcome> {
  if (client === 'http') return httpUpload(url, headers, fields, path, filename)
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
 * The same upload from `node:http`: the form's head written, the file piped from a read stream
 * (64 KiB chunks, paused whenever the socket is full), the tail written, the answer read.
 */
async function httpUpload(
  url: string,
  headers: Record<string, string>,
  fields: Array<[string, string]>,
  path: string,
  filename: string,
): Promise<UploadOutcome> {
  const { headBuf, tailBuf, contentType } = formFrame(fields, filename)
  const { size } = await stat(path)
  const started = process.hrtime.bigint()
  const req = httpRequest(url, {
    method: 'POST',
    agent: httpAgent,
    headers: {
      ...headers,
      'content-type': contentType,
      'content-length': String(headBuf.length + size + tailBuf.length),
    },
  })
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.once('error', reject)
    req.once('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.once('error', reject)
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
    })
  })
  req.write(headBuf)
  const sent = pipeline(createReadStream(path), req, { end: false }).then(
    () => new Promise<void>((resolve) => req.end(tailBuf, () => resolve())),
  )
  sent.catch(() => {})
  const { status, body } = await answer
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  // A service that answered before reading the whole body (an error) ends the exchange: stop sending.
  if (!req.writableFinished) req.destroy()
  await sent.catch(() => {})
  return { status, body, seconds }
}

/**
 * A file of `bytes` random bytes, new content each call: the first one is generated, later ones
 * are copies with their first 32 bytes replaced, so dedup never answers and generation stays cheap.
 */
export async function freshRandomFile(template: string | undefined, path: string, bytes: number): Promise<string> {
  if (template) {
    await copyFile(template, path)
    return renewContent(path)
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

/**
 * Gives the file at `path` new content in place (its first 32 bytes replaced): for uploads sent one
 * at a time, so nothing is copied and only one page is left to write to disk.
 */
export async function renewContent(path: string): Promise<string> {
  const fh = await open(path, 'r+')
  try {
    await fh.write(randomBytes(32), 0, 32, 0)
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

/**
 * Writes every dirty page out (`sync`) and waits for it, so that a timed upload does not pay for
 * the disk writes of whatever ran before it (the file the bench just copied, a store's objects, a
 * previous upload's staged original): in rounds whose order is rotated, each target always follows
 * the same neighbour, so its leftovers would land on one target every time. BENCH_SETTLE=0 skips it.
 */
export function settleDisk(): Promise<void> {
  if (process.env.BENCH_SETTLE === '0') return Promise.resolve()
  return new Promise((resolve, reject) => execFile('sync', (err) => (err ? reject(err) : resolve())))
}
