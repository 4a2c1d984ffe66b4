// A CSV export of a million readings from a real `pulseboard start`: streamed page by page, so
// the server's memory stays flat however long the export. (Whether it waits for a slow client is
// not checked here: loopback TCP buffers, up to tcp_rmem's 32 MiB, can hold most of these 30 MB.)
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it, onTestFinished } from 'vitest'
import type { Reading } from '../../protocol/index.ts'
import { Registry } from '../../devices/registry.ts'
import { SqliteStore } from '../../store/sqlite.ts'
import { cliPath, killAll, run } from '../helpers/process.ts'

afterEach(async () => {
  await killAll()
})

const ROWS = 1_000_000
const METRICS = ['active_power', 'voltage'] as const
const PER_METRIC = ROWS / METRICS.length
const STEP_MS = 1000
const value = (metric: number, i: number) => (metric === 0 ? (i % 5000) / 10 : 230 + (i % 100) / 100)

/** Writes ROWS readings of device `meter` straight into a store, and the device as the registry saves it. */
async function fill(file: string, t0: number): Promise<void> {
  const store = SqliteStore.open({ file })
  try {
    const registry = new Registry()
    registry.ingest({ topic: 'devices/meter/telemetry', payload: JSON.stringify({ active_power: 0, voltage: 230 }), ts: t0 + PER_METRIC * STEP_MS, source: 'mqtt', qos: 0, retain: false })
    store.saveDevices([{ id: 'meter', snapshot: registry.snapshot('meter') }])
    registry.close()
    const batch = 50_000
    for (let start = 0; start < PER_METRIC; start += batch / METRICS.length) {
      const readings: Reading[] = []
      for (let i = start; i < start + batch / METRICS.length; i++) {
        METRICS.forEach((metric, m) => readings.push({ device: 'meter', metric, ts: t0 + i * STEP_MS, value: value(m, i) }))
      }
      store.append(readings)
      await store.flush()
    }
    expect(store.usage.readings).toBe(ROWS)
  } finally {
    await store.close()
  }
}

/** Resident memory and CPU time (ms) of a process, from /proc. */
function rss(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024
}
function cpuMs(pid: number): number {
  // fields 14 and 15 of /proc/<pid>/stat, after the parenthesised command name
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100
}
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`

describe('GET /api/devices/:id/export.csv', () => {
  it('streams 1 M rows, the server growing by at most 50 MB', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'pulseboard-store-export-'))
    onTestFinished(() => rmSync(dataDir, { recursive: true, force: true }))
    const t0 = Date.now() - PER_METRIC * STEP_MS - 60_000
    const filled = performance.now()
    await fill(path.join(dataDir, 'pulseboard.db'), t0)
    const fillMs = performance.now() - filled

    // with the flags of the command's shebang, as users run it: a 1 MB young generation
    const start = ['start', '--port', '0', '--mqtt-port', '0', '--host', '127.0.0.1', '--log-level', 'warn', '--data-dir', dataDir]
    const child = run(process.execPath, ['--max-semi-space-size=1', '--import', 'tsx', cliPath, ...start])
    const banner = (await child.stdout.until('pulseboard start to print its banner', (l) => l.some((x) => x.startsWith('Press Ctrl-C')), 20_000)).join('\n')
    const httpUrl = `http://127.0.0.1:${/http:\/\/127\.0\.0\.1:(\d+)\//.exec(banner)![1]}`
    const pid = child.process.pid!
    expect((await fetch(`${httpUrl}/api/devices/meter`)).status).toBe(200)
    const idle = rss(pid)

    let peak = idle
    const sampler = setInterval(() => (peak = Math.max(peak, rss(pid))), 20)
    onTestFinished(() => clearInterval(sampler))
    const started = performance.now()
    const cpuBefore = cpuMs(pid)
    const res = await fetch(`${httpUrl}/api/devices/meter/export.csv`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('text/csv; charset=utf-8')
    const reader = res.body!.getReader()
    const decoder = new TextDecoder()
    let lines = 0
    let head = ''
    let tail = ''
    let bytes = 0
    for (;;) {
      const { done, value: chunk } = await reader.read()
      if (done) break
      bytes += chunk.length
      for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines++
      const text = decoder.decode(chunk, { stream: true })
      if (head.length < 200) head += text.slice(0, 200)
      tail = (tail + text).slice(-200)
    }
    const exportMs = performance.now() - started
    clearInterval(sampler)
    peak = Math.max(peak, rss(pid))

    const rowsPerSecond = Math.round(ROWS / (exportMs / 1000))
    const serverCpuMs = cpuMs(pid) - cpuBefore
    console.info(
      `export: ${ROWS} rows, ${mib(bytes)} in ${exportMs.toFixed(0)} ms = ${rowsPerSecond} rows/s; server CPU ${serverCpuMs} ms = ${Math.round(ROWS / (serverCpuMs / 1000))} rows per CPU second; ` +
        `server RSS idle ${mib(idle)}, peak ${mib(peak)} (+${mib(peak - idle)}); fill ${fillMs.toFixed(0)} ms`,
    )
    expect(lines, 'rows plus the header').toBe(ROWS + 1)
    const last = PER_METRIC - 1
    expect(head.split('\r\n').slice(0, 3)).toEqual(['ts,metric,value', `${t0},active_power,0`, `${t0},voltage,230`])
    expect(tail.endsWith(`${t0 + last * STEP_MS},active_power,${value(0, last)}\r\n${t0 + last * STEP_MS},voltage,${value(1, last)}\r\n`)).toBe(true)
    expect(peak - idle, `RSS growth: idle ${mib(idle)}, peak ${mib(peak)}`).toBeLessThanOrEqual(50 * 2 ** 20)
    expect(await child.kill()).toBe(0)
  }, 90_000)
})
