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

/**
 * A server of several processes (PostgreSQL: the postmaster and its backends and workers) as one:
 * CPU of the root, of every process under it, and of those that ended meanwhile (a parent that
 * reaps a child adds the child's time to its own cutime and cstime, so nothing is lost when a
 * backend exits between two samples). Memory is the sum of PSS: shared memory counted once.
 */
export function sampleProcessTree(rootPid: number): ProcessSample & { processes: number } {
  const at = performance.now()
  const parents = new Map<number, number[]>()
  const times = new Map<number, { own: number; reaped: number }>()
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try {
      stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue // ended while we looked
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const pid = Number(entry)
    const ppid = Number(fields[1])
    parents.set(ppid, [...(parents.get(ppid) ?? []), pid])
    // utime, stime, cutime, cstime: the 14th to 17th fields of stat, the 12th to 15th after the name
    times.set(pid, { own: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND, reaped: (Number(fields[13]) + Number(fields[14])) / TICKS_PER_SECOND })
  }
  let cpuSeconds = 0
  let rssBytes = 0
  let processes = 0
  const visit = (pid: number) => {
    const t = times.get(pid)
    if (!t) return
    processes++
    cpuSeconds += t.own + t.reaped
    rssBytes += memoryOf(pid)
    for (const child of parents.get(pid) ?? []) visit(child)
  }
  visit(rootPid)
  return { at, cpuSeconds, rssBytes, processes }
}

/** Proportional set size, bytes (VmRSS where smaps_rollup cannot be read). */
function memoryOf(pid: number): number {
  try {
    const pss = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))
    if (pss) return Number(pss[1]) * 1024
  } catch {
    // not ours to read, or gone
  }
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024
  } catch {
    return 0
  }
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
