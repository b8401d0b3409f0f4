/**
 * The files client and adapters against fake providers on loopback: streamed uploads, listing,
 * retrieve, delete, streamed content, and no API key in any error.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import { loadConfig } from '../../src/config.js'
import { isProviderError } from '../../src/providers/errors.js'
import { createProviderRegistry, type ProviderRegistry } from '../../src/providers/registry.js'
import type { ProviderFile } from '../../src/providers/types.js'
import { startFakeAnthropic } from '../fakes/anthropic-server.js'
import { type FakeProvider, startFakeProvider } from '../fakes/provider-server.js'

const KIMI_KEY = 'sk-kimi-test-key-0123456789'
const GLM_KEY = 'glm-test-key.0123456789'
const OPENAI_KEY = 'sk-openai-test-key-0123456789'

const timing = {
  PROVIDER_TIMEOUT_MS: '2000',
  UPLOAD_TIMEOUT_MS: '5000',
  REQUEST_TIMEOUT_MS: '6000',
  SHUTDOWN_TIMEOUT_MS: '7000',
  RETRY_BASE_DELAY_MS: '10',
  RETRY_MAX_DELAY_MS: '50',
}

let kimi: FakeProvider
let glm: FakeProvider
let openai: FakeProvider
let registry: ProviderRegistry
let dir: string

before(async () => {
  ;[kimi, glm, openai] = await Promise.all([
    startFakeProvider({ kind: 'kimi', apiKey: KIMI_KEY }),
    startFakeProvider({ kind: 'glm', apiKey: GLM_KEY }),
    startFakeProvider({ kind: 'openai', apiKey: OPENAI_KEY }),
  ])
  registry = createProviderRegistry(
    loadConfig({
      ...timing,
      KIMI_API_KEY: KIMI_KEY,
      KIMI_BASE_URL: kimi.baseUrl,
      GLM_API_KEY: GLM_KEY,
      GLM_BASE_URL: glm.baseUrl,
      EXTRA_PROVIDERS: JSON.stringify([{ name: 'oai', base_url: openai.baseUrl, api_key: OPENAI_KEY }]),
    }),
  )
  dir = await mkdtemp(join(tmpdir(), 'filegate-providers-'))
})

after(async () => {
  await registry.close()
  await Promise.all([kimi.close(), glm.close(), openai.close()])
  await rm(dir, { recursive: true, force: true })
})

const collect = async <T>(it: AsyncIterable<T>) => {
  const out: T[] = []
  for await (const x of it) out.push(x)
  return out
}

describe('upload', () => {
  test('streams a 5 MB file from disk; the fake receives the exact bytes', async () => {
    kimi.reset()
    const data = randomBytes(5 * 1024 * 1024)
    const path = join(dir, 'five.bin')
    await writeFile(path, data)
    const file = await registry.require('kimi').upload({
      source: { kind: 'file', path, bytes: data.length },
      filename: 'report.pdf',
      mimeType: 'application/pdf',
      purpose: 'file-extract',
    })
    assert.equal(kimi.uploads.length, 1)
    const received = kimi.uploads[0]
    assert.equal(received?.sha256, createHash('sha256').update(data).digest('hex'))
    assert.equal(received?.bytes, data.length)
    assert.equal(received?.purpose, 'file-extract')
    assert.equal(file.id, received?.id)
    assert.equal(file.bytes, data.length)
    assert.equal(file.filename, 'report.pdf')
    // platform.kimi.ai/docs/api/files-upload: a new file is "ready" (older examples said "ok").
    assert.equal(file.status, 'ready')
    assert.ok(Math.abs(file.createdAt - Date.now() / 1000) < 60, 'created_at is unix seconds')
  })

  test('a one-shot stream of unknown length goes chunked', async () => {
    glm.reset()
    const chunks = [Buffer.from('hello '), Buffer.from('streamed '), Buffer.from('world')]
    const file = await registry.require('glm').upload({
      source: { kind: 'stream', stream: Readable.from(chunks) },
      filename: 'notes.txt',
      mimeType: 'text/plain',
      purpose: 'agent',
    })
    const whole = Buffer.concat(chunks)
    assert.equal(glm.uploads[0]?.sha256, createHash('sha256').update(whole).digest('hex'))
    assert.equal(file.bytes, whole.length)
  })

  test('filenames with quotes, CR/LF and non-ASCII arrive intact and cannot inject headers', async () => {
    kimi.reset()
    const path = join(dir, 'small.txt')
    await writeFile(path, 'x')
    const upload = (filename: string) =>
      registry.require('kimi').upload({
        source: { kind: 'file', path, bytes: 1 },
        filename,
        mimeType: 'text/plain\r\nX-Injected: 1',
        purpose: 'file-extract',
      })
    await upload('résumé 简历.txt')
    await upload('a"b\r\nContent-Type: evil.txt')
    assert.equal(kimi.uploads[0]?.filename, 'résumé 简历.txt')
    // The quote and line break are percent-encoded (HTML form-data rule), not passed through.
    assert.equal(kimi.uploads[1]?.filename, 'a%22b%0D%0AContent-Type: evil.txt')
    assert.equal(kimi.uploads[1]?.bytes, 1)
  })
})

describe('list', () => {
  test('listAll follows GLM pagination (after / has_more)', async () => {
    glm.reset()
    const seeded = Array.from({ length: 250 }, (_, i) =>
      glm.addFile({ filename: `f${i}.txt`, created_at: 1_700_000_000 + i }),
    )
    const files = await collect(registry.require('glm').listAll())
    assert.deepEqual(
      files.map((f) => f.id),
      seeded.map((f) => f.id),
    )
    assert.equal(glm.requests.list, 3, 'pages of 100')
    assert.equal(files[7]?.createdAt, 1_700_000_007)
  })

  test('a GLM walk whose cursor file is deleted between pages starts again: every file once, the file past it found', async () => {
    glm.reset()
    const seeded = Array.from({ length: 150 }, (_, i) => glm.addFile({ filename: `w${i}.txt` }))
    const target = seeded[140]?.id as string
    // Another client deletes the first page's last file while the walk is between pages, once.
    let armed = true
    const deleted: string[] = []
    glm.onList = (after) => {
      if (after !== undefined && armed) {
        armed = false
        deleted.push(after)
        glm.forget(after)
      }
    }
    const found = await registry.require('glm').retrieve(target)
    assert.equal(found?.id, target, 'not seeing a file in a list that ended early is no proof that it is gone')
    assert.deepEqual(deleted, [seeded[99]?.id])
    assert.equal(glm.requests.list, 4, 'page 1, the empty page, then the walk again: pages 1 and 2')
    armed = true
    const ids = (await collect(registry.require('glm').listAll())).map((f) => f.id)
    assert.equal(new Set(ids).size, ids.length, 'each file once, though two walks showed the first page')
    for (const id of glm.files.keys()) assert.ok(ids.includes(id), `${id} is still there and was listed`)
    assert.equal(glm.requests.list, 8)
  })

  test('a GLM list that ends early on every walk fails rather than concluding anything', async () => {
    glm.reset()
    const seeded = Array.from({ length: 150 }, (_, i) => glm.addFile({ filename: `x${i}.txt` }))
    glm.onList = (after) => {
      if (after !== undefined) glm.forget(after)
    }
    const err = await registry
      .require('glm')
      .retrieve(seeded[140]?.id as string)
      .catch((e: unknown) => e)
    assert.ok(isProviderError(err), String(err))
    assert.equal(err.code, 'PROVIDER_ERROR')
    assert.match(err.detail ?? '', /ended early on each of 4 walks/)
    assert.equal(glm.requests.list, 8, 'four walks of two pages, then no more')
  })

  test('listAll passes the purpose filter', async () => {
    glm.reset()
    glm.addFile({ filename: 'a.jsonl', purpose: 'batch' })
    glm.addFile({ filename: 'b.pdf', purpose: 'agent' })
    const files = await collect(registry.require('glm').listAll({ purpose: 'batch' }))
    assert.deepEqual(
      files.map((f) => f.filename),
      ['a.jsonl'],
    )
  })

  test('Kimi returns every file in one page', async () => {
    kimi.reset()
    for (let i = 0; i < 120; i++) kimi.addFile({ filename: `k${i}.pdf` })
    const files = await collect(registry.require('kimi').listAll())
    assert.equal(files.length, 120)
    assert.equal(kimi.requests.list, 1)
  })

  test('OpenAI-compatible listAll pages with last_id', async () => {
    openai.reset()
    for (let i = 0; i < 205; i++) openai.addFile({ filename: `o${i}.txt` })
    const files = await collect(registry.require('oai').listAll())
    assert.equal(new Set(files.map((f: ProviderFile) => f.id)).size, 205)
    assert.equal(openai.requests.list, 3)
  })
})

describe('retrieve and delete', () => {
  test('retrieve answers the file, or null on 404', async () => {
    kimi.reset()
    const seeded = kimi.addFile({ filename: 'x.pdf', bytes: 42 })
    const found = await registry.require('kimi').retrieve(seeded.id)
    assert.equal(found?.bytes, 42)
    assert.equal(await registry.require('kimi').retrieve('missing'), null)
    assert.equal(kimi.requests.retrieve, 2)
  })

  test('GLM has no retrieve: it is done by listing', async () => {
    glm.reset()
    const seeded = glm.addFile({ filename: 'g.pdf' })
    assert.equal((await registry.require('glm').retrieve(seeded.id))?.filename, 'g.pdf')
    assert.equal(await registry.require('glm').retrieve('missing'), null)
    assert.equal(glm.requests.retrieve, 0)
  })

  test('delete removes the file; an unknown id is alreadyGone', async () => {
    kimi.reset()
    const seeded = kimi.addFile({ filename: 'x.pdf' })
    assert.deepEqual(await registry.require('kimi').delete(seeded.id), { alreadyGone: false })
    assert.deepEqual(kimi.deletes, [seeded.id])
    assert.deepEqual(await registry.require('kimi').delete(seeded.id), { alreadyGone: true })
    assert.deepEqual(await registry.require('glm').delete('never-existed'), { alreadyGone: true })
  })
})

describe('the fakes answer as the docs say', () => {
  test('GLM file objects carry no status; Kimi\'s say "ready" (row 9)', async () => {
    glm.reset()
    kimi.reset()
    const path = join(dir, 'shape.txt')
    await writeFile(path, 'shape')
    const put = (name: 'glm' | 'kimi', purpose: string) =>
      registry
        .require(name)
        .upload({ source: { kind: 'file', path, bytes: 5 }, filename: 'shape.txt', mimeType: 'text/plain', purpose })
    const fromGlm = await put('glm', 'agent')
    assert.equal(fromGlm.status, undefined)
    const res = await fetch(`${glm.baseUrl}/files`, { headers: { authorization: `Bearer ${GLM_KEY}` } })
    const listed = (await res.json()) as { data: Array<Record<string, unknown>> }
    // docs.bigmodel.cn 上传文件: {id, object, bytes, created_at, filename, purpose}
    assert.deepEqual(Object.keys(listed.data[0] ?? {}).sort(), [
      'bytes',
      'created_at',
      'filename',
      'id',
      'object',
      'purpose',
    ])
    assert.equal((await put('kimi', 'file-extract')).status, 'ready')
  })
})

describe('content', () => {
  test('Kimi file-extract content is the JSON text Kimi returns', async () => {
    kimi.reset()
    const path = join(dir, 'doc.txt')
    await writeFile(path, 'extracted words')
    const file = await registry.require('kimi').upload({
      source: { kind: 'file', path, bytes: 15 },
      filename: 'doc.txt',
      mimeType: 'text/plain',
      purpose: 'file-extract',
    })
    const content = await registry.require('kimi').content(file.id)
    assert.match(content.contentType, /^application\/json/)
    const chunks: Buffer[] = []
    for await (const c of content.body) chunks.push(c as Buffer)
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    assert.equal(body.content, 'extracted words')
    assert.equal(body.type, 'file')
    assert.equal(content.contentLength, Buffer.concat(chunks).length)
  })

  test('content is streamed: the first chunk arrives before the provider has finished', async () => {
    kimi.reset()
    const source = new PassThrough()
    const seeded = kimi.addFile({ filename: 'big.txt', content: () => source })
    source.write('first chunk;')
    const content = await registry.require('kimi').content(seeded.id)
    const iterator = content.body[Symbol.asyncIterator]()
    const first = await iterator.next()
    assert.equal(String(first.value), 'first chunk;')
    source.end('second chunk')
    const rest: string[] = []
    for (let r = await iterator.next(); !r.done; r = await iterator.next()) rest.push(String(r.value))
    assert.equal(rest.join(''), 'second chunk')
  })

  test('content of a file the provider does not know (404) is CONTENT_UNAVAILABLE', async () => {
    kimi.reset()
    await assert.rejects(registry.require('kimi').content('cv-gone'), { code: 'CONTENT_UNAVAILABLE' })
  })

  test('GLM batch content is the file as uploaded, file-extract content the extracted JSON', async () => {
    glm.reset()
    const put = async (filename: string, purpose: string, text: string) => {
      const path = join(dir, filename)
      await writeFile(path, text)
      return registry.require('glm').upload({
        source: { kind: 'file', path, bytes: Buffer.byteLength(text) },
        filename,
        mimeType: 'application/octet-stream',
        purpose,
      })
    }
    const read = async (id: string) => {
      const content = await registry.require('glm').content(id)
      const chunks: Buffer[] = []
      for await (const c of content.body) chunks.push(c as Buffer)
      return { type: content.contentType, text: Buffer.concat(chunks).toString('utf8') }
    }
    const batch = await read((await put('in.jsonl', 'batch', '{"custom_id":"1"}\n')).id)
    assert.equal(batch.type, 'application/octet-stream')
    assert.equal(batch.text, '{"custom_id":"1"}\n')
    const extract = await read((await put('t.csv', 'file-extract', 'a,b')).id)
    assert.match(extract.type, /^application\/json/)
    assert.equal(JSON.parse(extract.text).content, 'a,b')
  })
})

describe('authentication', () => {
  for (const kind of ['kimi', 'glm', 'openai'] as const) {
    test(`${kind}: a 401 never carries the API key`, async () => {
      const fake = await startFakeProvider({ kind, apiKey: 'the-right-key-0000' })
      const wrongKey = kind === 'glm' ? 'a1b2c3d4wrong.987654321secret' : `sk-wrong-${kind}-key-987654321`
      const env =
        kind === 'kimi'
          ? { KIMI_API_KEY: wrongKey, KIMI_BASE_URL: fake.baseUrl }
          : kind === 'glm'
            ? { GLM_API_KEY: wrongKey, GLM_BASE_URL: fake.baseUrl }
            : { EXTRA_PROVIDERS: JSON.stringify([{ name: 'oai', base_url: fake.baseUrl, api_key: wrongKey }]) }
      const reg = createProviderRegistry(loadConfig({ ...timing, ...env }))
      const name = kind === 'openai' ? 'oai' : kind
      try {
        const err = await reg
          .require(name)
          .retrieve('x')
          .catch((e: unknown) => e)
        const list = await collect(reg.require(name).listAll()).catch((e: unknown) => e)
        for (const e of [err, list]) {
          assert.ok(isProviderError(e), 'a ProviderError')
          assert.equal(e.code, 'PROVIDER_ERROR')
          assert.equal(e.retryable, false)
          assert.equal(e.extensions.provider, name)
          const everything = `${e.message} ${e.detail} ${JSON.stringify(e)} ${String(e.stack)} ${String(e.cause)}`
          assert.ok(!everything.includes(wrongKey), 'the key is not in the error')
          assert.ok(!everything.includes('987654321'), 'no part of the key is in the error')
        }
        assert.equal(fake.requests.list + fake.requests.retrieve, 2, 'a 401 is not retried')
      } finally {
        await reg.close()
        await fake.close()
      }
    })
  }
})

describe('registry', () => {
  test('unknown and unconfigured providers', () => {
    const reg = createProviderRegistry(loadConfig({ ...timing, KIMI_API_KEY: KIMI_KEY, KIMI_BASE_URL: kimi.baseUrl }))
    assert.equal(reg.get('glm'), undefined)
    assert.deepEqual(
      reg.list().map((a) => a.name),
      ['kimi'],
    )
    assert.throws(() => reg.require('glm'), { code: 'PROVIDER_NOT_CONFIGURED' })
    assert.throws(() => reg.require('nope'), { code: 'UNKNOWN_PROVIDER' })
    assert.equal(reg.require('kimi').circuitState(), 'closed')
    assert.equal(reg.require('kimi').retryAfterMs(), 0)
    return reg.close()
  })
})

/** A fake Anthropic and a registry configured for it, both closed after the test. */
async function anthropicRegistry(t: { after(fn: () => Promise<void>): void }) {
  const fake = await startFakeAnthropic()
  const anthropic = createProviderRegistry(
    loadConfig({ ...timing, ANTHROPIC_API_KEY: fake.apiKey, ANTHROPIC_BASE_URL: fake.baseUrl }),
  )
  t.after(async () => {
    await anthropic.close()
    await fake.close()
  })
  return { fake, anthropic }
}

