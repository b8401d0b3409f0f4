/**
 * Provider resolution: the catalogue (the documented facts of each kind, the defaults of an
 * OpenAI-compatible provider) combined with the operator's environment (keys, base URLs, caps,
 * default purposes, EXTRA_PROVIDERS, AUTO_PROVIDERS, ALLOWED_EXTENSIONS) into the providers
 * filegate serves. Every problem is pushed onto the caller's list, so start-up reports them in
 * one message with the rest of the configuration's.
 */
import { type Static, Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { anthropicFacts } from './anthropic-facts.js'
import { openAiCompatibleDefaults, type ProviderFacts, type ProviderKind, purposeRule } from './catalog.js'
import { geminiFacts } from './gemini-facts.js'
import { glmFacts } from './glm-facts.js'
import { kimiFacts } from './kimi-facts.js'
import { openAiFacts } from './openai-facts.js'
import type { ProviderConfig } from './types.js'

/** The environment variables resolution reads, already parsed; unset = the documented default. */
export interface ProviderEnvironment {
  KIMI_API_KEY?: string | undefined
  KIMI_BASE_URL?: string | undefined
  KIMI_MAX_FILE_BYTES?: number | undefined
  KIMI_MAX_FILES?: number | undefined
  KIMI_MAX_TOTAL_BYTES?: number | undefined
  KIMI_DEFAULT_PURPOSE?: string | undefined
  GLM_API_KEY?: string | undefined
  GLM_BASE_URL?: string | undefined
  GLM_MAX_FILE_BYTES?: number | undefined
  GLM_MAX_FILES?: number | undefined
  GLM_MAX_TOTAL_BYTES?: number | undefined
  GLM_DEFAULT_PURPOSE?: string | undefined
  OPENAI_API_KEY?: string | undefined
  OPENAI_BASE_URL?: string | undefined
  OPENAI_MAX_FILE_BYTES?: number | undefined
  OPENAI_MAX_FILES?: number | undefined
  OPENAI_MAX_TOTAL_BYTES?: number | undefined
  ANTHROPIC_API_KEY?: string | undefined
  ANTHROPIC_BASE_URL?: string | undefined
  ANTHROPIC_MAX_FILE_BYTES?: number | undefined
  ANTHROPIC_MAX_FILES?: number | undefined
  ANTHROPIC_MAX_TOTAL_BYTES?: number | undefined
  GEMINI_API_KEY?: string | undefined
  GEMINI_BASE_URL?: string | undefined
  GEMINI_MAX_FILE_BYTES?: number | undefined
  GEMINI_MAX_FILES?: number | undefined
  GEMINI_MAX_TOTAL_BYTES?: number | undefined
  EXTRA_PROVIDERS?: string | undefined
  AUTO_PROVIDERS?: string | undefined
  ALLOWED_EXTENSIONS?: string | undefined
}

/** The documented facts of each kind, for the base URL it is reached at (unset: the documented endpoint). */
export const factsOfKind: Record<ProviderKind, (baseUrl?: string) => ProviderFacts> = {
  kimi: kimiFacts,
  glm: glmFacts,
  openai: openAiFacts,
  anthropic: anthropicFacts,
  gemini: geminiFacts,
}

/** The documented defaults of the built-in providers (their default endpoints' docs). */
export const kimiDefaults = kimiFacts()
export const glmDefaults = glmFacts()

/** A provider built in under its kind's name, read from `<PREFIX>_*`; only Kimi and GLM take a default purpose. */
interface BuiltIn {
  kind: ProviderKind
  prefix: 'KIMI' | 'GLM' | 'OPENAI' | 'ANTHROPIC' | 'GEMINI'
  purposeVariable?: 'KIMI_DEFAULT_PURPOSE' | 'GLM_DEFAULT_PURPOSE'
}

/** In configuration order: /v1/limits and the registry list them so. */
const builtIns: readonly BuiltIn[] = [
  { kind: 'kimi', prefix: 'KIMI', purposeVariable: 'KIMI_DEFAULT_PURPOSE' },
  { kind: 'glm', prefix: 'GLM', purposeVariable: 'GLM_DEFAULT_PURPOSE' },
  { kind: 'openai', prefix: 'OPENAI' },
  { kind: 'anthropic', prefix: 'ANTHROPIC' },
  { kind: 'gemini', prefix: 'GEMINI' },
]

/** Names an extra provider may not take: the built-in ones and `auto`. */
const reservedNames = new Set(['auto', ...builtIns.map((b) => b.kind)])

/** `provider=auto`'s order when AUTO_PROVIDERS is unset: GLM (the smaller limit) first, then Kimi. */
export const defaultAutoProviders = 'glm,kimi'

const ExtraProvidersSchema = Type.Array(
  Type.Object(
    {
      name: Type.String({ pattern: '^[a-z][a-z0-9_-]{0,31}$' }),
      /** The kind whose documented facts and wire it follows; unset = a generic OpenAI-compatible API. */
      kind: Type.Optional(Type.Union(Object.keys(factsOfKind).map((k) => Type.Literal(k as ProviderKind)))),
      base_url: Type.String({ pattern: '^https?://' }),
      api_key: Type.Optional(Type.String({ minLength: 1 })),
      max_file_bytes: Type.Optional(Type.Integer({ minimum: 1 })),
      max_files: Type.Optional(Type.Integer({ minimum: 0 })),
      max_total_bytes: Type.Optional(Type.Integer({ minimum: 0 })),
      default_purpose: Type.Optional(Type.String({ minLength: 1 })),
      purposes: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })),
      extensions: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    },
    { additionalProperties: false },
  ),
)
type ExtraProvider = Static<typeof ExtraProvidersSchema>[number]

