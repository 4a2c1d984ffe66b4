import { spawnRole } from './ipc.ts'
import { sampleProcess } from './process-stats.ts'
import type { IdleConfig, IdleReady } from './idle.ts'
import type { ServeReady, ServedTarget } from './serve.ts'

export interface ScaleResult {
  target: ServedTarget
  kind: 'mqtt' | 'socket'
  connections: number
  connectMs: number
  /** Resident memory of the server added per connection, in KB. */
  rssPerConnectionKb: number
  rssMb: number
}

/** Opens `count` idle connections of `kind` to `target` and measures the server's memory per connection. */
export async function runScale(target: ServedTarget, kind: 'mqtt' | 'socket', count: number): Promise<ScaleResult> {
  const server = await spawnRole<ServeReady, never>('serve', { target })
  try {
    // let start-up allocation settle, so the baseline is the idle server
    await new Promise((r) => setTimeout(r, 500))
    const before = sampleProcess(server.pid)
    const port = kind === 'mqtt' ? server.ready.mqttPort : server.ready.port
    const idle = await spawnRole<IdleReady, never>('idle', { kind, host: '127.0.0.1', port, count } satisfies IdleConfig)
    try {
      await new Promise((r) => setTimeout(r, 1000))
      const after = sampleProcess(server.pid)
      return {
        target,
        kind,
        connections: count,
        connectMs: Math.round(idle.ready.connectMs),
        rssPerConnectionKb: Math.round(((after.rssBytes - before.rssBytes) / count / 1024) * 10) / 10,
        rssMb: Math.round(after.rssBytes / 1e5) / 10,
      }
    } finally {
      idle.send({ type: 'stop' })
      await idle.kill()
    }
  } finally {
    await server.kill()
  }
}
