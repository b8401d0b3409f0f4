/**
 * What a provider documents about its files API, as data: purposes, extensions, size and count
 * caps, whether its content endpoint serves a purpose. The rows of each kind live in
 * <kind>-facts.ts, each with the doc URL it comes from; docs/providers.md renders the same rows
 * for users. Extensions are lower-case, without the dot; `null` = not restricted.
 */

export type ProviderKind = 'kimi' | 'glm' | 'openai' | 'anthropic' | 'gemini'

/** The day the provider docs behind these facts were last read. */
export const DOCS_READ_ON = '2026-11-27'

export interface PurposeRule {
  /** Allowed extensions for this purpose; null = any. */
  extensions: readonly string[] | null
  /** A documented per-extension cap inside this purpose (GLM: images 5 MB). */
  maxBytesByExtension?: Readonly<Record<string, number>>
  /** The documented per-file cap of this purpose; undefined = the provider-wide documented cap. */
  documentedMaxFileBytes?: number
  /** The documented number of files of this purpose one account may hold; filegate counts them. */
  maxFiles?: number
  /** The provider's `GET /files/{id}/content` serves files of this purpose. */
  content: boolean
  /** The doc page this row comes from. */
  source?: string
  /** Where the docs are silent or disagree, and what filegate does then. */
  note?: string
}

export interface ProviderFacts {
  kind: ProviderKind
  baseUrl: string
  /** The operator's per-file cap (`*_MAX_FILE_BYTES`); documented caps apply beneath it. */
  maxFileBytes: number
  /** The provider-wide documented per-file cap; null = none documented. */
  documentedMaxFileBytes: number | null
  /** Account caps; null = not documented / unlimited. */
  maxFiles: number | null
  maxTotalBytes: number | null
  defaultPurpose: string
  purposes: Readonly<Record<string, PurposeRule>>
  /** Which docs these facts follow (international or China endpoint) and when they were read. */
  docs?: { region: string; readOn: string; sources: readonly string[] }
  /**
   * The provider's own file expiry a client's expires_in is passed on as (OpenAI `expires_after`),
   * with the range the provider documents; outside it nothing is sent. Undefined = none.
   */
  expiresAfter?: { minSeconds: number; maxSeconds: number; source: string }
}

export const MB = 1024 * 1024

/** The host of a base URL, '' when it does not parse (config validation reports the URL itself). */
export function hostOf(url: string): string {
  try {
    return new URL(url).hostname
  } catch {
    return ''
  }
}

/** The rule of `purpose`, never one inherited from Object.prototype ("toString", "__proto__"). */
export function purposeRule(facts: Pick<ProviderFacts, 'purposes'>, purpose: string): PurposeRule | undefined {
  return Object.hasOwn(facts.purposes, purpose) ? facts.purposes[purpose] : undefined
}

/**
 * The per-file limit for a purpose and extension: the operator's cap, the purpose's documented cap
 * (else the provider-wide one) and a documented per-extension cap, whichever is smallest.
 */
export function effectiveMaxBytes(facts: ProviderFacts, purpose: string, extension?: string): number {
  const rule = purposeRule(facts, purpose)
  const documented = rule?.documentedMaxFileBytes ?? facts.documentedMaxFileBytes ?? Number.POSITIVE_INFINITY
  const perExtension =
    extension !== undefined && rule?.maxBytesByExtension && Object.hasOwn(rule.maxBytesByExtension, extension)
      ? (rule.maxBytesByExtension[extension] as number)
      : Number.POSITIVE_INFINITY
  return Math.min(facts.maxFileBytes, documented, perExtension)
}

const images = ['jpg', 'jpeg', 'png', 'bmp', 'gif', 'webp', 'tif', 'tiff', 'avif', 'svg', 'ico']

/** Defaults for an extra OpenAI-compatible provider configured by environment. */
export const openAiCompatibleDefaults: Omit<ProviderFacts, 'baseUrl'> = {
  kind: 'openai',
  maxFileBytes: 512 * MB,
  documentedMaxFileBytes: null,
  maxFiles: null,
  maxTotalBytes: null,
  defaultPurpose: 'user_data',
  purposes: {
    assistants: { extensions: null, content: true },
    batch: { extensions: ['jsonl'], content: true },
    'fine-tune': { extensions: ['jsonl'], content: true },
    vision: { extensions: images, content: true },
    user_data: { extensions: null, content: true },
    evals: { extensions: ['jsonl'], content: true },
    'file-extract': { extensions: null, content: true },
  },
}
