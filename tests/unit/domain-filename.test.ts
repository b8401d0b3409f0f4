/** sanitizeFilename and extensionOf: untrusted client filenames reduced to a safe basename. */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { extensionOf, sanitizeFilename } from '../../src/domain/filename.js'

describe('sanitizeFilename', () => {
  test('keeps only the basename, whatever the separator', () => {
    assert.equal(sanitizeFilename('../../etc/passwd'), 'passwd')
    assert.equal(sanitizeFilename('C:\\Users\\eve\\report.pdf'), 'report.pdf')
    assert.equal(sanitizeFilename('/abs/dir/'), 'file')
    assert.equal(sanitizeFilename('a/b\\c.txt'), 'c.txt')
  })

  test('drops control, zero-width and bidi-override characters; replaces reserved ones', () => {
    assert.equal(sanitizeFilename('a\u0000b\u0001c\u001f\u007f\u0085.txt'), 'abc.txt')
    assert.equal(sanitizeFilename('invoice\u202efdp.exe'), 'invoicefdp.exe')
    assert.equal(sanitizeFilename('zero\u200bwidth\ufeff.md'), 'zerowidth.md')
    assert.equal(sanitizeFilename('what?<is>"this":|*.txt'), 'what__is__this____.txt')
    assert.doesNotMatch(sanitizeFilename('line\r\nbreak.txt'), /[\r\n]/)
  })

  test('no hidden or empty names', () => {
    assert.equal(sanitizeFilename('.bashrc'), 'bashrc')
    assert.equal(sanitizeFilename('...'), 'file')
    assert.equal(sanitizeFilename(''), 'file')
    assert.equal(sanitizeFilename(undefined), 'file')
    assert.equal(sanitizeFilename('  \u0001  '), 'file')
  })

  test('keeps Unicode letters, normalised to NFC', () => {
    assert.equal(sanitizeFilename('季度报告.pdf'), '季度报告.pdf')
    assert.equal(sanitizeFilename('cafe\u0301.txt'), 'café.txt')
  })

  test('bounds the name to 255 UTF-8 bytes, keeping the extension and whole characters', () => {
    const ascii = sanitizeFilename(`${'a'.repeat(1000)}.docx`)
    assert.equal(Buffer.byteLength(ascii), 255)
    assert.ok(ascii.endsWith('.docx'))
    const wide = sanitizeFilename(`${'文'.repeat(1000)}.pdf`)
    assert.ok(Buffer.byteLength(wide) <= 255)
    assert.match(wide, /^文+\.pdf$/, 'no character is cut in half')
    const emoji = sanitizeFilename(`${'😀'.repeat(300)}.txt`)
    assert.ok(Buffer.byteLength(emoji) <= 255)
    assert.match(emoji, /^(😀)+\.txt$/u)
    // an absurd "extension" is not worth keeping
    const longExt = sanitizeFilename(`name.${'x'.repeat(400)}`)
    assert.ok(Buffer.byteLength(longExt) <= 255)
    assert.ok(longExt.startsWith('name.'))
    // short names are left alone
    assert.equal(sanitizeFilename('report.final.PDF'), 'report.final.PDF')
  })
})

describe('extensionOf', () => {
  test('lower-case extension without the dot, or empty', () => {
    assert.equal(extensionOf('a.PDF'), 'pdf')
    assert.equal(extensionOf('archive.tar.gz'), 'gz')
    assert.equal(extensionOf('README'), '')
    assert.equal(extensionOf('.env'), '')
    assert.equal(extensionOf('trailing.'), '')
  })
})
