/**
 * `promtool check metrics` (Prometheus' own linter, Debian package `prometheus`) accepts what
 * /metrics serves, with the labelled series present: uploads that succeed, deduplicate and fail,
 * refusals, deletes, a cleanup run and HTTP traffic are made first. Without promtool the test
 * skips with a notice; with CI=true it fails instead (.ci/run installs it).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { auth, build, multipart, pgliteStore, startFakes, tempDir, testKeys } from '../helper.js'
import { requirePromtool, runPromtool } from '../tools.js'

describe('/metrics', () => {
  it('passes promtool check metrics', async (t) => {
    if (!requirePromtool(t)) return
    const store = await pgliteStore(t)
    const fakes = await startFakes(t)
    const app = await build(
      t,
      { ...fakes.env, UPLOAD_TMP_DIR: await tempDir(t, 'filegate-spool-'), RETRY_MAX_ATTEMPTS: '1' },
      { store },
    )
    const headers = auth(testKeys.alice)
    const upload = async (provider: string, content: string, filename = 'notes.txt') => {
      const body = multipart([
        ['provider', provider],
        ['file', { filename, content, type: 'text/plain' }],
      ])
      return app.inject({
        method: 'POST',
        url: '/v1/files',
        headers: { ...headers, ...body.headers },
        payload: body.payload,
      })
    }

    const created = await upload('kimi', 'metrics check\n')
    assert.equal(created.statusCode, 201, created.body)
    assert.equal((await upload('kimi', 'metrics check\n')).statusCode, 200)
    fakes.glm.failNext(1, 500, 'upload')
    assert.ok((await upload('glm', 'fails at the provider\n')).statusCode >= 500)
    assert.equal((await upload('kimi', '')).statusCode, 400)
    assert.equal((await upload('kimi', 'x', 'tool.exe')).statusCode, 415)
    assert.equal((await app.inject({ method: 'GET', url: '/v1/files', headers })).statusCode, 200)
    const id = created.json().id as string
    assert.equal((await app.inject({ method: 'DELETE', url: `/v1/files/${id}`, headers })).statusCode, 200)
    const cleanup = await app.inject({
      method: 'POST',
      url: '/v1/cleanup',
      headers: auth(testKeys.admin),
      payload: { dry_run: false },
    })
    assert.equal(cleanup.statusCode, 200, cleanup.body)
    await app.inject({ method: 'GET', url: '/no-such-route' })

    const scrape = await app.inject({ method: 'GET', url: '/metrics' })
    assert.equal(scrape.statusCode, 200)
    assert.match(scrape.headers['content-type'] as string, /^text\/plain; version=0\.0\.4/)
    const exposition = scrape.body
    for (const series of [
      'filegate_file_upload_attempts_total{provider="kimi"}',
      'filegate_file_upload_bytes_total{provider="kimi",status="success"}',
      'filegate_file_upload_bytes_total{provider="kimi",status="deduplicated"}',
      'filegate_file_deduplication_hits_total{provider="kimi"}',
      'filegate_file_upload_duration_seconds_bucket{le="0.05",provider="kimi"}',
      'filegate_file_deletions_total{provider="kimi",reason="manual"}',
      'filegate_http_request_duration_seconds_count{method="POST",route="/v1/files",status_code="201"}',
    ]) {
      assert.ok(exposition.includes(series), `${series} is exposed`)
    }

    const { code, output } = await runPromtool(t, ['check', 'metrics'], exposition)
    assert.equal(code, 0, `promtool check metrics reported:\n${output}`)
    t.diagnostic(`promtool check metrics: clean (${exposition.split('\n').length} lines)`)
  })
})
