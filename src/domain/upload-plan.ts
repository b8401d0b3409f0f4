/**
 * Which provider(s) an upload may go to, decided from what is known before the body is read:
 * provider (or auto), purpose, filename extension, and the size once it is known.
 * `auto`: the providers of AUTO_PROVIDERS in its order (default GLM, then Kimi), skipping
 * unconfigured ones, those whose limits or purposes do not fit, and those with an open circuit.
 * The caller's providers allowlist (a key's `providers`) bounds both: a provider outside it is 403
 * FORBIDDEN when named, and never a candidate of `auto`.
 */

import { AppError, errors } from '../errors.js'
import { effectiveMaxBytes, purposeRule } from '../providers/catalog.js'
import type { ProviderRegistry } from '../providers/registry.js'
import type { ProviderAdapter, ProviderConfig } from '../providers/types.js'
import { extensionOf } from './filename.js'

export interface Candidate {
  adapter: ProviderAdapter
  config: ProviderConfig
  purpose: string
  /** The per-file limit for this provider, purpose and extension. */
  maxBytes: number
}

export interface UploadPlan {
  auto: boolean
  extension: string
  candidates: Candidate[]
  /** The largest size any candidate accepts: the limit enforced while the body streams in. */
  maxBytes: number
}

/** The operator's cap, then the documented caps of the purpose and the extension beneath it. */
export function limitFor(config: ProviderConfig, purpose: string, extension: string): number {
  return effectiveMaxBytes(config, purpose, extension)
}

function checkFit(config: ProviderConfig, purposeInput: string | undefined, extension: string): string {
  const purpose = purposeInput ?? config.defaultPurpose
  const rule = purposeRule(config, purpose)
  if (!rule) {
    throw new AppError('UNSUPPORTED_PURPOSE', {
      detail: `Purpose "${purpose}" is not supported by ${config.name}`,
      extensions: { provider: config.name, purpose, allowed: Object.keys(config.purposes) },
    })
  }
  if (rule.extensions !== null && !rule.extensions.includes(extension)) {
    throw new AppError('UNSUPPORTED_FILE_TYPE', {
      detail: `Files of type "${extension || '(none)'}" are not accepted by ${config.name} for ${purpose}`,
      extensions: { provider: config.name, extension, allowed: rule.extensions },
    })
  }
  return purpose
}

/** What an upload asks for, before its body is read. */
export interface PlanRequest {
  provider: string
  purpose?: string | undefined
  filename: string
  /** The providers the caller may use; null or absent = every provider. */
  allowed?: readonly string[] | null | undefined
}

export function planUpload(
  providers: ProviderConfig[],
  registry: ProviderRegistry,
  request: PlanRequest,
  autoOrder: readonly string[] = ['glm', 'kimi'],
): UploadPlan {
  const extension = extensionOf(request.filename)
  const allowed = request.allowed ?? null
  if (request.provider !== 'auto') {
    const config = providers.find((p) => p.name === request.provider)
    if (!config) {
      throw errors.unknownProvider(request.provider, ['auto', ...providers.map((p) => p.name)])
    }
    if (allowed !== null && !allowed.includes(config.name)) throw errors.providerNotAllowed(config.name, allowed)
    const purpose = checkFit(config, request.purpose, extension)
    const adapter = registry.require(config.name)
    const maxBytes = limitFor(config, purpose, extension)
    return { auto: false, extension, candidates: [{ adapter, config, purpose, maxBytes }], maxBytes }
  }

  const configured = autoOrder.flatMap((name) => providers.filter((p) => p.name === name && registry.get(p.name)))
  if (configured.length === 0) {
    throw errors.providerNotConfigured()
  }
  const permitted = allowed === null ? configured : configured.filter((p) => allowed.includes(p.name))
  if (permitted.length === 0) {
    throw new AppError('FORBIDDEN', {
      detail: 'None of the providers provider=auto chooses from (AUTO_PROVIDERS) may be used with these credentials',
      extensions: { auto_providers: configured.map((p) => p.name), allowed_providers: allowed },
    })
  }
  const candidates: Candidate[] = []
  let firstRefusal: unknown
  let openCircuitRetryMs = Number.POSITIVE_INFINITY
  for (const config of permitted) {
    let purpose: string
    try {
      purpose = checkFit(config, request.purpose, extension)
    } catch (err) {
      firstRefusal ??= err
      continue
    }
    const adapter = registry.require(config.name)
    if (adapter.circuitState() === 'open') {
      openCircuitRetryMs = Math.min(openCircuitRetryMs, adapter.retryAfterMs())
      continue
    }
    candidates.push({ adapter, config, purpose, maxBytes: limitFor(config, purpose, extension) })
  }
  if (candidates.length === 0) {
    if (Number.isFinite(openCircuitRetryMs)) {
      throw new AppError('PROVIDER_UNAVAILABLE', {
        detail: 'Every eligible provider is temporarily unavailable',
        retryAfterSeconds: Math.max(1, Math.ceil(openCircuitRetryMs / 1000)),
      })
    }
    throw firstRefusal
  }
  return { auto: true, extension, candidates, maxBytes: Math.max(...candidates.map((c) => c.maxBytes)) }
}

/** Drops the candidates too small for a body of `bytes`; FILE_TOO_LARGE when none is left. */
export function candidatesFor(plan: UploadPlan, bytes: number): Candidate[] {
  const fit = plan.candidates.filter((c) => bytes <= c.maxBytes)
  if (fit.length === 0) {
    const largest = plan.candidates.reduce((a, b) => (b.maxBytes > a.maxBytes ? b : a))
    throw errors.fileTooLarge(largest.config.name, largest.maxBytes)
  }
  return fit
}
