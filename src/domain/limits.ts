/**
 * What each provider allows and what is used: the limits view (/v1/limits) and the live-usage
 * gauges. The account's usage is every tenant's: it is shown to admin keys only, so that a tenant
 * cannot watch the sizes of other tenants' uploads as they happen.
 */
import { type TenantQuotas, tenantQuotaOf } from '../config.js'
import type { Metrics } from '../metrics.js'
import { effectiveMaxBytes } from '../providers/catalog.js'
import type { ProviderRegistry } from '../providers/registry.js'
import type { ProviderConfig } from '../providers/types.js'
import type { ProviderLimits } from '../schemas.js'
import type { StorePort } from '../store/port.js'
import { providerUsage, purposeUsage, tenantUsage, type Usage } from '../store/queries.js'

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

/** Per provider: limits, circuit state, and the caller's own usage against its quota. */
export async function providerLimits(
  deps: LimitsDeps,
  view: { tenant: string; accountUsage: boolean },
): Promise<ProviderLimits[]> {
  const [own, account, byPurpose] = await Promise.all([
    tenantUsage(deps.store, view.tenant),
    view.accountUsage ? providerUsage(deps.store) : undefined,
    // Per-purpose counts are every tenant's too: admin keys only.
    view.accountUsage ? purposeUsage(deps.store) : undefined,
  ])
  const quota = tenantQuotaOf(deps.tenantQuotas, view.tenant)
  return deps.providerConfigs.map((p) => {
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
        max_files: quota.maxFiles,
        max_bytes: quota.maxBytes,
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
