/** Wires the provider registry (one resilient files client per provider) and its metrics. */
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { circuitStateValue } from '../metrics.js'
import { createProviderRegistry, type ProviderRegistry, type RegistrySettings } from '../providers/registry.js'

declare module 'fastify' {
  interface FastifyInstance {
    providers: ProviderRegistry
  }
}

export default fp(
  async function providersPlugin(
    app: FastifyInstance,
    opts: { config: RegistrySettings; registry?: ProviderRegistry },
  ) {
    const { metrics } = app
    const registry =
      opts.registry ??
      createProviderRegistry(opts.config, {
        onCircuitOpen: (provider) => {
          metrics.circuitTrips.inc({ provider })
          app.log.warn({ provider }, 'provider circuit opened')
        },
        onCircuitStateChange: (provider, state) => {
          metrics.circuitState.set({ provider }, circuitStateValue[state])
        },
        onUploadSlotRefused: (provider, reason) => {
          metrics.uploadSlotRefusals.inc({ provider, reason })
        },
      })
    for (const p of registry.list()) metrics.circuitState.set({ provider: p.name }, circuitStateValue[p.circuitState()])
    for (const p of opts.config.providers) {
      if (p.maxFiles !== null) metrics.providerMaxFiles.set({ provider: p.name }, p.maxFiles)
      if (p.maxTotalBytes !== null) metrics.providerMaxBytes.set({ provider: p.name }, p.maxTotalBytes)
    }
    app.decorate('providers', registry)
    app.addHook('onClose', async () => {
      if (!opts.registry) await registry.close()
    })
  },
  { name: 'filegate-providers', dependencies: ['filegate-metrics'] },
)
