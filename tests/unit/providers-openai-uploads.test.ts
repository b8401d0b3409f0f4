/**
 * The native OpenAI wire sends a file above the single-request cap through OpenAI's Uploads API
 * (create, parts of the part size, complete with the md5), against the fake OpenAI server; a file
 * within the cap is one `POST /files`. The caps are lowered here (512 MB and 64 MB in production):
 * the size proves nothing, the path does.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { it } from 'node:test'
import { openAiNativeDialect } from '../../src/providers/openai-compatible.js'
import { openAiFacts } from '../../src/providers/openai-facts.js'
import { openAiUploadsWire } from '../../src/providers/openai-uploads.js'
import type { ProviderConfig } from '../../src/providers/types.js'
import { startFakeProvider } from '../fakes/provider-server.js'
import { tempDir } from '../helper.js'

it('a file over the single-request cap goes through the Uploads API in parts, with its md5; a smaller one is one POST /files', async (t) => {
  const fake = await startFakeProvider({ kind: 'openai', apiKey: 'sk-openai-fake-0123456789' })
  t.after(() => fake.close())
  const facts = openAiFacts(fake.baseUrl)
  const config: ProviderConfig = { ...facts, name: 'openai', apiKey: 'sk-openai-fake-0123456789', configured: true }
  const wire = openAiUploadsWire(openAiNativeDialect(facts.expiresAfter as NonNullable<typeof facts.expiresAfter>), {
    singleRequestMaxBytes: 100 * 1024,
    partBytes: 64 * 1024,
  }).create(config, {
    limitBytes: facts.maxFileBytes,
    idleTimeoutMs: 5_000,
    connections: 4,
    retry: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1 },
  })
  t.after(() => wire.close())
  const dir = await tempDir(t)
  const big = Buffer.alloc(300 * 1024 + 17)
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) % 251
  const path = join(dir, 'big.bin')
  await writeFile(path, big)
  const input = (bytes: number, p: string) => ({
    source: { kind: 'file' as const, path: p, bytes },
    filename: 'big.jsonl',
    mimeType: 'application/octet-stream',
    purpose: 'user_data',
  })
  const file = await wire.upload(input(big.length, path), AbortSignal.timeout(10_000), {})
  assert.equal(file.bytes, big.length)
  assert.equal(fake.uploads[0]?.sha256, createHash('sha256').update(big).digest('hex'), 'the parts in order')
  assert.equal(fake.requests.upload, 0, 'no POST /files')
  const uploadsApiCalls = fake.log.filter((r) => r.path.startsWith('/v1/uploads'))
  assert.equal(uploadsApiCalls.filter((r) => r.path.endsWith('/parts')).length, 5, '300 KB in 64 KB parts')
  assert.ok(uploadsApiCalls.at(-1)?.path.endsWith('/complete'))

  const small = join(dir, 'small.bin')
  await writeFile(small, big.subarray(0, 1000))
  await wire.upload(input(1000, small), AbortSignal.timeout(10_000), {})
  assert.equal(fake.requests.upload, 1, 'within the cap: one POST /files')
})