describe('Anthropic through the shared client', () => {
  test('the file object maps to filegate’s; listAll follows after_id/last_id across pages; retrieve and delete', async (t) => {
    const { fake, anthropic } = await anthropicRegistry(t)
    const adapter = anthropic.require('anthropic')
    const created = '2026-11-01T10:20:30.123456Z'
    const ids = new Set<string>()
    for (let i = 0; i < 230; i++)
      ids.add(fake.addFile({ filename: `f${i}.pdf`, size_bytes: i, created_at: created }).id)
    const seen: ProviderFile[] = []
    for await (const f of adapter.listAll()) seen.push(f)
    assert.equal(seen.length, 230)
    assert.deepEqual(new Set(seen.map((f) => f.id)), ids)
    assert.equal(fake.requests.list, 3, '100 a page: three pages')
    const one = await adapter.retrieve([...ids][7] as string)
    assert.deepEqual(one, {
      id: [...ids][7],
      bytes: 7,
      createdAt: Math.floor(Date.parse(created) / 1000),
      filename: 'f7.pdf',
      purpose: 'file',
    })
    assert.equal(await adapter.retrieve('file_011nope'), null)
    assert.deepEqual(await adapter.delete([...ids][7] as string), { alreadyGone: false })
    assert.deepEqual(await adapter.delete([...ids][7] as string), { alreadyGone: true })
  })

  test('an upload streams the file part with its type and maps size_bytes back', async (t) => {
    const { fake, anthropic } = await anthropicRegistry(t)
    const content = randomBytes(70_000)
    const file = await anthropic.require('anthropic').upload({
      source: { kind: 'buffer', buffer: content, bytes: content.length },
      filename: 'report.pdf',
      mimeType: 'application/pdf',
      purpose: 'file',
    })
    assert.equal(file.bytes, content.length)
    assert.equal(file.purpose, 'file')
    assert.equal(fake.uploads[0]?.sha256, createHash('sha256').update(content).digest('hex'))
    assert.equal(fake.files.get(file.id)?.mime_type, 'application/pdf')
  })
})

