import os from 'node:os'
import { pino, type Logger } from 'pino'
import pretty from 'pino-pretty'
import { z } from 'zod'
import { createPulseboard, PortInUseError, pulseboardDefaults } from '../bridge/app.ts'
import { brokerDefaults } from '../broker/broker.ts'
import { bridgeDefaults } from '../bridge/bridge.ts'
import { MQTT_WS_PATH } from '../bridge/http.ts'
import { topicError } from '../protocol/index.ts'
import { CliError, UsageError, parse, type Command } from './args.ts'
import pkg from '../package.json' with { type: 'json' }

const usage = `Usage: pulseboard start [options]

Starts the MQTT broker, the socket.io bridge and the dashboard.

Options:
  -p, --port <n>           HTTP port: dashboard, API, socket.io, MQTT over WebSocket
                           (env PORT, default ${pulseboardDefaults.port})
      --mqtt-port <n>      MQTT over TCP port (env MQTT_PORT, default ${pulseboardDefaults.mqttPort})
      --host <addr>        address to listen on (env HOST, default all interfaces)
      --chat-topic <t>     MQTT topic for chat text from socket clients
                           (env CHAT_TOPIC, default "${bridgeDefaults.chatTopic}")
      --max-packet-size <bytes>
                           largest MQTT packet accepted (env MAX_PACKET_SIZE, default ${brokerDefaults.maxPacketSize})
      --log-level <level>  fatal, error, warn, info, debug or trace (env LOG_LEVEL, default info)
  -h, --help               show this help`

const port = (flag: string, env: string) =>
  z.coerce
    .number({ error: `${flag} (or ${env}) must be a port number from 0 to 65535` })
    .int(`${flag} (or ${env}) must be a port number from 0 to 65535`)
    .min(0, `${flag} (or ${env}) must be a port number from 0 to 65535`)
    .max(65535, `${flag} (or ${env}) must be a port number from 0 to 65535`)

/** The whole server configuration, checked once before anything starts. */
const ConfigSchema = z.object({
  port: port('--port', 'PORT').default(pulseboardDefaults.port),
  mqttPort: port('--mqtt-port', 'MQTT_PORT').default(pulseboardDefaults.mqttPort),
  host: z.string().min(1, '--host (or HOST) must not be empty').optional(),
  chatTopic: z
    .string()
    .superRefine((topic, ctx) => {
      const problem = topicError(topic)
      if (problem) ctx.addIssue({ code: 'custom', message: `--chat-topic (or CHAT_TOPIC): ${problem}` })
    })
    .default(bridgeDefaults.chatTopic),
  maxPacketSize: z.coerce
    .number()
    .int('--max-packet-size (or MAX_PACKET_SIZE) must be a whole number of bytes')
    .min(1024, '--max-packet-size (or MAX_PACKET_SIZE) must be at least 1024 bytes')
    .max(268_435_455, '--max-packet-size (or MAX_PACKET_SIZE) must be at most 268435455, the MQTT limit')
    .default(brokerDefaults.maxPacketSize),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
    error: '--log-level (or LOG_LEVEL) must be one of fatal, error, warn, info, debug, trace, silent',
  }).default('info'),
})

export type StartConfig = z.infer<typeof ConfigSchema>

/** Flags win over environment variables, which win over defaults. */
export function readConfig(argv: string[], env: NodeJS.ProcessEnv): StartConfig {
  const { values } = parse(argv, {
    port: { type: 'string', short: 'p' },
    'mqtt-port': { type: 'string' },
    host: { type: 'string' },
    'chat-topic': { type: 'string' },
    'max-packet-size': { type: 'string' },
    'log-level': { type: 'string' },
  })
  const raw: Record<string, string | undefined> = {
    port: values.port ?? env.PORT,
    mqttPort: values['mqtt-port'] ?? env.MQTT_PORT,
    host: values.host ?? env.HOST,
    chatTopic: values['chat-topic'] ?? env.CHAT_TOPIC,
    maxPacketSize: values['max-packet-size'] ?? env.MAX_PACKET_SIZE,
    logLevel: values['log-level'] ?? env.LOG_LEVEL,
  }
  const result = ConfigSchema.safeParse(raw)
  if (!result.success) {
    const issue = result.error.issues[0]!
    throw new UsageError(`${issue.message}, got ${JSON.stringify(raw[String(issue.path[0])])}`)
  }
  return result.data
}