/** A cap from the environment: 0 means none. */
const capOrNull = (n: number) => (n > 0 ? n : null)

const withoutTrailingSlash = (url: string) => url.replace(/\/+$/, '')

const csv = (raw: string | undefined) =>
  (raw ?? '')
    .split(',')
    .map((s) => s.trim().toLowerCase().replace(/^\./, ''))
    .filter(Boolean)

function narrowExtensions(facts: ProviderFacts, allowed: string[]): ProviderFacts {
  if (allowed.length === 0) return facts
  const purposes = Object.fromEntries(
    Object.entries(facts.purposes).map(([purpose, rule]) => [
      purpose,
      { ...rule, extensions: (rule.extensions ?? allowed).filter((e) => allowed.includes(e)) },
    ]),
  )
  return { ...facts, purposes }
}

/** The built-in providers: the facts of the docs their base URL follows (Kimi's and GLM's regions differ). */
function builtInProviders(env: ProviderEnvironment, problems: string[]): ProviderConfig[] {
  return builtIns.map(({ kind, prefix, purposeVariable }) => {
    const apiKey = env[`${prefix}_API_KEY`]
    const documented = factsOfKind[kind](withoutTrailingSlash(env[`${prefix}_BASE_URL`] ?? factsOfKind[kind]().baseUrl))
    const provider: ProviderConfig = {
      ...documented,
      name: kind,
      apiKey,
      configured: Boolean(apiKey),
      maxFileBytes: env[`${prefix}_MAX_FILE_BYTES`] ?? documented.maxFileBytes,
      maxFiles: capOrNull(env[`${prefix}_MAX_FILES`] ?? documented.maxFiles ?? 0),
      maxTotalBytes: capOrNull(env[`${prefix}_MAX_TOTAL_BYTES`] ?? documented.maxTotalBytes ?? 0),
      defaultPurpose: (purposeVariable && env[purposeVariable]) || documented.defaultPurpose,
    }
    if (purposeVariable && !purposeRule(provider, provider.defaultPurpose)) {
      problems.push(
        `${purposeVariable}: "${provider.defaultPurpose}" is not a ${provider.name} purpose (${Object.keys(provider.purposes).join(', ')})`,
      )
    }
    return provider
  })
}

/** EXTRA_PROVIDERS: a JSON array of OpenAI-compatible providers; undefined when it does not parse. */
function parseExtraProviders(raw: string | undefined, problems: string[]): ExtraProvider[] | undefined {
  if (!raw?.trim()) return []
  let parsed: unknown
  try {
    parsed = JSON.parse(raw)
  } catch {
    problems.push('EXTRA_PROVIDERS: not valid JSON')
    return undefined
  }
  if (!Value.Check(ExtraProvidersSchema, parsed)) {
    for (const e of Value.Errors(ExtraProvidersSchema, parsed)) {
      problems.push(`EXTRA_PROVIDERS${e.path.replaceAll('/', '.')}: ${e.message}`)
    }
    return undefined
  }
  return parsed
}

