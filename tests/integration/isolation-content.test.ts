/**
 * Provider content is served as a download, never as a page on filegate's origin: a provider's
 * `text/html` with a script comes back from both content routes with `X-Content-Type-Options:
 * nosniff`, `Content-Disposition: attachment` naming the sanitised filename, and a CSP that
 * sandboxes it and allows nothing.
 */
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { describe, test } from 'node:test'
import type { LightMyRequestResponse } from 'fastify'
import { as, filePart, freshTenant, postFile, setupUploads, useFileDatabase } from './uploads-support.js'

const database = useFileDatabase()

/** RFC 8187 ext-value `UTF-8''…` decoded. */
const extValue = (disposition: string) => {
  const m = /filename\*=UTF-8''([^;\s]+)/.exec(disposition)
  return m?.[1] === undefined ? undefined : decodeURIComponent(m[1])
}

describe('file content is served as a download', () => {
  test("a provider's text/html with a script: nosniff, attachment with the filename, sandboxing CSP", async (t) => {
    const ctx = await setupUploads(t, database)
    if (!ctx) return
    const tenant = freshTenant('content')
    const page = '<html><body><script>fetch("/v1/files").then(r => r.text()).then(alert)</script></body></html>'
    const res = await postFile(ctx.app, tenant, [['provider', 'kimi'], filePart('page', '季度 <报告>.txt')])
    assert.equal(res.statusCode, 201, res.body)
    const file = res.json() as { id: string; filename: string; provider_file_id: string }
    assert.equal(file.filename, '季度 _报告_.txt')
    const stored = ctx.fakes.kimi.files.get(file.provider_file_id)
    assert.ok(stored)
    stored.content = () => Readable.from([page])
    stored.contentType = 'text/html; charset=utf-8'

    for (const url of [`/v1/files/${file.id}/content`, `/providers/kimi/v1/files/${file.provider_file_id}/content`]) {
      const got: LightMyRequestResponse = await ctx.app.inject({ method: 'GET', url, headers: as(tenant) })
      assert.equal(got.statusCode, 200, `${url}: ${got.body}`)
      assert.equal(got.body, page, `${url}: the bytes are passed through unchanged`)
      assert.equal(got.headers['x-content-type-options'], 'nosniff', url)
      assert.equal(got.headers['content-security-policy'], "default-src 'none'; sandbox", url)
      const disposition = String(got.headers['content-disposition'])
      assert.match(disposition, /^attachment; filename="[\x20-\x7e]*"; filename\*=UTF-8''/, url)
      assert.equal(extValue(disposition), file.filename, `${url}: filename* is the sanitised filename`)
      assert.doesNotMatch(disposition.split(';')[1] ?? '', /"[^"]*"[^"]*"/, 'no quote breaks out of the ASCII name')
    }
  })
})
