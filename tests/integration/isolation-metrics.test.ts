/**
 * /metrics is no free database load: the live-usage gauges are read from the database at most
 * once every few seconds whatever the scrape rate, and with METRICS_TOKEN set both the app's
 * /metrics and the METRICS_PORT listener want it as a bearer token.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { freePort } from '../helper.js'
import {
  assertProblem,
  concurrently,
  filePart,
  freshTenant,
  metricIn,
  postFile,
  routeStoreCalls,
  setupUploads,
  useFileDatabase,
} from './uploads-support.js'

const database = useFileDatabase()
const token = 'metrics-token-0123456789abcdef'

describe('/metrics', () => {
  test('METRICS_TOKEN: 401 without it or with another, 200 with it, on both listeners', async (t) => {
    const port = await freePort()
    const ctx = await setupUploads(t, database, { METRICS_TOKEN: token, METRICS_PORT: String(port) })
    if (!ctx) return
    for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789abcdef' }, { authorization: token }]) {
      const res = await ctx.app.inject({ method: 'GET', url: '/metrics', headers })
      assertProblem(res, 401, 'UNAUTHORIZED')
      assert.match(String(res.headers['www-authenticate']), /^Bearer/)
      assert.doesNotMatch(res.body, /filegate_/)
    }
    const ok = await ctx.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } })
    assert.equal(ok.statusCode, 200)
    assert.match(ok.body, /filegate_file_active_uploads/)

    const url = `http://127.0.0.1:${port}/metrics`
    const refused = await fetch(url)
    assert.equal(refused.status, 401)
    assert.match(String(refused.headers.get('content-type')), /^application\/problem\+json/)
    assert.equal(((await refused.json()) as { code: string }).code, 'UNAUTHORIZED')
    const scraped = await fetch(url, { headers: { authorization: `Bearer ${token}` } })
    assert.equal(scraped.status, 200)
    assert.match(await scraped.text(), /filegate_file_active_uploads/)
    // the probes stay open
    assert.equal((await ctx.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200)
  })

  test('100 scrapes cost one usage query, and the first shows the live usage', async (t) => {
    const ctx = await setupUploads(t, database)
    if (!ctx) return
    const uploaded = await postFile(ctx.app, freshTenant('scrape'), [['provider', 'kimi'], filePart('counted once')])
    assert.equal(uploaded.statusCode, 201, uploaded.body)
    const queries: string[] = []
    routeStoreCalls(t, ctx.app, (call, fn, args) => {
      queries.push(fn)
      return call(fn, args)
    })
    const scrape = async () => {
      const res = await ctx.app.inject({ method: 'GET', url: '/metrics' })
      assert.equal(res.statusCode, 200)
      return res.body
    }
    const started = Date.now()
    const first = await scrape()
    assert.ok(metricIn(first, 'filegate_provider_files', { provider: 'kimi' }) >= 1, 'the upload is counted')
    assert.ok(metricIn(first, 'filegate_provider_bytes', { provider: 'kimi' }) >= 'counted once'.length)
    await concurrently(50, scrape)
    for (let i = 0; i < 49; i++) await scrape()
    const elapsed = Date.now() - started
    const usageQueries = queries.filter((q) => q === 'provider_usage').length
    t.diagnostic(`${usageQueries} provider_usage queries for 100 scrapes in ${elapsed} ms`)
    // One read per 5 s at most, however fast the scrapes come (one, unless this box is very slow).
    assert.ok(usageQueries >= 1 && usageQueries <= 1 + Math.floor(elapsed / 5000), `${usageQueries} reads`)
  })
})
