/**
 * What each provider allows and what is used: the limits view (/v1/limits), the live-usage gauges,
 * and the caps one tenant has on each account. The account's usage is every tenant's: it is shown
 * to admin keys only, so that a tenant cannot watch the sizes of other tenants' uploads as they
 * happen.
 *
 * A tenant's caps at a provider account: its own (TENANT_QUOTAS, else TENANT_MAX_FILES /
 * TENANT_MAX_BYTES) always; where it has none, its share (TENANT_MAX_SHARE) of each account cap
 * (files, bytes, and a purpose's documented file count) while the account is shared. An account is
 * shared when more than one tenant can use it: API_KEYS names two tenants or more, or another
 * tenant has ever had a row (tenants named through an admin key's X-Tenant-Id, keys in the database
 * and JWTs arrive at run time, so the claim asks the database each time). One tenant alone keeps the
 * whole account; a TENANT_QUOTAS entry of 0 gives a tenant the whole account whatever the others.
 */
import { type TenantQuotas, tenantQuotaOf } from '../config.js'
import type { Metrics } from '../metrics.js'
import { effectiveMaxBytes } from '../providers/catalog.js'
import type { ProviderRegistry } from '../providers/registry.js'
import type { ProviderConfig } from '../providers/types.js'
import type { ProviderLimits } from '../schemas.js'
import type { StorePort } from '../store/port.js'
import { providerUsage, purposeUsage, tenantAccountShared, tenantUsage, type Usage } from '../store/queries.js'

export interface PurposeLimits {
  purpose: string
  extensions: string[] | null
  max_file_bytes: number
  documented_max_file_bytes: number | null
  max_bytes_by_extension: Record<string, number>
  max_files: number | null
  /** Every tenant's files of this purpose: admin keys only. */
  files?: number
  content_available: boolean
  source: string | null
  note: string | null
}

export interface LimitsDeps {
  store: StorePort
  providers: ProviderRegistry
  providerConfigs: ProviderConfig[]
  tenantQuotas: TenantQuotas
}

type PurposeCounts = Array<{ provider: string; purpose: string; files: number }>

/** One tenant's caps at one provider account (and purpose), as a claim applies them. */
export interface TenantCaps {
  /** Its own caps: always. null = none of its own. */
  maxFiles: number | null
  maxBytes: number | null
  /** Its share of the account's caps where it has none of its own: while the account is shared. */
  shareMaxFiles: number | null
  shareMaxBytes: number | null
  /** Its share of the purpose's documented file count, unless its file cap is its own. */
  shareMaxPurposeFiles: number | null
}

/**
 * `share` of an account cap, whole, at least `atLeast`; null when there is no cap, or when the share
 * would be the whole cap anyway (a cap of one file cannot be split: the account's own refusal applies).
 */
function shareOf(cap: number | null | undefined, share: number, atLeast: number): number | null {
  if (cap === null || cap === undefined) return null
  const part = Math.max(atLeast, Math.floor(cap * share))
  return part < cap ? part : null
}

export function tenantCapsAt(
  quotas: TenantQuotas,
  tenant: string,
  account: Pick<ProviderConfig, 'maxFiles' | 'maxTotalBytes'>,
  purposeMaxFiles?: number,
): TenantCaps {
  const own = tenantQuotaOf(quotas, tenant)
  const whole = quotas.wholeAccount.get(tenant)
  const sharesFiles = own.maxFiles === null && !whole?.files
  const sharesBytes = own.maxBytes === null && !whole?.bytes
  return {
    maxFiles: own.maxFiles,
    maxBytes: own.maxBytes,
    shareMaxFiles: sharesFiles ? shareOf(account.maxFiles, quotas.share, 1) : null,
    shareMaxBytes: sharesBytes ? shareOf(account.maxTotalBytes, quotas.share, 0) : null,
    shareMaxPurposeFiles: sharesFiles ? shareOf(purposeMaxFiles, quotas.share, 1) : null,
  }
}

