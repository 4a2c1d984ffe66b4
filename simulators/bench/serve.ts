/** A bench role: the system under test, in a process of its own so its CPU and memory can be measured. */
import type net from 'node:net'
import http from 'node:http'
import { Server } from 'socket.io'
import { createPulseboard } from '../../bridge/app.ts'
import { createBroker } from '../../broker/broker.ts'
import { LIVE_NAMESPACE } from '../../protocol/index.ts'
import { createNaiveBridge } from './naive.ts'
import { roleContext } from './ipc.ts'

/** What runs: Pulseboard, the naive bridge, the embedded broker alone, or socket.io alone. */
export type ServedTarget = 'pulseboard' | 'naive' | 'broker' | 'socketio'

export interface ServeReady {
  type: 'ready'
  mqttPort: number
  port: number
}

const ctx = roleContext<{ target: ServedTarget }>()
const HOST = '127.0.0.1'

function listen(server: net.Server | http.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, HOST, () => resolve((server.address() as net.AddressInfo).port)))
}

try {
  let ports: { mqttPort: number; port: number }
  switch (ctx.config.target) {
    case 'pulseboard': {
      const app = await createPulseboard({ mqttPort: 0, port: 0, host: HOST })
      ports = await app.listen()
      break
    }
    case 'naive': {
      const naive = await createNaiveBridge()
      ports = { mqttPort: await listen(naive.mqtt), port: await listen(naive.http) }
      break
    }
    case 'broker': {
      const broker = await createBroker()
      ports = { mqttPort: await listen(broker.tcpServer), port: 0 }
      break
    }
    case 'socketio': {
      const server = http.createServer()
      // the namespace the dashboard connects to, with nothing behind it
      new Server(server).of(LIVE_NAMESPACE)
      ports = { mqttPort: 0, port: await listen(server) }
      break
    }
  }
  ctx.send({ type: 'ready', ...ports } satisfies ServeReady)
} catch (err) {
  ctx.send({ type: 'ready', error: `server: ${(err as Error).message}` })
}
