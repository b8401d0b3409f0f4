/**
 * The provider registry: one adapter per configured provider, built once at start. Known but
 * unconfigured providers (no API key) are not built; `require` answers them with
 * PROVIDER_NOT_CONFIGURED, and unknown names with UNKNOWN_PROVIDER.
 */
import { errors } from '../errors.js'
import {
  type AdapterSettings,
  type ClosableProviderAdapter,
  createProviderAdapter,
  filesClientWire,
  type WireKind,
} from './adapter.js'
import { anthropicDialect } from './anthropic.js'
import type { ProviderDialect } from './files-client.js'
import { geminiWire } from './gemini.js'
import { glmDialect } from './glm.js'
import { kimiDialect } from './kimi.js'
import { openAiCompatibleDialect, openAiNativeDialect } from './openai-compatible.js'
import { openAiUploadsWire } from './openai-uploads.js'
import type { ProviderAdapter, ProviderConfig, ProviderEvents } from './types.js'

export interface ProviderRegistry {
  /** The adapter of a configured provider; undefined when unknown or not configured. */
  get(name: string): ProviderAdapter | undefined
  /** Throws UNKNOWN_PROVIDER (400) or PROVIDER_NOT_CONFIGURED (503). */
  require(name: string): ProviderAdapter
  /** Configured providers, in configuration order (the built-in ones, then extras). */
  list(): ProviderAdapter[]
  close(): Promise<void>
}

/** The dialect (request and error shapes) of each kind the shared OpenAI-style files client speaks. */
export const providerDialects: Record<Exclude<ProviderConfig['kind'], 'gemini'>, ProviderDialect> = {
  kimi: kimiDialect,
  glm: glmDialect,
  openai: openAiCompatibleDialect,
  anthropic: anthropicDialect,
}

/** The dialect of one provider: its kind's, with OpenAI's `expires_after` where its facts document one. */
export function dialectOf(config: ProviderConfig & { kind: keyof typeof providerDialects }): ProviderDialect {
  if (config.kind === 'openai' && config.expiresAfter) return openAiNativeDialect(config.expiresAfter)
  return providerDialects[config.kind]
}

/** The wire of one provider: Gemini's own client, else the shared files client in the provider's dialect. */
export function wireOf(config: ProviderConfig): WireKind {
  if (config.kind === 'gemini') return geminiWire
  // OpenAI's own API (the kind with its documented expiry): files over 512 MB go through its Uploads API.
  if (config.kind === 'openai' && config.expiresAfter)
    return openAiUploadsWire(openAiNativeDialect(config.expiresAfter))
  return filesClientWire(dialectOf({ ...config, kind: config.kind }))
}

/** The resolved providers (providers/resolve.ts) and the settings their adapters share. */
export interface RegistrySettings extends AdapterSettings {
  providers: ProviderConfig[]
}

export function createProviderRegistry(config: RegistrySettings, events?: ProviderEvents): ProviderRegistry {
  const adapters = new Map<string, ClosableProviderAdapter>()
  for (const provider of config.providers) {
    if (provider.configured)
      adapters.set(provider.name, createProviderAdapter(provider, config, wireOf(provider), events))
  }
  return {
    get: (name) => adapters.get(name),
    require(name) {
      const adapter = adapters.get(name)
      if (adapter) return adapter
      if (config.providers.some((p) => p.name === name)) {
        throw errors.providerNotConfigured(name)
      }
      throw errors.unknownProvider(
        name,
        config.providers.map((p) => p.name),
      )
    },
    list: () => [...adapters.values()],
    async close() {
      await Promise.all([...adapters.values()].map((a) => a.close()))
    },
  }
}
