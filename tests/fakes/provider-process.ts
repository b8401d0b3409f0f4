/**
 * A fake provider (`gemini`: ./gemini-server.ts; `kimi`: ./provider-server.ts) in a process of its
 * own, for tests that measure the resident memory of theirs: what a fake receives (100 MB at
 * loopback speed, read from the socket 64 KiB at a time) is garbage in whichever process holds the
 * fake, and a provider's garbage is not the service's. Run with the kind as its argument, it prints
 * one line of JSON, `{ baseUrl, apiKey, control }`, once it listens; `GET <control>/uploads`
 * answers the fake's completed uploads.
 */
import { startFakeGemini } from './gemini-server.js'
import { serveOnLoopback } from './loopback.js'
import { startFakeProvider } from './provider-server.js'

const kind = process.argv[2]
if (kind !== 'gemini' && kind !== 'kimi') throw new Error(`usage: provider-process.ts gemini|kimi (got ${kind})`)
const fake =
  kind === 'gemini'
    ? await startFakeGemini()
    : await startFakeProvider({ kind: 'kimi', apiKey: `sk-kimi-${process.pid}-0123456789` })
const control = await serveOnLoopback(
  async (req, res) => {
    if (req.method !== 'GET' || req.url !== '/uploads') {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(fake.uploads))
  },
  (res, err) => res.writeHead(500).end(err.message),
)
process.stdout.write(`${JSON.stringify({ baseUrl: fake.baseUrl, apiKey: fake.apiKey, control: control.origin })}\n`)
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void Promise.all([fake.close(), control.close()]).then(() => process.exit(0))
  })
}
