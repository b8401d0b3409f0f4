/**
 * CPU accounting per process group from /proc (Linux): on a 2-core machine the service, Postgres,
 * the fake and the load generator share the cores, and the split says what bounds a figure.
 */
import { readdir, readFile } from 'node:fs/promises'

const ticksPerSecond = 100 // USER_HZ on Linux

async function processTicks(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may hold spaces): utime is the 14th field, stime the 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return Number(fields[11]) + Number(fields[12])
  } catch {
    return 0
  }
}

async function pidsNamed(name: string): Promise<number[]> {
  const out: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const comm = await readFile(`/proc/${entry}/comm`, 'utf8').catch(() => '')
    if (comm.trim() === name) out.push(Number(entry))
  }
  return out
}

async function systemBusyTicks(): Promise<{ busy: number; total: number }> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? ''
  const n = line.trim().split(/\s+/).slice(1).map(Number)
  const total = n.reduce((a, b) => a + b, 0)
  const idle = (n[3] ?? 0) + (n[4] ?? 0)
  return { busy: total - idle, total }
}

export type CpuGroups = Record<string, number[] | 'postgres'>

export interface CpuSplit {
  seconds: number
  /** CPU seconds used by each group during the window. */
  groups: Record<string, number>
  /** CPU seconds used by the whole machine (all cores). */
  machineBusy: number
  cores: number
}

/** Starts counting now; `stop()` returns what each group used since. */
export async function cpuMeter(groups: CpuGroups, cores: number) {
  const resolved: Record<string, number[]> = {}
  for (const [name, pids] of Object.entries(groups))
    resolved[name] = pids === 'postgres' ? await pidsNamed('postgres') : pids
  // Ticks per process: one that exits in the window (a Postgres backend whose connection closed)
  // reads 0 at the end and counts nothing, instead of taking its earlier ticks off its group's sum.
  const read = async () => {
    const out = new Map<number, number>()
    for (const pids of Object.values(resolved)) for (const pid of pids) out.set(pid, await processTicks(pid))
    return out
  }
  // Postgres starts a backend per new connection: count those born during the window too.
  const before = await read()
  const sysBefore = await systemBusyTicks()
  const started = performance.now()
  return {
    async stop(): Promise<CpuSplit> {
      const seconds = (performance.now() - started) / 1000
      if (groups.postgres === 'postgres') {
        const now = await pidsNamed('postgres')
        const fresh = now.filter((p) => !resolved.postgres?.includes(p))
        resolved.postgres = [...(resolved.postgres ?? []), ...fresh]
      }
      const after = await read()
      const sysAfter = await systemBusyTicks()
      const out: Record<string, number> = {}
      for (const [name, pids] of Object.entries(resolved)) {
        let ticks = 0
        for (const pid of pids) ticks += Math.max(0, (after.get(pid) ?? 0) - (before.get(pid) ?? 0))
        out[name] = ticks / ticksPerSecond
      }
      return {
        seconds,
        groups: out,
        machineBusy: (sysAfter.busy - sysBefore.busy) / ticksPerSecond,
        cores,
      }
    },
  }
}

/** "service 0.98 cores, postgres 0.62, …" */
export function describeSplit(split: CpuSplit, perUnit?: { count: number; unit: string }): string {
  const parts = Object.entries(split.groups).map(([name, s]) => {
    const cores = s / split.seconds
    const per = perUnit && perUnit.count > 0 ? `, ${Math.round((s / perUnit.count) * 1e6)} µs/${perUnit.unit}` : ''
    return `${name} ${cores.toFixed(2)} cores${per}`
  })
  parts.push(`machine ${(split.machineBusy / split.seconds).toFixed(2)} of ${split.cores} cores busy`)
  return parts.join('; ')
}
