import net from 'node:net'
import mqttPacket from 'mqtt-packet'

/**
 * Raw MQTT 3.1.1 over TCP for the load generator: mqtt.js does more per
 * message than the broker under test, so the generator would be the limit.
 */
export function connectRaw(host: string, port: number, clientId: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host)
    socket.setNoDelay(true)
    const fail = (err: Error) => {
      socket.destroy()
      reject(err)
    }
    socket.once('error', fail)
    socket.once('connect', () => {
      socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 0 }))
    })
    socket.once('data', (chunk: Buffer) => {
      // CONNACK: 0x20 0x02 flags code
      if (chunk[0] !== 0x20 || chunk[3] !== 0) return fail(new Error(`connection refused by the broker (CONNACK ${chunk.toString('hex')})`))
      socket.off('error', fail)
      resolve(socket)
    })
  })
}

/** One PUBLISH packet [MQTT-3.3]: fixed header, topic, packet id for QoS > 0, payload. */
export function publishPacket(topic: string, payload: string, qos: 0 | 1, packetId: number): Buffer {
  const topicLength = Buffer.byteLength(topic)
  const payloadLength = Buffer.byteLength(payload)
  const remaining = 2 + topicLength + (qos > 0 ? 2 : 0) + payloadLength
  const lengthBytes = remaining < 128 ? 1 : remaining < 16384 ? 2 : remaining < 2097152 ? 3 : 4
  const packet = Buffer.allocUnsafe(1 + lengthBytes + remaining)
  packet[0] = 0x30 | (qos << 1)
  let offset = 1
  let n = remaining
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    packet[offset++] = byte
  } while (n > 0)
  packet.writeUInt16BE(topicLength, offset)
  offset += 2
  offset += packet.write(topic, offset)
  if (qos > 0) {
    packet.writeUInt16BE(packetId, offset)
    offset += 2
  }
  packet.write(payload, offset)
  return packet
}