describe('OpenAI native through the shared client', () => {
  test('expires_at comes back as expiresAt; expires_after is sent only within 3600–2592000 seconds', async (t) => {
    const fake = await startFakeProvider({ kind: 'openai', apiKey: OPENAI_KEY })
    const native = createProviderRegistry(
      loadConfig({ ...timing, OPENAI_API_KEY: OPENAI_KEY, OPENAI_BASE_URL: fake.baseUrl }),
    )
    t.after(async () => {
      await native.close()
      await fake.close()
    })
    const adapter = native.require('openai')
    const send = (expiresInSeconds?: number) =>
      adapter.upload({
        source: { kind: 'buffer', buffer: Buffer.from('x'), bytes: 1 },
        filename: 'a.txt',
        mimeType: 'text/plain',
        purpose: 'user_data',
        ...(expiresInSeconds !== undefined ? { expiresInSeconds } : {}),
      })
    const inRange = await send(3600)
    assert.equal(inRange.expiresAt, inRange.createdAt + 3600)
    const top = await send(2_592_000)
    assert.equal(top.expiresAt, top.createdAt + 2_592_000)
    const short = await send(3599)
    assert.equal(short.expiresAt, undefined, 'not sent: OpenAI keeps it, filegate expires it')
    await send(2_592_001)
    assert.deepEqual(
      fake.uploads.map((u) => u.expiresAfterSeconds),
      [3600, 2_592_000, undefined, undefined],
    )
    // An extra OpenAI-compatible provider (no kind) is never sent expires_after.
    const compat = await registry.require('oai').upload({
      source: { kind: 'buffer', buffer: Buffer.from('y'), bytes: 1 },
      filename: 'b.txt',
      mimeType: 'text/plain',
      purpose: 'user_data',
      expiresInSeconds: 7200,
    })
    assert.equal(openai.uploads.find((u) => u.id === compat.id)?.expiresAfterSeconds, undefined)
  })
})
