/**
 * Process entry: config → buildApp → listen; graceful shutdown on SIGTERM/SIGINT.
 * The process listens before its database is open (that happens in the background, however long
 * it takes); a start-up that fails for good (a broken migration) stops it with exit code 1.
 * On the first signal readiness fails at once, new work is refused, and after
 * SHUTDOWN_DRAIN_MS the listener closes and in-flight requests finish within
 * SHUTDOWN_TIMEOUT_MS; a second signal exits at once (close-with-grace).
 */
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './config.js'

async function main() {
  let config: ReturnType<typeof loadConfig>
  try {
    config = loadConfig(process.env)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`filegate: ${err.message}\n`)
      process.exit(1)
    }
    throw err
  }

  // The OpenTelemetry SDK is loaded only when tracing is on.
  const tracing = config.tracing.endpoint ? (await import('./tracing.js')).startTracing(config.tracing) : undefined
  const app = await buildApp(
    config,
    tracing ? { instrumentation: tracing.plugin, logger: { mixin: tracing.logFields } } : {},
  )
  if (tracing) {
    app.log.info({ endpoint: new URL(config.tracing.endpoint as string).origin }, 'OpenTelemetry tracing on')
    app.addHook('onClose', () => tracing.shutdown())
  }
  closeWithGrace({ delay: config.timeouts.shutdownMs, logger: app.log }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'fatal error, closing')
    else app.log.info({ signal }, 'shutting down: readiness failed, finishing in-flight requests')
    app.readiness.beginShutdown()
    if (config.shutdownDrainMs > 0 && signal) await new Promise((r) => setTimeout(r, config.shutdownDrainMs))
    await app.close()
    app.log.info('shutdown complete')
  })
  await app.listen({ host: config.host, port: config.port })
  app.readiness.schemaReadyPromise.catch(async (err: unknown) => {
    process.stderr.write(`filegate: start-up failed: ${err instanceof Error ? err.message : String(err)}\n`)
    // Closing begins the shutdown (the readiness plugin's preClose).
    await app.close().catch(() => {})
    process.exit(1)
  })
  if (config.openMode)
    app.log.warn(
      'neither API_KEYS nor JWT_ISSUER: open mode (tenant "default", loopback only) until the first key is created (filegate keys create)',
    )
}

main().catch((err) => {
  process.stderr.write(`filegate: failed to start: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
