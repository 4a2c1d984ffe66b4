import fs from 'node:fs'

/** CPU seconds and resident memory of a process on this machine, from /proc. */
export interface ProcessSample {
  at: number
  cpuSeconds: number
  rssBytes: number
}

const TICKS_PER_SECOND = 100 // USER_HZ on Linux

export function sampleProcess(pid: number): ProcessSample {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  // the command name may hold spaces; fields after it are fixed: state is first, utime 12th, stime 13th
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND
  const rss = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))
  return { at: performance.now(), cpuSeconds, rssBytes: Number(rss?.[1] ?? 0) * 1024 }
}

/** The same figures from a Pulseboard's /metrics, for a server the bench did not start. */
export async function sampleMetrics(httpUrl: string): Promise<ProcessSample> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text()
  const read = (name: string) => Number(new RegExp(`^${name} ([\\d.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN)
  return {
    at: performance.now(),
    cpuSeconds: read('pulseboard_process_cpu_seconds_total'),
    rssBytes: read('pulseboard_process_resident_memory_bytes'),
  }
}

/** Percent of one core used between two samples. */
export function cpuPercent(a: ProcessSample, b: ProcessSample): number {
  return ((b.cpuSeconds - a.cpuSeconds) / ((b.at - a.at) / 1000)) * 100
}

/** CPU seconds the whole machine spent busy (all cores, every process and the kernel), from /proc/stat. */
export interface MachineSample {
  at: number
  busySeconds: number
}

export function sampleMachine(): MachineSample {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!
  // cpu  user nice system idle iowait irq softirq steal ...: idle and iowait are not busy
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number)
  const busy = ticks.reduce((a, b) => a + b, 0) - ticks[3]! - ticks[4]!
  return { at: performance.now(), busySeconds: busy / TICKS_PER_SECOND }
}

/** Percent of one core the machine was busy between two samples (200 = two cores full). */
export function machinePercent(a: MachineSample, b: MachineSample): number {
  return ((b.busySeconds - a.busySeconds) / ((b.at - a.at) / 1000)) * 100
}
