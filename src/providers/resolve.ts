/**
 * Provider resolution: the catalogue (the documented facts of Kimi and GLM, the defaults of an
 * OpenAI-compatible provider) combined with the operator's environment (keys, base URLs, caps,
 * default purposes, EXTRA_PROVIDERS, ALLOWED_EXTENSIONS) into the providers filegate serves.
 * Every problem is pushed onto the caller's list, so start-up reports them in one message with
 * the rest of the configuration's.
 */
import { type Static, Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { openAiCompatibleDefaults, type ProviderFacts, purposeRule } from './catalog.js'
import { geminiFacts } from './gemini-facts.js'
import { glmFacts } from './glm-facts.js'
import { kimiFacts } from './kimi-facts.js'
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
  GEMINI_API_KEY?: string | undefined
  GEMINI_BASE_URL?: string | undefined
  GEMINI_MAX_FILE_BYTES?: number | undefined
  GEMINI_MAX_FILES?: number | undefined
  GEMINI_MAX_TOTAL_BYTES?: number | undefined
  EXTRA_PROVIDERS?: string | undefined
  ALLOWED_EXTENSIONS?: string | undefined
}

/** The documented defaults of the built-in providers (their default endpoints' docs). */
export const kimiDefaults = kimiFacts()
export const glmDefaults = glmFacts()
export const geminiDefaults = geminiFacts()

const ExtraProvidersSchema = Type.Array(
  Type.Object(
    {
      name: Type.String({ pattern: '^[a-z][a-z0-9_-]{0,31}$' }),
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

/** Kimi and GLM: the facts of the docs their base URL follows (international and China differ). */
function builtInProviders(env: ProviderEnvironment, problems: string[]): ProviderConfig[] {
  const kimiBaseUrl = withoutTrailingSlash(env.KIMI_BASE_URL ?? kimiDefaults.baseUrl)
  const glmBaseUrl = withoutTrailingSlash(env.GLM_BASE_URL ?? glmDefaults.baseUrl)
  const providers: ProviderConfig[] = [
    {
      ...kimiFacts(kimiBaseUrl),
      name: 'kimi',
      apiKey: env.KIMI_API_KEY,
      configured: Boolean(env.KIMI_API_KEY),
      maxFileBytes: env.KIMI_MAX_FILE_BYTES ?? kimiDefaults.maxFileBytes,
      maxFiles: capOrNull(env.KIMI_MAX_FILES ?? kimiDefaults.maxFiles ?? 0),
      maxTotalBytes: capOrNull(env.KIMI_MAX_TOTAL_BYTES ?? kimiDefaults.maxTotalBytes ?? 0),
      defaultPurpose: env.KIMI_DEFAULT_PURPOSE ?? kimiDefaults.defaultPurpose,
    },
    {
      ...glmFacts(glmBaseUrl),
      name: 'glm',
      apiKey: env.GLM_API_KEY,
      configured: Boolean(env.GLM_API_KEY),
      maxFileBytes: env.GLM_MAX_FILE_BYTES ?? glmDefaults.maxFileBytes,
      maxFiles: capOrNull(env.GLM_MAX_FILES ?? 0),
      maxTotalBytes: capOrNull(env.GLM_MAX_TOTAL_BYTES ?? 0),
      defaultPurpose: env.GLM_DEFAULT_PURPOSE ?? glmDefaults.defaultPurpose,
    },
  ]
  for (const [variable, provider] of [
    ['KIMI_DEFAULT_PURPOSE', providers[0]],
    ['GLM_DEFAULT_PURPOSE', providers[1]],
  ] as const) {
    if (provider && !purposeRule(provider, provider.defaultPurpose)) {
      problems.push(
        `${variable}: "${provider.defaultPurpose}" is not a ${provider.name} purpose (${Object.keys(provider.purposes).join(', ')})`,
      )
    }
  }
  providers.push(geminiProvider(env))
  return providers
}

/** Gemini: one documented endpoint; a single purpose, so no default to choose. */
function geminiProvider(env: ProviderEnvironment): ProviderConfig {
  return {
    ...geminiFacts(withoutTrailingSlash(env.GEMINI_BASE_URL ?? geminiDefaults.baseUrl)),
    name: 'gemini',
    apiKey: env.GEMINI_API_KEY,
    configured: Boolean(env.GEMINI_API_KEY),
    maxFileBytes: env.GEMINI_MAX_FILE_BYTES ?? geminiDefaults.maxFileBytes,
    maxFiles: capOrNull(env.GEMINI_MAX_FILES ?? geminiDefaults.maxFiles ?? 0),
    maxTotalBytes: capOrNull(env.GEMINI_MAX_TOTAL_BYTES ?? geminiDefaults.maxTotalBytes ?? 0),
  }
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

function extraProvider(extra: ExtraProvider, problems: string[]): ProviderConfig {
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

/** The providers filegate serves, in order: kimi, glm, gemini, then EXTRA_PROVIDERS; problems pushed onto `problems`. */
export function resolveProviders(env: ProviderEnvironment, problems: string[]): ProviderConfig[] {
  const providers = builtInProviders(env, problems)
  const extras = parseExtraProviders(env.EXTRA_PROVIDERS, problems)
  // A malformed EXTRA_PROVIDERS refuses the configuration; the built-in providers still let
  // DEFAULT_PROVIDER be checked, so one message lists every problem.
  if (extras === undefined) return providers
  for (const extra of extras) {
    if (['kimi', 'glm', 'gemini', 'auto'].includes(extra.name) || providers.some((p) => p.name === extra.name)) {
      problems.push(`EXTRA_PROVIDERS: provider name "${extra.name}" is reserved or repeated`)
      continue
    }
    providers.push(extraProvider(extra, problems))
  }
  const allowed = csv(env.ALLOWED_EXTENSIONS)
  return providers.map((p) => ({ ...p, ...narrowExtensions(p, allowed), name: p.name, kind: p.kind }))
}
