import net from 'node:net'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { createBroker, type Broker } from '../../broker/broker.ts'
import { createHttpServer, type HttpServer } from '../../server/http.ts'
import { startStack, type Stack } from '../helpers/stack.ts'
import { ANONYMOUS } from '../../protocol/index.ts'

/** A pino logger whose lines are kept, parsed, for the test to read. */
function capturedLogger() {
  const lines: Record<string, unknown>[] = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>)
      done()
    },
  })
  return { logger: pino({ level: 'info' }, stream), lines }
}

let broker: Broker | null = null
let http: HttpServer | null = null
let stack: Stack | null = null
afterEach(async () => {
  await http?.close()
  await broker?.close()
  await stack?.close()
  broker = http = stack = null
})

describe('HTTP failures', () => {
  it('turns a route that throws into a 500 with a code, and logs it with the request', async () => {
    const { logger, lines } = capturedLogger()
    broker = await createBroker()
    http = await createHttpServer({ maxPacketSize: broker.limits.maxPacketSize, identify: async () => ANONYMOUS, dashboardDir: '/nonexistent', maxSockets: 10, maxRecoveryBytes: 1024 * 1024, logger })
    http.fastify.get('/api/boom', async () => {
      throw new Error('the disk fell off')
    })
    await http.fastify.ready()
    await new Promise<void>((resolve) => http!.server.listen(0, '127.0.0.1', resolve))
    const port = (http.server.address() as net.AddressInfo).port

    const res = await fetch(`http://127.0.0.1:${port}/api/boom`)
    expect(res.status).toBe(500)
    expect(await res.json()).toEqual({ error: { code: 'E_INTERNAL', message: 'internal error; the server log has the details' } })
    const logged = lines.find((l) => l.msg === 'request failed')
    expect(logged).toMatchObject({ url: '/api/boom', err: { message: 'the disk fell off' } })
    // and the server goes on
    expect((await fetch(`http://127.0.0.1:${port}/api/nope`)).status).toBe(404)
  })

  it('logs and counts what nothing else caught', async () => {
    const { logger, lines } = capturedLogger()
    stack = await startStack({ logger })
    stack.app.uncaught(new TypeError('x is not a function'), 'uncaughtException')
    expect(lines.find((l) => l.origin === 'uncaughtException')).toMatchObject({ level: 50, err: { message: 'x is not a function' } })
    const metrics = await (await fetch(`${stack.httpUrl}/metrics`)).text()
    expect(metrics).toContain('pulseboard_uncaught_errors_total 1')
    expect((await fetch(`${stack.httpUrl}/api/health`)).status).toBe(200)
  })
})
