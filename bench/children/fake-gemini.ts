/**
 * The fake Gemini Files API (tests/fakes/gemini-server.ts: the resumable protocol, bodies hashed as
 * they stream) in its own process, as children/fake-provider.ts runs the fake Kimi, so its hashing
 * does not share an event loop with the load generator or the service.
 */
import { startFakeGemini } from '../../tests/fakes/gemini-server.js'

const fake = await startFakeGemini({ apiKey: process.env.FAKE_API_KEY ?? 'gemini-bench' })
process.on('disconnect', () => {
  void fake.close().finally(() => process.exit(0))
})
process.send?.({ ready: true, baseUrl: fake.baseUrl })
