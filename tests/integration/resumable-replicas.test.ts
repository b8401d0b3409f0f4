/**
 * A tus upload begun on one replica continues on another: two service processes (each leading its
 * own process group) share one Postgres database and stage segments in one S3 bucket (s3rver). The
 * first is SIGKILLed in the middle of a PATCH; the real tus-js-client then resumes on the second
 * from the offset HEAD reports (waiting out the dead replica's lease), the bytes reach the provider
 * intact, the finished file is kept as the original, and no segment or staging object is left.
 */
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { describe, it } from 'node:test'
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3'
import postgres from 'postgres'
import * as tus from 'tus-js-client'
import { startS3Server } from '../fakes/s3-server.js'
import { auth, createTestDatabase, freePort, postgresSuiteSkip, startFakes, testKeys } from '../helper.js'
import { killGroup, serverEnv, spawnNode, waitForStatus } from '../process-support.js'
import { content, sha256, tusHeaders, tusMetadata } from './resumable-support.js'

const skip = await postgresSuiteSkip()

describe('resumable uploads across replicas', { skip }, () => {
  it('an upload begun on a replica that is SIGKILLed mid-PATCH completes on another (S3 staging)', async (t) => {
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
      // A dead PATCH's lease runs out within two seconds.
      CLAIM_LEASE_SECONDS: '2',
    }
    const ports = [await freePort(), await freePort()] as const
    const [first, second] = await Promise.all(
      ports.map(async (port) => spawnNode(t, 'src/server.ts', await serverEnv(t, port, shared))),
    )
    if (!first || !second) throw new Error('two replicas')
    await Promise.all([
      waitForStatus(first, ports[0], '/readyz', 200, 60_000),
      waitForStatus(second, ports[1], '/readyz', 200, 60_000),
    ])
    const [a, b] = ports.map((p) => `http://127.0.0.1:${p}`) as [string, string]

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
    const client = new S3Client({ ...s3.options, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } })
    t.after(() => client.destroy())
    const keys = async (Prefix: string) =>
      ((await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix }))).Contents ?? []).map((o) => o.Key)
    assert.deepEqual(await keys('originals/.resumable/'), [], 'no segment left (the killed write included)')
    assert.deepEqual(await keys('originals/.staging/'), [], 'no staging object left')
    assert.deepEqual(await keys(`originals/alice/${sha256(bytes)}`), [`originals/alice/${sha256(bytes)}`])
    const sql = postgres(db.url, { max: 1, onnotice: () => {} })
    t.after(() => sql.end())
    const [segments] = await sql`select count(*)::int as n from resumable_segments`
    assert.equal(segments?.n, 0)
  })
})
