/**
 * The seeded fault schedule and its application. Two lanes run side by side, each one fault at a
 * time with quiet gaps between: the infrastructure lane (Postgres refused then hanging at its
 * proxy, the originals store refusing or paused, a replica SIGKILLed or SIGTERMed and restarted)
 * and the provider lane (a 500 burst, a hang, a latency spike, a 429 burst at one fake, files
 * deleted inside a fake). Every fault applied becomes a window on the timeline the answers are
 * classified against; a crash the soak did not cause opens one too (its restart).
 */
import { request } from 'undici'
import type { FakeProvider } from '../../tests/fakes/provider-server.js'
import type { Router } from './http.js'
import type { ProviderTap } from './provider-tap.js'
import type { Replica } from './replicas.js'
import type { Rng } from './rng.js'
import type { CuttableProxy } from './tcp-proxy.js'

export type FaultKind =
  | 'provider-500'
  | 'provider-hang'
  | 'provider-latency'
  | 'provider-429'
  | 'provider-forget'
  | 'db-refuse'
  | 'db-hang'
  | 'store-refuse'
  | 'store-pause'
  | 'replica-sigkill'
  | 'replica-sigterm'
  | 'replica-crash'

export interface FaultWindow {
  kind: FaultKind
  /** A provider, a replica, `db` or `store`. */
  target: string
  start: number
  /** Undefined while it lasts. */
  end?: number
  detail: string
}

export interface Plan {
  lane: 'infra' | 'provider'
  kind: 'db-cut' | 'store-refuse' | 'store-pause' | 'replica-sigkill' | 'replica-sigterm' | ProviderFault
  target: string
  /** ms after the start of the run */
  at: number
  durationMs: number
  /** burst size, latency ms, files to delete, or the ms of a Postgres cut that refuse (then hang) */
  amount: number
}

type ProviderFault = 'provider-500' | 'provider-hang' | 'provider-latency' | 'provider-429' | 'provider-forget'

export interface FaultDeps {
  fakes: Map<string, FakeProvider>
  taps: Map<string, ProviderTap>
  db: CuttableProxy
  store: CuttableProxy
  replicas: Replica[]
  router: Router
  /** Provider file ids the soak put at the fakes itself (never deleted by a fault). */
  foreign: Set<string>
}

const INFRA = ['db-cut', 'store-refuse', 'store-pause', 'replica-sigkill', 'replica-sigterm'] as const
const PROVIDER = ['provider-500', 'provider-hang', 'provider-latency', 'provider-429', 'provider-forget'] as const

/** The schedule of a run of `seconds`: both lanes, kinds in a seeded order, every kind before a repeat. */
export function planFaults(
  rng: Rng,
  seconds: number,
  replicas: string[],
  providers: string[],
  timeoutMs: number,
): Plan[] {
  const plans: Plan[] = []
  const endMs = (seconds - 5) * 1000
  const lane = (name: Plan['lane'], kinds: readonly Plan['kind'][], startMs: number) => {
    let at = startMs
    let order: Plan['kind'][] = []
    for (;;) {
      if (order.length === 0) order = shuffle(rng, [...kinds])
      const kind = order.shift() as Plan['kind']
      const durationMs = rng.int(4, 10) * 1000
      if (at + durationMs > endMs) return
      const target = kind.startsWith('replica')
        ? rng.pick(replicas)
        : kind.startsWith('provider')
          ? rng.pick(providers)
          : kind.startsWith('db')
            ? 'db'
            : 'store'
      const amount =
        kind === 'provider-latency'
          ? rng.int(500, timeoutMs + 3_000)
          : kind === 'provider-forget'
            ? rng.int(1, 5)
            : kind === 'db-cut'
              ? Math.round(durationMs * (0.3 + 0.4 * rng.next()))
              : rng.int(8, 30)
      plans.push({ lane: name, kind, target, at, durationMs, amount })
      at += durationMs + rng.int(4, 9) * 1000
    }
  }
  lane('infra', INFRA, 8_000)
  lane('provider', PROVIDER, 5_000)
  return plans.sort((a, b) => a.at - b.at)
}

