/**
 * The originals store (ORIGINALS_URL), when one is configured: `app.originals` is undefined
 * otherwise, and everything that needs it answers ORIGINAL_UNAVAILABLE. Opening it makes no
 * network call (the AWS SDK connects on first use); readiness pings it.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { spoolFilePath } from '../domain/spool.js'
import { createOriginalsStore, type OriginalsStore } from '../originals/index.js'

declare module 'fastify' {
  interface FastifyInstance {
    originals: OriginalsStore | undefined
  }
}

export default fp(
  async function originalsPlugin(
    app: FastifyInstance,
    opts: { config: Config['originals']; tmpDir: string; store?: OriginalsStore | undefined },
  ) {
    // An S3 part (5 MiB at least) waits in a file beside the spool files, not in memory.
    const partFile = () => spoolFilePath(opts.tmpDir)
    const store = opts.store ?? (opts.config ? await createOriginalsStore({ ...opts.config, partFile }) : undefined)
    app.decorate('originals', store)
    app.addHook('onClose', async () => {
      if (store && !opts.store) await store.close()
    })
  },
  { name: 'filegate-originals' },
)
