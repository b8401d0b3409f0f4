/** docs/providers.md is the facts tables and the error classification as the code has them. */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { test } from 'node:test'
import { providersDocPath, renderProvidersDoc } from '../../scripts/providers-doc.js'

test('docs/providers.md matches the facts in code (run `npm run docs:providers` after changing them)', async () => {
  const committed = await readFile(providersDocPath, 'utf8')
  assert.equal(committed, renderProvidersDoc())
})

test('docs/providers.md gives the date read and a doc URL for every purpose row', () => {
  const text = renderProvidersDoc()
  assert.match(text, /read on \*\*2026-11-27\*\*/)
  // The generic OpenAI-compatible defaults are filegate's choice, not a provider's docs: no doc link.
  const documented = text.slice(0, text.indexOf('## OpenAI-compatible providers'))
  const rows = documented.split('\n').filter((l) => /^\| `[a-z_-]+` \|/.test(l))
  assert.equal(
    rows.length,
    4 + 5 + 5 + 6 + 1 + 1,
    'Kimi 4 purposes, GLM 5 on each endpoint, OpenAI 6, Anthropic 1, Gemini 1',
  )
  for (const row of rows) assert.match(row, /\[doc\]\(https:\/\//, row)
  for (const kind of ['Kimi', 'GLM', 'OpenAI (native)', 'Anthropic', 'Gemini'])
    assert.match(text, new RegExp(`## ${kind.replace(/[()]/g, '\\$&')}`))
  assert.match(text, /## Where the docs and the issue disagree/)
})
