/**
 * Summarises a V8 `.cpuprofile` (node --cpu-prof): self time per function and per package, so
 * the report can say where the service's CPU went without opening a viewer.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'

interface CpuNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
  children?: number[]
}
interface CpuProfile {
  nodes: CpuNode[]
  startTime: number
  endTime: number
  samples?: number[]
  timeDeltas?: number[]
}

export interface ProfileSummary {
  file: string
  totalMs: number
  idleMs: number
  topFunctions: Array<{ name: string; where: string; selfMs: number; share: number }>
  byPackage: Array<{ name: string; selfMs: number; share: number }>
}

function packageOf(url: string, root: string): string {
  if (!url) return '(native/V8)'
  if (url.startsWith('node:')) return 'node core'
  const path = url.replace(/^file:\/\//, '')
  const nm = path.lastIndexOf('/node_modules/')
  if (nm >= 0) {
    const rest = path.slice(nm + '/node_modules/'.length).split('/')
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : (rest[0] ?? '?')
  }
  const rel = relative(root, path)
  return rel.startsWith('..') ? path : `filegate:${rel.split('/').slice(0, 2).join('/')}`
}

export async function summariseProfile(file: string, root: string, top = 15): Promise<ProfileSummary> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const self = new Map<number, number>()
  const samples = profile.samples ?? []
  const deltas = profile.timeDeltas ?? []
  for (let i = 0; i < samples.length; i++) {
    const id = samples[i] as number
    self.set(id, (self.get(id) ?? 0) + (deltas[i] ?? 0) / 1000)
  }
  let total = 0
  let idle = 0
  const fn = new Map<string, { name: string; where: string; selfMs: number }>()
  const pkg = new Map<string, number>()
  for (const [id, ms] of self) {
    const node = byId.get(id)
    if (!node) continue
    total += ms
    const { functionName, url, lineNumber } = node.callFrame
    if (functionName === '(idle)') {
      idle += ms
      continue
    }
    const where = url ? `${url.replace(/^file:\/\//, '').replace(`${root}/`, '')}:${lineNumber + 1}` : ''
    const key = `${functionName}|${where}`
    const entry = fn.get(key) ?? { name: functionName || '(anonymous)', where, selfMs: 0 }
    entry.selfMs += ms
    fn.set(key, entry)
    const p = functionName.startsWith('(') ? functionName : packageOf(url, root)
    pkg.set(p, (pkg.get(p) ?? 0) + ms)
  }
  const busy = total - idle || 1
  return {
    file,
    totalMs: total,
    idleMs: idle,
    topFunctions: [...fn.values()]
      .sort((a, b) => b.selfMs - a.selfMs)
      .slice(0, top)
      .map((f) => ({ ...f, share: f.selfMs / busy })),
    byPackage: [...pkg.entries()]
      .map(([name, selfMs]) => ({ name, selfMs, share: selfMs / busy }))
      .sort((a, b) => b.selfMs - a.selfMs)
      .slice(0, top),
  }
}

/**
 * The main thread's profile among those a process wrote into `dir` (the tsx loader's worker
 * thread writes one too): the one with the most CPU time that is not idle.
 */
export async function summariseMainThread(dir: string, root: string): Promise<ProfileSummary | undefined> {
  let best: ProfileSummary | undefined
  const names = await readdir(dir).catch(() => [] as string[])
  for (const name of names.filter((n) => n.endsWith('.cpuprofile'))) {
    const summary = await summariseProfile(join(dir, name), root)
    if (!best || summary.totalMs - summary.idleMs > best.totalMs - best.idleMs) best = summary
  }
  return best
}