/** An extra provider of a named kind: that kind's documented facts at its base URL, with its own key and caps. */
function extraOfKind(extra: ExtraProvider, kind: ProviderKind, problems: string[]): ProviderConfig {
  const baseUrl = withoutTrailingSlash(extra.base_url)
  const documented = factsOfKind[kind](baseUrl)
  if (extra.purposes || extra.extensions) {
    problems.push(
      `EXTRA_PROVIDERS: provider "${extra.name}" names kind ${kind}, which brings its documented purposes; purposes and extensions are for OpenAI-compatible providers without a kind`,
    )
  }
  const defaultPurpose = extra.default_purpose ?? documented.defaultPurpose
  if (!Object.hasOwn(documented.purposes, defaultPurpose)) {
    problems.push(`EXTRA_PROVIDERS: provider "${extra.name}" default_purpose is not a ${kind} purpose`)
  }
  return {
    ...documented,
    name: extra.name,
    apiKey: extra.api_key,
    configured: Boolean(extra.api_key),
    baseUrl,
    maxFileBytes: extra.max_file_bytes ?? documented.maxFileBytes,
    maxFiles: capOrNull(extra.max_files ?? documented.maxFiles ?? 0),
    maxTotalBytes: capOrNull(extra.max_total_bytes ?? documented.maxTotalBytes ?? 0),
    defaultPurpose,
  }
}

function extraProvider(extra: ExtraProvider, problems: string[]): ProviderConfig {
  if (extra.kind) return extraOfKind(extra, extra.kind, problems)
  const purposes = extra.purposes
    ? Object.fromEntries(extra.purposes.map((p) => [p, { extensions: extra.extensions ?? null, content: true }]))
    : openAiCompatibleDefaults.purposes
  const defaultPurpose = extra.default_purpose ?? extra.purposes?.[0] ?? openAiCompatibleDefaults.defaultPurpose
  if (!Object.hasOwn(purposes, defaultPurpose)) {
    problems.push(`EXTRA_PROVIDERS: provider "${extra.name}" default_purpose is not among its purposes`)
  }
  return {
    ...openAiCompatibleDefaults,
    name: extra.name,
    apiKey: extra.api_key,
    configured: Boolean(extra.api_key),
    baseUrl: withoutTrailingSlash(extra.base_url),
    maxFileBytes: extra.max_file_bytes ?? openAiCompatibleDefaults.maxFileBytes,
    maxFiles: capOrNull(extra.max_files ?? 0),
    maxTotalBytes: capOrNull(extra.max_total_bytes ?? 0),
    defaultPurpose,
    purposes,
  }
}

/** The providers filegate serves, in order: the built-in ones, then EXTRA_PROVIDERS; problems pushed onto `problems`. */
export function resolveProviders(env: ProviderEnvironment, problems: string[]): ProviderConfig[] {
  const providers = builtInProviders(env, problems)
  const extras = parseExtraProviders(env.EXTRA_PROVIDERS, problems)
  // A malformed EXTRA_PROVIDERS refuses the configuration; the built-in providers still let
  // DEFAULT_PROVIDER be checked, so one message lists every problem.
  if (extras === undefined) return providers
  for (const extra of extras) {
    if (reservedNames.has(extra.name) || providers.some((p) => p.name === extra.name)) {
      problems.push(`EXTRA_PROVIDERS: provider name "${extra.name}" is reserved or repeated`)
      continue
    }
    providers.push(extraProvider(extra, problems))
  }
  const allowed = csv(env.ALLOWED_EXTENSIONS)
  return providers.map((p) => ({ ...p, ...narrowExtensions(p, allowed), name: p.name, kind: p.kind }))
}

/**
 * AUTO_PROVIDERS: the providers `provider=auto` tries, in order (names of built-in or extra
 * providers). Each must be known and named once; an unconfigured one is skipped when planning.
 */
export function resolveAutoProviders(
  raw: string | undefined,
  providers: readonly ProviderConfig[],
  problems: string[],
): string[] {
  const names = (raw?.trim() ? raw : defaultAutoProviders)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  const known = providers.map((p) => p.name)
  for (const [i, name] of names.entries()) {
    if (!known.includes(name)) problems.push(`AUTO_PROVIDERS: "${name}" is not a known provider (${known.join(', ')})`)
    else if (names.indexOf(name) !== i) problems.push(`AUTO_PROVIDERS: "${name}" is named twice`)
  }
  if (names.length === 0) problems.push('AUTO_PROVIDERS: names no provider')
  return names.filter((name, i) => known.includes(name) && names.indexOf(name) === i)
}
