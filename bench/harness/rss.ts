/** Samples a process's resident memory from /proc/<pid>/status (Linux). */
import { readFile, writeFile } from 'node:fs/promises'

export interface MemoryReading {
  rssBytes: number
  hwmBytes: number
}

export async function readMemory(pid: number): Promise<MemoryReading> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024
  return { rssBytes: kb('VmRSS'), hwmBytes: kb('VmHWM') }
}

/** Samples VmRSS every `intervalMs` until stopped; reports the peak seen and the count. */
export function sampleRss(pid: number, intervalMs = 50) {
  let peak = 0
  let samples = 0
  const series: Array<{ t: number; rss: number }> = []
  const started = Date.now()
  const timer = setInterval(() => {
    readMemory(pid).then(
      ({ rssBytes }) => {
        samples++
        peak = Math.max(peak, rssBytes)
        series.push({ t: Date.now() - started, rss: rssBytes })
      },
      () => {},
    )
  }, intervalMs)
  return {
    stop() {
      clearInterval(timer)
      return { peakRssBytes: peak, samples, series }
    },
  }
}

/**
 * Resets the kernel's high-water mark (VmHWM) of `pid` to its current RSS (`5` written to
 * /proc/<pid>/clear_refs, Linux ≥ 4.0), so the next VmHWM read is the peak since now. False when
 * the kernel refuses (not the process's owner, not Linux): the sampled peak is all there is then.
 */
export async function resetPeak(pid: number): Promise<boolean> {
  return writeFile(`/proc/${pid}/clear_refs`, '5').then(
    () => true,
    () => false,
  )
}
