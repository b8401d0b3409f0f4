/**
 * Resumable uploads across replicas: two service processes (each leading its own process group)
 * share one Postgres database and stage segments in one S3 bucket (s3rver).
 * - A tus upload begun on the first, SIGKILLed in the middle of a PATCH, continues on the second: the
 *   real tus-js-client resumes from the offset HEAD reports (waiting out the dead replica's lease),
 *   the bytes reach the provider intact, the finished file is kept as the original, and no segment
 *   or staging object is left.
 * - Completions under way on the first when it is SIGKILLed (the provider put in flight) are taken
 *   up on the second: a tus upload's by its resumable job, with no client request at all; an OpenAI
 *   Upload's by the SDK's retried complete. Each file reaches the provider once.
 */
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { describe, it, type TestContext } from 'node:test'
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3'
import OpenAI from 'openai'
import postgres from 'postgres'
import * as tus from 'tus-js-client'
import { startS3Server } from '../fakes/s3-server.js'
import { auth, createTestDatabase, freePort, postgresSuiteSkip, startFakes, testKeys } from '../helper.js'
import { eventually, killGroup, serverEnv, spawnNode, waitForStatus, waitUntil } from '../process-support.js'
import { content, md5, sha256, tusHeaders, tusMetadata } from './resumable-support.js'

const skip = await postgresSuiteSkip()

/**
 * Two replicas over one database and one S3 bucket, with fake providers; `second` is added to the
 * second replica's environment. The leases of a dead replica (the upload's, the provider claim's)
 * run out within two seconds.
 */
async function twoReplicas(t: TestContext, second: Record<string, string> = {}) {
  const db = await createTestDatabase('filegate_resumable')
  t.after(() => db.drop())
  const fakes = await startFakes(t)
  const s3 = await startS3Server(t)
  const shared = {
    DATABASE_URL: db.url,
    ...fakes.env,
    ORIGINALS_URL: `s3://${s3.bucket}/originals`,
    S3_ENDPOINT: s3.endpoint,
    S3_ACCESS_KEY_ID: 'S3RVER',
    S3_SECRET_ACCESS_KEY: 'S3RVER',
    S3_FORCE_PATH_STYLE: 'true',
    CLAIM_LEASE_SECONDS: '2',
  }
  const ports = [await freePort(), await freePort()] as const
  const children = [
    spawnNode(t, 'src/server.ts', await serverEnv(t, ports[0], shared)),
    spawnNode(t, 'src/server.ts', await serverEnv(t, ports[1], { ...shared, ...second })),
  ] as const
  await Promise.all(children.map((child, i) => waitForStatus(child, ports[i] as number, '/readyz', 200, 60_000)))
  const client = new S3Client({ ...s3.options, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } })
  t.after(() => client.destroy())
  const sql = postgres(db.url, { max: 1, onnotice: () => {} })
  t.after(() => sql.end())
  return {
    fakes,
    sql,
    children,
    urls: ports.map((p) => `http://127.0.0.1:${p}`) as [string, string],
    /** The keys under `Prefix` in the bucket. */
    keys: async (Prefix: string) =>
      ((await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix }))).Contents ?? []).map((o) => o.Key),
  }
}