function createLogger(level: string): Logger {
  // people read a terminal; machines read JSON lines
  if (process.stdout.isTTY) return pino({ level }, pretty({ colorize: true, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss' }))
  return pino({ level })
}

/** Addresses a device on the LAN can use, or the one address we are bound to. */
function reachableHosts(host: string | undefined): string[] {
  if (host && host !== '0.0.0.0' && host !== '::') return [host]
  const lan = Object.values(os.networkInterfaces())
    .flat()
    .filter((i) => i && i.family === 'IPv4' && !i.internal)
    .map((i) => i!.address)
  return ['localhost', ...lan]
}

function banner(hosts: string[], port: number, mqttPort: number): string {
  const lan = hosts.find((h) => h !== 'localhost') ?? hosts[0]!
  const rows: [string, string[]][] = [
    ['Dashboard', hosts.map((h) => `http://${h}:${port}/`)],
    ['MQTT', hosts.map((h) => `mqtt://${h}:${mqttPort}`)],
    ['MQTT over WS', [`ws://${lan}:${port}${MQTT_WS_PATH}`]],
    ['socket.io', [`http://${lan}:${port}  (namespaces / and /live)`]],
  ]
  const lines = [`Pulseboard ${pkg.version} is running`, '']
  for (const [label, values] of rows) values.forEach((v, i) => lines.push(`  ${(i === 0 ? label : '').padEnd(14)}${v}`))
  lines.push(
    '',
    'Point a device at the MQTT address above, or try:',
    `  mosquitto_pub -h ${lan} -p ${mqttPort} -t devices/demo/telemetry -m '{"temperature":21.5}'`,
    `  npx pulseboard simulate --devices 5${mqttPort === pulseboardDefaults.mqttPort ? '' : ` --url mqtt://localhost:${mqttPort}`}`,
    '',
    'Press Ctrl-C to stop.',
  )
  return lines.join('\n')
}

export const start: Command = {
  name: 'start',
  summary: 'start the broker, bridge and dashboard',
  usage,
  async run(argv) {
    const config = readConfig(argv, process.env)
    const logger = createLogger(config.logLevel)
    const app = await createPulseboard({ ...config, logger })
    let ports
    try {
      ports = await app.listen()
    } catch (err) {
      await app.close()
      if (err instanceof PortInUseError) {
        const flag = err.listener === 'mqtt' ? '--mqtt-port (or MQTT_PORT)' : '--port (or PORT)'
        throw new CliError(`port ${err.port} is already in use; stop what uses it or choose another with ${flag}`)
      }
      if ((err as NodeJS.ErrnoException).code === 'EADDRNOTAVAIL') {
        throw new CliError(`cannot listen on ${config.host}: no such address on this machine; fix --host (or HOST)`)
      }
      if ((err as NodeJS.ErrnoException).code === 'EACCES') {
        throw new CliError(`not allowed to listen on a port below 1024; choose another with --port or --mqtt-port`)
      }
      throw err
    }
    console.log(banner(reachableHosts(config.host), ports.port, ports.mqttPort))

    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        process.off('SIGINT', stop)
        process.off('SIGTERM', stop)
        // a second Ctrl-C during a slow shutdown quits at once
        process.once('SIGINT', () => process.exit(130))
        logger.info(`${signal}: shutting down`)
        app.close().then(resolve, (err: Error) => {
          logger.error({ err }, 'error while shutting down')
          resolve()
        })
      }
      process.on('SIGINT', stop)
      process.on('SIGTERM', stop)
    })
  },
}
