import http from 'node:http'
import net from 'node:net'
import { Aedes } from 'aedes'
import { Server } from 'socket.io'
import { LIVE_NAMESPACE } from '../protocol/index.ts'

/**
 * The bridge as the tutorial's server would grow it: one `emit` of an object
 * per MQTT message, to every client, with default sockets. The bench runs it
 * beside Pulseboard to show what the fan-out design buys.
 */
export async function createNaiveBridge(): Promise<{ mqtt: net.Server; http: http.Server; close(): Promise<void> }> {
  const aedes = await Aedes.createBroker()
  const mqtt = net.createServer(aedes.handle)
  const server = http.createServer()
  const io = new Server(server)
  const live = io.of(LIVE_NAMESPACE)
  aedes.on('publish', (packet, client) => {
    if (!client) return
    live.emit('message', {
      topic: packet.topic,
      payload: packet.payload.toString(),
      ts: Date.now(),
      source: 'mqtt',
      clientId: client.id,
      qos: packet.qos,
      retain: packet.retain,
    })
  })
  return {
    mqtt,
    http: server,
    async close() {
      io.close()
      mqtt.close()
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
    },
  }
}
