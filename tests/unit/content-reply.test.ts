/** attachmentDisposition: a Content-Disposition header value Node accepts for any sanitised filename. */
import assert from 'node:assert/strict'
import { validateHeaderValue } from 'node:http'
import { describe, test } from 'node:test'
import { attachmentDisposition } from '../../routes/content-reply.js'

const extended = (value: string) => decodeURIComponent(/filename\*=UTF-8''(.+)$/.exec(value)?.[1] ?? '')

describe('attachmentDisposition', () => {
  test('ASCII names are quoted as they are, with the exact name in filename*', () => {
    assert.equal(
      attachmentDisposition('report final.pdf'),
      `attachment; filename="report final.pdf"; filename*=UTF-8''report%20final.pdf`,
    )
  })

  test('quotes, backslashes and non-ASCII become _ in the fallback; filename* keeps them; Node accepts it', () => {
    for (const name of ['季度报告.pdf', 'a"b\\c.txt', "it's (1) *draft*.md", '😀.txt', 'x;y=z.txt', '%41.txt']) {
      const value = attachmentDisposition(name)
      assert.doesNotThrow(() => validateHeaderValue('content-disposition', value), name)
      const fallback = /filename="([^"]*)"/.exec(value)?.[1] ?? ''
      assert.match(fallback, /^[\x20-\x7e]*$/, name)
      assert.doesNotMatch(fallback, /["\\]/, name)
      assert.equal(extended(value), name, `${name}: filename* is exact`)
      assert.match(value.split("filename*=UTF-8''")[1] ?? '', /^[A-Za-z0-9%._~!-]*$/, `${name}: RFC 8187 attr-chars`)
    }
  })
})
