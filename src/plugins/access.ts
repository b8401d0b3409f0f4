/**
 * Keys kept in the database and the audit, wired in: the keyring authentication reads (its cache
 * kept true by the announcements on `filegate_keys`, heard once the schema is ready), the key
 * management and audit services the routes call. On close the listening stops and the keys used
 * since the last write get their last_used_at.
 */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Config } from '../config.js'
import { AuditService } from '../domain/audit.js'
import { Keyring, keysChannel } from '../domain/keyring.js'
import { KeyService } from '../domain/keys.js'

declare module 'fastify' {
  interface FastifyInstance {
    keyring: Keyring
    keys: KeyService
    audit: AuditService
  }
}

/**
 * Without announcements a cached key is trusted this long: on the Supabase transport (PostgREST
 * carries no notifications) 4 s, so that a change is seen within 5 s with the lookup's own time;
 * elsewhere, while the listening connection is down, under a second.
 */
const unannouncedTtlMs = (store: Config['store']) =>
  store.transport === 'supabase' && store.databaseUrl === undefined ? 4_000 : 900

export default fp(
  async function accessPlugin(app: FastifyInstance, opts: { config: Config }) {
    const { store, readiness } = app
    const keyring = new Keyring({ store, unannouncedTtlMs: unannouncedTtlMs(opts.config.store) })
    app.decorate('keyring', keyring)
    const providerNames = opts.config.providers.map((p) => p.name)
    app.decorate('keys', new KeyService(store, providerNames, (change) => keyring.announced(change)))
    app.decorate('audit', new AuditService(store))

    let closed = false
    let unlisten: (() => Promise<void>) | undefined
    // A start-up that failed for good is reported by the store plugin: then there is nothing to hear.
    const listening = readiness.schemaReadyPromise.then(
      async () => {
        if (closed) return
        if (!store.listen) {
          app.log.info('key changes are not announced on this transport: cached keys are checked again every 4 s')
          return
        }
        unlisten = await store.listen(keysChannel, {
          notify: (payload) => keyring.announced(payload),
          listening: () => keyring.listening(),
          lost: () => {
            keyring.notListening()
            if (!closed) app.log.warn('the connection hearing key changes broke; listening again')
          },
        })
      },
      () => undefined,
    )
    listening.catch((err: unknown) => {
      if (!closed) app.log.error({ err }, 'cannot listen for key changes: cached keys are checked again every second')
    })

    app.addHook('onClose', async () => {
      closed = true
      // A schema never ready (start-up failed, or closed first) leaves nothing listening.
      if (readiness.schemaReady) await listening.catch(() => {})
      await unlisten?.()
      await keyring.close()
    })
  },
  { name: 'filegate-access', dependencies: ['filegate-store', 'filegate-readiness'] },
)
