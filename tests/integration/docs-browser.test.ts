/**
 * /docs in a real browser: headless Chromium (Debian package chromium) loads the page from the
 * running service on a random port, authorizes with an API key, and uploads a file through
 * "Try it out" on POST /v1/files. The request must go to the host that served the page (the
 * document's server URL is relative), and the file must arrive at the provider. Without Chromium
 * the test skips with a notice; with CI=true it fails (.ci/run installs it).
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { chromium, openPage, type Page } from '../cdp.js'
import { auth, build, fileDatabase, requirePostgres, startFakes, tempDir, testKeys } from '../helper.js'
import { requireTool } from '../tools.js'

/**
 * Sets a React-controlled input the way typing does: React listens for `input` events, and Swagger
 * UI's form fields are debounced inputs that pass their value on at once when they lose focus.
 */
const fill = (page: Page, selector: string, value: string) =>
  page.evaluate(`(() => {
    const input = document.querySelector(${JSON.stringify(selector)})
    if (!input) throw new Error('no ' + ${JSON.stringify(selector)})
    input.focus()
    Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(input, ${JSON.stringify(value)})
    input.dispatchEvent(new Event('input', { bubbles: true }))
    input.blur()
    return true
  })()`)

const click = (page: Page, selector: string) =>
  page.evaluate(`(() => {
    const element = document.querySelector(${JSON.stringify(selector)})
    if (!element) throw new Error('no ' + ${JSON.stringify(selector)})
    element.click()
    return true
  })()`)

const exists = (selector: string) => `!!document.querySelector(${JSON.stringify(selector)})`

describe('/docs in headless Chromium', () => {
  it('uploads a file through "Try it out" to the host that serves the page', async (t) => {
    if (!requireTool(t, { command: chromium, probeArgs: ['--version'], install: 'apt-get install chromium' })) return
    if (!(await requirePostgres(t))) return
    const db = await fileDatabase(t)
    const fakes = await startFakes(t)
    const app = await build(t, {
      ...fakes.env,
      DATABASE_URL: db.url,
      UPLOAD_TMP_DIR: await tempDir(t, 'filegate-docs-spool-'),
    })
    // A random port: a fixed server URL in the document (127.0.0.1:8080) would miss it.
    const base = await app.listen({ host: '127.0.0.1', port: 0 })
    const content = `uploaded from the browser at ${new Date().toISOString()}\n`
    const path = join(await tempDir(t, 'filegate-docs-file-'), 'browser-note.txt')
    await writeFile(path, content)

    const page = await openPage(t, `${base}/docs`)
    const op = '#operations-files-uploadFile'
    await page.waitFor(exists(op), 'the upload operation on /docs')

    await click(page, 'button.btn.authorize')
    await page.waitFor(exists('#auth-bearer-value'), 'the Authorize dialog')
    await fill(page, '#auth-bearer-value', testKeys.alice)
    await click(page, '.auth-btn-wrapper button.authorize')
    await page.waitFor(exists('.auth-btn-wrapper button.btn-done'), 'the authorized state')
    await click(page, '.auth-btn-wrapper button.btn-done')

    await click(page, `${op} .opblock-summary-control`)
    await page.waitFor(exists(`${op} .try-out__btn`), '"Try it out"')
    await click(page, `${op} .try-out__btn`)
    await page.waitFor(exists(`${op} tr[data-property-name="file"] input[type=file]`), 'the upload form')
    // The form starts from placeholder values ("string"): fill every field as a user would.
    const form = { provider: 'kimi', purpose: 'file-extract', expires_in: '3600', metadata: '{"from":"docs"}' }
    for (const [field, value] of Object.entries(form))
      await fill(page, `${op} tr[data-property-name="${field}"] input[type=text]`, value)
    const { result } = await page.send<{ result: { objectId: string } }>('Runtime.evaluate', {
      expression: `document.querySelector('${op} tr[data-property-name="file"] input[type=file]')`,
    })
    await page.send('DOM.setFileInputFiles', { files: [path], objectId: result.objectId })

    await click(page, `${op} button.execute`)
    const status = await page.waitFor<string>(
      `document.querySelector('${op} .live-responses-table .response .response-col_status')?.textContent.trim()`,
      'the response in the page',
    )
    const requestUrl = await page.evaluate<string>(`document.querySelector('${op} .request-url pre')?.textContent`)
    const body = await page.evaluate<string>(
      `document.querySelector('${op} .live-responses-table .response-col_description pre')?.textContent`,
    )
    assert.equal(status, '201', `the page shows 201; body: ${body}\nconsole: ${page.console.join('\n')}`)
    assert.equal(requestUrl, `${base}/v1/files`, 'the request went to the host serving the page')

    const file = JSON.parse(body) as {
      id: string
      provider: string
      purpose: string
      metadata: unknown
      sha256: string
      filename: string
    }
    assert.equal(file.provider, 'kimi')
    assert.equal(file.purpose, 'file-extract')
    assert.deepEqual(file.metadata, { from: 'docs' })
    assert.equal(file.filename, 'browser-note.txt')
    assert.equal(file.sha256, createHash('sha256').update(content).digest('hex'))
    const stored = await app.inject({ method: 'GET', url: `/v1/files/${file.id}`, headers: auth(testKeys.alice) })
    assert.equal(stored.json().status, 'completed')
    assert.equal(fakes.kimi.uploads.length, 1, 'the provider received the file')
  })
})