/** Per provider: limits, circuit state, and the caller's own usage against its quota. */
export async function providerLimits(
  deps: LimitsDeps,
  view: { tenant: string; accountUsage: boolean },
): Promise<ProviderLimits[]> {
  const [own, account, byPurpose, shared] = await Promise.all([
    tenantUsage(deps.store, view.tenant),
    view.accountUsage ? providerUsage(deps.store) : undefined,
    // Per-purpose counts are every tenant's too: admin keys only.
    view.accountUsage ? purposeUsage(deps.store) : undefined,
    tenantAccountShared(deps.store, view.tenant, deps.tenantQuotas.sharedByConfig),
  ])
  return deps.providerConfigs.map((p) => {
    // The caps that apply to this tenant now: its own, else its share while the account is shared.
    const caps = tenantCapsAt(deps.tenantQuotas, view.tenant, p)
    const adapter = deps.providers.get(p.name)
    const used = account?.find((u) => u.provider === p.name)
    const mine = own.find((u) => u.provider === p.name)
    return {
      provider: p.name,
      kind: p.kind,
      configured: Boolean(adapter),
      circuit: adapter?.circuitState() ?? 'closed',
      max_file_bytes: p.maxFileBytes,
      documented_max_file_bytes: p.documentedMaxFileBytes,
      default_purpose: p.defaultPurpose,
      purposes: purposeLimits(p, byPurpose),
      docs: p.docs ? { region: p.docs.region, read_on: p.docs.readOn, sources: [...p.docs.sources] } : null,
      allowed_extensions: allowedExtensions(p),
      account: {
        max_files: p.maxFiles,
        max_bytes: p.maxTotalBytes,
        ...(account ? { files: Number(used?.files ?? 0), bytes: Number(used?.bytes ?? 0) } : {}),
      },
      tenant: {
        max_files: caps.maxFiles ?? (shared ? caps.shareMaxFiles : null),
        max_bytes: caps.maxBytes ?? (shared ? caps.shareMaxBytes : null),
        files: Number(mine?.files ?? 0),
        bytes: Number(mine?.bytes ?? 0),
      },
    }
  })
}

/** Each purpose's rules; with `byPurpose` (admin keys), every tenant's file count of it too. */
function purposeLimits(p: ProviderConfig, byPurpose: PurposeCounts | undefined): PurposeLimits[] {
  const filesOf = (purpose: string) =>
    Number(byPurpose?.find((u) => u.provider === p.name && u.purpose === purpose)?.files ?? 0)
  return Object.entries(p.purposes).map(([purpose, rule]) => ({
    purpose,
    extensions: rule.extensions ? [...rule.extensions] : null,
    // What filegate lets through: the operator's cap, or the documented one where it is lower.
    max_file_bytes: effectiveMaxBytes(p, purpose),
    documented_max_file_bytes: rule.documentedMaxFileBytes ?? p.documentedMaxFileBytes,
    max_bytes_by_extension: rule.maxBytesByExtension ? { ...rule.maxBytesByExtension } : {},
    max_files: rule.maxFiles ?? null,
    ...(byPurpose ? { files: filesOf(purpose) } : {}),
    content_available: rule.content,
    source: rule.source ?? null,
    note: rule.note ?? null,
  }))
}

/** The extensions any purpose accepts, sorted; null when one purpose takes any extension. */
function allowedExtensions(p: ProviderConfig): string[] | null {
  const extensions = new Set<string>()
  for (const rule of Object.values(p.purposes)) {
    if (rule.extensions === null) return null
    for (const e of rule.extensions) extensions.add(e)
  }
  return [...extensions].sort()
}

/** Sets the live-usage gauges from what occupies each provider account now (called on scrape). */
export async function refreshUsageGauges(
  deps: Pick<LimitsDeps, 'store' | 'providerConfigs'>,
  metrics: Metrics,
): Promise<void> {
  const usage: Usage[] = await providerUsage(deps.store)
  for (const p of deps.providerConfigs) {
    const u = usage.find((x) => x.provider === p.name)
    metrics.providerFiles.set({ provider: p.name }, Number(u?.files ?? 0))
    metrics.providerBytes.set({ provider: p.name }, Number(u?.bytes ?? 0))
  }
}
