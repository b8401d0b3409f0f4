/**
 * The fake Gemini (./gemini-server.ts) in a process of its own, for tests that measure the resident
 * memory of theirs: what the fake receives (100 MB in 8 MiB chunks at loopback speed, read from the
 * socket 64 KiB at a time) is garbage in whichever process holds the fake, and a provider's garbage
 * is not the service's. It prints one line of JSON, `{ baseUrl, apiKey, control }`, once it listens;
 * `GET <control>/uploads` answers the fake's completed uploads.
 */
import { startFakeGemini } from './gemini-server.js'
import { serveOnLoopback } from './loopback.js'

const gemini = await startFakeGemini()
const control = await serveOnLoopback(
  async (req, res) => {
    if (req.method !== 'GET' || req.url !== '/uploads') {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(gemini.uploads))
  },
  (res, err) => res.writeHead(500).end(err.message),
)
process.stdout.write(`${JSON.stringify({ baseUrl: gemini.baseUrl, apiKey: gemini.apiKey, control: control.origin })}\n`)
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void Promise.all([gemini.close(), control.close()]).then(() => process.exit(0))
  })
}