function shuffle<T>(rng: Rng, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.int(0, i)
    ;[items[i], items[j]] = [items[j] as T, items[i] as T]
  }
  return items
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export class FaultRunner {
  readonly timeline: FaultWindow[] = []
  /** Replicas the soak has taken down on purpose (a crash check skips them). */
  readonly down = new Set<string>()
  #stopped = false
  /** Bursts queued at a fake: the tap's count of that status once all have gone out. */
  readonly #bursts: Array<{ provider: string; status: number; total: number }> = []
  #lanes: Promise<void>[] = []

  constructor(
    private readonly deps: FaultDeps,
    private readonly rng: Rng,
  ) {}

  run(plans: Plan[], t0: number): void {
    for (const lane of ['infra', 'provider'] as const) {
      this.#lanes.push(
        this.#lane(
          plans.filter((p) => p.lane === lane),
          t0,
        ),
      )
    }
  }

  /** Waits for the lanes to finish their current fault; no new fault starts. */
  async stop(): Promise<void> {
    this.#stopped = true
    await Promise.all(this.#lanes)
  }

  /** Sends what is left of every burst through the tap (before the settling). */
  async drainBursts(): Promise<void> {
    for (const burst of this.#bursts) await this.#drain(burst)
  }

  /** Sends list requests through the tap until the burst's answers have all gone out. */
  async #drain(burst: { provider: string; status: number; total: number }): Promise<void> {
    const tap = this.deps.taps.get(burst.provider) as ProviderTap
    const fake = this.deps.fakes.get(burst.provider) as FakeProvider
    for (let i = 0; i < 1_000 && tap.statusCount(burst.status) < burst.total; i++) {
      const res = await request(`${tap.baseUrl}/files?limit=1`, { headers: { authorization: `Bearer ${fake.apiKey}` } })
      await res.body.dump()
    }
  }

  /** Ends the windows still open (at the end of the run). */
  close(): void {
    for (const w of this.timeline) w.end ??= Date.now()
  }

  open(kind: FaultKind, target: string, detail: string): FaultWindow {
    const w: FaultWindow = { kind, target, start: Date.now(), detail }
    this.timeline.push(w)
    return w
  }

  async #lane(plans: Plan[], t0: number): Promise<void> {
    for (const plan of plans) {
      while (!this.#stopped && Date.now() < t0 + plan.at) await sleep(Math.min(200, t0 + plan.at - Date.now()))
      if (this.#stopped) return
      await this.#apply(plan)
    }
  }

  async #apply(plan: Plan): Promise<void> {
    switch (plan.kind) {
      case 'db-cut': {
        const refuse = plan.amount
        await this.#proxyWindow(this.deps.db, 'refuse', 'db-refuse', 'db', refuse, 'Postgres connections refused')
        await this.#proxyWindow(
          this.deps.db,
          'hang',
          'db-hang',
          'db',
          plan.durationMs - refuse,
          'Postgres connections held',
        )
        return
      }
      case 'store-refuse':
        return this.#proxyWindow(
          this.deps.store,
          'refuse',
          'store-refuse',
          'store',
          plan.durationMs,
          'store connections refused',
        )
      case 'store-pause':
        return this.#proxyWindow(this.deps.store, 'hang', 'store-pause', 'store', plan.durationMs, 'store paused')
      case 'replica-sigkill':
      case 'replica-sigterm':
        return this.#replicaDown(plan)
      default:
        return this.#providerFault(plan)
    }
  }

  async #proxyWindow(
    proxy: CuttableProxy,
    mode: 'refuse' | 'hang',
    kind: FaultKind,
    target: string,
    ms: number,
    detail: string,
  ): Promise<void> {
    const w = this.open(kind, target, `${detail} for ${ms} ms`)
    await proxy.set(mode)
    await sleep(ms)
    await proxy.set('pass')
    w.end = Date.now()
  }

  async #replicaDown(plan: Plan): Promise<void> {
    const replica = this.deps.replicas.find((r) => r.name === plan.target) as Replica
    if (!replica.running()) return
    const signal = plan.kind === 'replica-sigkill' ? 'SIGKILL' : 'SIGTERM'
    this.down.add(replica.name)
    this.deps.router.take(replica.name)
    const w = this.open(plan.kind as FaultKind, replica.name, `${signal}, restarted after ${plan.durationMs} ms`)
    const exit = replica.signal(signal)
    const killer = setTimeout(() => void replica.signal('SIGKILL'), 60_000)
    await exit
    clearTimeout(killer)
    await sleep(plan.durationMs)
    await this.restart(replica, w)
  }

  /** Starts `replica` again, routes to it once ready, and closes `w`. */
  async restart(replica: Replica, w: FaultWindow): Promise<void> {
    replica.start()
    const ready = await replica.ready(120_000)
    w.end = Date.now()
    if (!ready) w.detail += '; not ready within 120 s after the restart'
    this.deps.router.give(replica.name)
    this.down.delete(replica.name)
  }

  async #providerFault(plan: Plan): Promise<void> {
    const fake = this.deps.fakes.get(plan.target) as FakeProvider
    const tap = this.deps.taps.get(plan.target) as ProviderTap
    if (plan.kind === 'provider-forget') {
      const ids = [...fake.files.keys()].filter((id) => !this.deps.foreign.has(id))
      const chosen = new Set<string>()
      while (chosen.size < Math.min(plan.amount, ids.length)) chosen.add(this.rng.pick(ids))
      for (const id of chosen) fake.forget(id)
      const what =
        chosen.size > 0 ? `deleted inside the fake: ${[...chosen].join(', ')}` : 'no file there yet to delete'
      const w = this.open('provider-forget', plan.target, what)
      w.end = w.start
      return
    }
    if (plan.kind === 'provider-hang' || plan.kind === 'provider-latency') {
      const hang = plan.kind === 'provider-hang'
      const w = this.open(
        plan.kind,
        plan.target,
        hang ? `every request held for ${plan.durationMs} ms` : `${plan.amount} ms latency for ${plan.durationMs} ms`,
      )
      fake.ops = null
      if (hang) fake.hang = true
      else fake.latencyMs = plan.amount
      await sleep(plan.durationMs)
      fake.hang = false
      fake.latencyMs = 0
      w.end = Date.now()
      return
    }
    // A burst of n answers for at most the planned time: what the service has not drawn by then
    // is drawn by the soak through the tap (the fake cannot take a burst back).
    const status = plan.kind === 'provider-500' ? 500 : 429
    const burst = { provider: plan.target, status, total: tap.statusCount(status) + plan.amount }
    this.#bursts.push(burst)
    const w = this.open(
      plan.kind as FaultKind,
      plan.target,
      `next ${plan.amount} requests answer ${status}, for ${plan.durationMs} ms at most`,
    )
    if (status === 500) fake.failNext(plan.amount, 500)
    else fake.rateLimitNext(plan.amount, 1)
    const until = Date.now() + plan.durationMs
    while (tap.statusCount(status) < burst.total && Date.now() < until) await sleep(100)
    const left = burst.total - tap.statusCount(status)
    if (left > 0) w.detail += `; ${left} drawn by the soak at the end`
    await this.#drain(burst)
    w.end = Date.now()
  }
}