describe('resumable uploads across replicas', { skip }, () => {
  it('an upload begun on a replica that is SIGKILLed mid-PATCH completes on another (S3 staging)', async (t) => {
    const { fakes, sql, children, urls, keys } = await twoReplicas(t)
    const [first] = children
    const [a, b] = urls

    const bytes = content(3 * 1024 * 1024 + 123, 'replicas')
    const created = await fetch(`${a}/v1/uploads`, {
      method: 'POST',
      headers: tusHeaders(testKeys.alice, {
        'upload-length': String(bytes.length),
        'upload-metadata': tusMetadata({ filename: 'film.txt', provider: 'kimi' }),
      }),
    })
    assert.equal(created.status, 201)
    const location = created.headers.get('location') as string
    const firstChunk = 1024 * 1024
    const patched = await fetch(`${a}${location}`, {
      method: 'PATCH',
      headers: tusHeaders(testKeys.alice, { 'upload-offset': '0', 'content-type': 'application/offset+octet-stream' }),
      body: bytes.subarray(0, firstChunk),
    })
    assert.equal(patched.status, 204)

    // The second PATCH is under way on the first replica when it is killed.
    await new Promise<void>((resolve) => {
      const req = request(`${a}${location}`, {
        method: 'PATCH',
        headers: {
          ...tusHeaders(testKeys.alice, {
            'upload-offset': String(firstChunk),
            'content-type': 'application/offset+octet-stream',
          }),
          'content-length': String(bytes.length - firstChunk),
        },
      })
      req.on('error', () => resolve())
      req.write(bytes.subarray(firstChunk, firstChunk + 700 * 1024), () => {
        setTimeout(() => {
          killGroup(first.proc)
          resolve()
        }, 200)
      })
    })
    await first.exited

    const head = await fetch(`${b}${location}`, { method: 'HEAD', headers: tusHeaders(testKeys.alice) })
    assert.equal(head.status, 200)
    assert.equal(head.headers.get('upload-offset'), String(firstChunk), 'only what was recorded counts')

    // The real client resumes on the second replica: HEAD, then PATCHes (423 while the dead lease lasts).
    const fileId = await new Promise<string | undefined>((resolve, reject) => {
      const upload = new tus.Upload(bytes, {
        uploadUrl: `${b}${location}`,
        headers: auth(testKeys.alice),
        chunkSize: 1024 * 1024,
        retryDelays: [500, 1000, 1000, 1000, 1000],
        storeFingerprintForResuming: false,
        onSuccess: ({ lastResponse }) => resolve(lastResponse.getHeader('filegate-file-id')),
        onError: reject,
      })
      upload.start()
    })
    assert.ok(fileId)
    assert.equal(fakes.kimi.uploads.length, 1)
    assert.equal(fakes.kimi.uploads[0]?.sha256, sha256(bytes), 'the bytes intact at the provider')

    const file = (await (await fetch(`${b}/v1/files/${fileId}`, { headers: auth(testKeys.alice) })).json()) as {
      original_stored: boolean
      sha256: string
    }
    assert.equal(file.original_stored, true, 'the finished file is the original')
    assert.deepEqual(await keys('originals/.resumable/'), [], 'no segment left (the killed write included)')
    assert.deepEqual(await keys('originals/.staging/'), [], 'no staging object left')
    assert.deepEqual(await keys(`originals/alice/${sha256(bytes)}`), [`originals/alice/${sha256(bytes)}`])
    const [segments] = await sql`select count(*)::int as n from resumable_segments`
    assert.equal(segments?.n, 0)
  })
  it('completions under way on a replica that is SIGKILLed are taken up by another', async (t) => {
    // The survivor runs its scheduled jobs every second; the victim none (it never gets the chance).
    const { fakes, sql, children, urls, keys } = await twoReplicas(t, {
      CLEANUP_ENABLED: 'true',
      CLEANUP_CRON: '* * * * * *',
      RESUMABLE_RETRY_SECONDS: '1',
    })
    const [victim] = children
    const [a, b] = urls

    // A tus upload with all but its last chunk in, and an OpenAI Upload with its parts in, on the victim.
    const tusBytes = content(2 * 1024 * 1024 + 5, 'replicas-tus-completion')
    const created = await fetch(`${a}/v1/uploads`, {
      method: 'POST',
      headers: tusHeaders(testKeys.alice, {
        'upload-length': String(tusBytes.length),
        'upload-metadata': tusMetadata({ filename: 'film.txt', provider: 'kimi' }),
      }),
    })
    const location = created.headers.get('location') as string
    const lastChunk = 256 * 1024
    const chunk = (offset: number, end: number) =>
      fetch(`${a}${location}`, {
        method: 'PATCH',
        headers: tusHeaders(testKeys.alice, {
          'upload-offset': String(offset),
          'content-type': 'application/offset+octet-stream',
        }),
        body: tusBytes.subarray(offset, end),
      })
    assert.equal((await chunk(0, tusBytes.length - lastChunk)).status, 204)
    const openAiBytes = content(1024 * 1024 + 7, 'replicas-openai-completion')
    const onVictim = new OpenAI({ apiKey: testKeys.alice, baseURL: `${a}/providers/kimi/v1`, maxRetries: 0 })
    const upload = await onVictim.uploads.create({
      bytes: openAiBytes.length,
      filename: 'doc.txt',
      mime_type: 'text/plain',
      purpose: 'file-extract' as never,
    })
    const half = 512 * 1024
    const parts = [
      await onVictim.uploads.parts.create(upload.id, { data: new File([openAiBytes.subarray(0, half)], 'p0') }),
      await onVictim.uploads.parts.create(upload.id, { data: new File([openAiBytes.subarray(half)], 'p1') }),
    ]
    const order = { part_ids: parts.map((p) => p.id), md5: md5(openAiBytes) }

    // Both completions start on the victim and reach the provider, whose puts hang; then it dies.
    fakes.kimi.ops = ['upload']
    fakes.kimi.hang = true
    const lastPatch = chunk(tusBytes.length - lastChunk, tusBytes.length).catch((err: Error) => err)
    const firstComplete = onVictim.uploads.complete(upload.id, order).catch((err: Error) => err)
    await waitUntil('both provider puts under way', () => fakes.kimi.requests.upload >= 2, 30_000)
    killGroup(victim.proc)
    await victim.exited
    assert.ok((await lastPatch) instanceof Error, 'the last PATCH got no answer')
    assert.ok((await firstComplete) instanceof Error, 'the first complete got no answer')
    fakes.kimi.hang = false

    // tus: the survivor completes it with no request from anyone (the database is watched, not the API).
    const uploadId = location.split('/').at(-1) as string
    await eventually(
      'the survivor completes the tus upload by itself',
      async () => (await sql`select status from resumable_uploads where id = ${uploadId}`)[0]?.status === 'completed',
      60_000,
    )
    // OpenAI: the SDK's retried complete (through the load balancer: the survivor) answers the File.
    const onSurvivor = new OpenAI({ apiKey: testKeys.alice, baseURL: `${b}/providers/kimi/v1`, maxRetries: 0 })
    const done = await onSurvivor.uploads.complete(upload.id, order)
    assert.equal(done.status, 'completed')
    assert.equal(done.file?.bytes, openAiBytes.length)

    const sent = (bytes: Buffer) => fakes.kimi.uploads.filter((u) => u.sha256 === sha256(bytes)).length
    assert.equal(sent(tusBytes), 1, 'the tus file reached the provider once, intact')
    assert.equal(sent(openAiBytes), 1, 'the OpenAI file reached the provider once, intact')
    assert.equal(fakes.kimi.uploads.length, 2)
    const status = (await (await fetch(`${b}${location}`, { headers: auth(testKeys.alice) })).json()) as {
      status: string
      attempts: number
      file: { id: string; original_stored: boolean }
    }
    assert.equal(status.status, 'completed')
    assert.equal(status.attempts, 2, "the victim's attempt, then the survivor's")
    assert.equal(status.file.original_stored, true)
    // Whoever completes an upload marks it completed, then removes its segments: an answer read from
    // the completed row (the SDK's retry, the status above) may come between the two.
    await eventually('no segment left', async () => (await keys('originals/.resumable/')).length === 0, 30_000)
    assert.deepEqual(await keys('originals/.staging/'), [], 'no staging object left')
    for (const bytes of [tusBytes, openAiBytes]) {
      assert.deepEqual(await keys(`originals/alice/${sha256(bytes)}`), [`originals/alice/${sha256(bytes)}`])
    }
  })
})
