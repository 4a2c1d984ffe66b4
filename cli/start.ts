import { existsSync, readFileSync, unwatchFile, watchFile } from 'node:fs'
import path from 'node:path'
import { pino, type Logger } from 'pino'
import { z } from 'zod'
import { DATABASE_FILE, createPulseboard, PortInUseError, pulseboardDefaults } from '../server/pulseboard.ts'
import { StoreOpenError } from '../store/sqlite.ts'
import { ConfigError, loadConfig, type AccessConfig } from '../auth/config.ts'
import { bridgeDefaults } from '../bridge/bridge.ts'
import { MQTT_WS_PATH } from '../server/http.ts'
import { filterError, topicError } from '../protocol/index.ts'
import { BrokerConnectError, type ExternalBrokerOptions } from '../bridge/external.ts'
import { parseDuration } from '../simulators/duration.ts'
import { CliError, UsageError, parse, parseBytes, type Command } from './args.ts'
import { lanAddresses } from './hosts.ts'
import { LIMIT_FLAGS, envOf, formatLimit, memoryBudget, type LimitValues } from './limits.ts'
import { version } from '../server/package.ts'

const limitLines = LIMIT_FLAGS.map((l) => {
  const head = `      --${l.flag} <${l.unit === 'count' ? 'n' : l.unit === 'bytes' ? 'size' : 'time'}>`
  return `${head.padEnd(33)}${l.help} (default ${formatLimit(l.unit, l.default)})`
})

const usage = `Usage: pulseboard start [options]

Starts the MQTT broker, the socket.io bridge and the dashboard. With --broker,
runs on a broker you already have (Mosquitto, EMQX, HiveMQ) instead of its own.

Options:
  -p, --port <n>           HTTP port: dashboard, API, socket.io, MQTT over WebSocket
                           (env PORT, default ${pulseboardDefaults.port})
      --mqtt-port <n>      MQTT over TCP port (env MQTT_PORT, default ${pulseboardDefaults.mqttPort})
      --host <addr>        address to listen on (env HOST, default all interfaces)
      --public-url <url>   how people reach this server when that is not an IP
                           address or this machine's name (env PUBLIC_URL)
      --allow-origin <url> another origin whose web pages may connect; repeat
                           for more (env ALLOW_ORIGINS, comma-separated)
      --data-dir <dir>     where history, devices and broker state are kept, in
                           one SQLite file, pulseboard.db (env DATA_DIR, default data)
      --no-store           keep everything in memory instead; a restart forgets it
      --history <url>      keep readings, the message log and devices in PostgreSQL
                           instead, e.g. postgres://pulseboard:pw@db.lan/pulseboard
                           (env HISTORY_URL): one database for every node
      --retention <time>   how long readings are kept (env RETENTION, default 30d)
      --log-retention <time>
                           how long the raw message log is kept (env LOG_RETENTION, default 24h)
      --config <file>      users, devices, tokens and ACLs (env PULSEBOARD_CONFIG,
                           default ./pulseboard.json when it exists); without
                           any, everyone may do everything. Re-read when it changes
      --tls-cert <file>    certificate (PEM): HTTPS on --port, MQTT over TLS on
                           --mqtts-port (env TLS_CERT); SIGHUP re-reads it
      --tls-key <file>     its private key (PEM) (env TLS_KEY)
      --mqtts-port <n>     MQTT over TLS, with --tls-cert (env MQTTS_PORT, default 8883)
      --broker <url>       use this broker instead of the embedded one: mqtt://,
                           mqtts://, ws:// or wss://, e.g. mqtt://pi.local:1883
                           (env BROKER_URL). MQTT 5 when it speaks it, else 3.1.1
      --broker-username <name>
                           user name at that broker (env BROKER_USERNAME)
      --broker-password <pw>
                           its password (env BROKER_PASSWORD); visible to other
                           users of this machine, so prefer --broker-password-file
      --broker-password-file <file>
                           read the password from this file (env BROKER_PASSWORD_FILE)
      --broker-ca <file>   CA certificate (PEM) of an mqtts:// or wss:// broker
                           with a private CA (env BROKER_CA)
      --broker-client-id <id>
                           Pulseboard's client id there; given, the session is kept
                           an hour, so the broker queues QoS 1 messages while
                           Pulseboard restarts (env BROKER_CLIENT_ID)
      --broker-filters <f> topic filters to subscribe to, comma-separated
                           (env BROKER_FILTERS, default "#")
      --cluster <url>      join the other Pulseboard nodes on this Redis, e.g.
                           redis://redis.lan:6379 (env CLUSTER_URL): devices and
                           dashboards may use any node (docs/scale.md)
      --node-id <name>     this node's name in the cluster (env NODE_ID,
                           default <host name>-<random>)
      --broker-share <group>
                           several Pulseboards on one broker: each stores what the
                           broker's shared subscription $share/<group>/... hands it,
                           so each message is stored once (env BROKER_SHARE; MQTT 5)
      --command-timeout <time>
                           how long a command to an MQTT 5 device waits for its
                           answer (env COMMAND_TIMEOUT, default 5s)
      --chat-topic <t>     MQTT topic for chat text from socket clients
                           (env CHAT_TOPIC, default "${bridgeDefaults.chatTopic}")
      --log-level <level>  fatal, error, warn, info, debug or trace (env LOG_LEVEL, default info)
  -h, --help               show this help

Limits (each also from its environment variable, e.g. MAX_CONNECTIONS; sizes
take KiB, MiB, GiB; times take s, m, h; see docs/limits.md):
${limitLines.join('\n')}`

const port = (flag: string, env: string) =>
  z.coerce
    .number({ error: `${flag} (or ${env}) must be a port number from 0 to 65535` })
    .int(`${flag} (or ${env}) must be a port number from 0 to 65535`)
    .min(0, `${flag} (or ${env}) must be a port number from 0 to 65535`)
    .max(65535, `${flag} (or ${env}) must be a port number from 0 to 65535`)

const DAY = 24 * 60 * 60 * 1000
/** A retention: 30d, 12h, 90m; at least a minute. */
const days = (flag: string, env: string) =>
  z
    .string()
    .transform((text, ctx) => {
      const match = /^(\d+(?:\.\d+)?)\s*(d|h|m)$/i.exec(text.trim())
      const ms = match ? Number(match[1]) * { d: DAY, h: DAY / 24, m: 60_000 }[match[2]!.toLowerCase() as 'd' | 'h' | 'm'] : NaN
      if (!(ms >= 60_000)) ctx.addIssue({ code: 'custom', message: `${flag} (or ${env}) must be a time such as 30d, 12h or 90m` })
      return Math.round(ms)
    })
    .or(z.number())

const url = (flag: string, env: string) =>
  z
    .string()
    .refine((v) => URL.canParse(v) && /^https?:$/.test(new URL(v).protocol), `${flag} (or ${env}) must be an http:// or https:// URL`)

/** The whole server configuration but the limits, checked once before anything starts. */
const ConfigSchema = z.object({
  port: port('--port', 'PORT').default(pulseboardDefaults.port),
  mqttPort: port('--mqtt-port', 'MQTT_PORT').default(pulseboardDefaults.mqttPort),
  host: z.string().min(1, '--host (or HOST) must not be empty').optional(),
  publicUrl: url('--public-url', 'PUBLIC_URL').optional(),
  dataDir: z.string().min(1, '--data-dir (or DATA_DIR) must not be empty').default('data'),
  configFile: z.string().min(1, '--config (or PULSEBOARD_CONFIG) must not be empty').optional(),
  tlsCert: z.string().min(1, '--tls-cert (or TLS_CERT) must not be empty').optional(),
  tlsKey: z.string().min(1, '--tls-key (or TLS_KEY) must not be empty').optional(),
  mqttsPort: port('--mqtts-port', 'MQTTS_PORT').default(pulseboardDefaults.mqttsPort),
  noStore: z.boolean().default(false),
  retentionMs: days('--retention', 'RETENTION').default(30 * DAY),
  logRetentionMs: days('--log-retention', 'LOG_RETENTION').default(DAY),
  allowOrigins: z.array(url('--allow-origin', 'ALLOW_ORIGINS')).default([]),
  brokerUrl: z
    .string()
    .refine((v) => URL.canParse(v) && /^(mqtts?|wss?):$/.test(new URL(v).protocol), '--broker (or BROKER_URL) must be an mqtt://, mqtts://, ws:// or wss:// URL')
    .optional(),
  brokerUsername: z.string().min(1, '--broker-username (or BROKER_USERNAME) must not be empty').optional(),
  brokerPassword: z.string().optional(),
  brokerPasswordFile: z.string().min(1, '--broker-password-file (or BROKER_PASSWORD_FILE) must not be empty').optional(),
  brokerCa: z.string().min(1, '--broker-ca (or BROKER_CA) must not be empty').optional(),
  brokerClientId: z.string().min(1, '--broker-client-id (or BROKER_CLIENT_ID) must not be empty').max(256, '--broker-client-id (or BROKER_CLIENT_ID) must be at most 256 characters').optional(),
  brokerFilters: z
    .array(z.string())
    .min(1, '--broker-filters (or BROKER_FILTERS) needs at least one filter')
    .superRefine((filters, ctx) => {
      for (const filter of filters) {
        const problem = filterError(filter)
        if (problem) ctx.addIssue({ code: 'custom', message: `--broker-filters (or BROKER_FILTERS): ${JSON.stringify(filter)}: ${problem}` })
      }
    })
    .optional(),
  historyUrl: z
    .string()
    .refine((v) => URL.canParse(v) && /^postgres(ql)?:$/.test(new URL(v).protocol), '--history (or HISTORY_URL) must be a postgres:// URL')
    .optional(),
  clusterUrl: z
    .string()
    .refine((v) => URL.canParse(v) && /^rediss?:$/.test(new URL(v).protocol), '--cluster (or CLUSTER_URL) must be a redis:// or rediss:// URL')
    .optional(),
  nodeId: z.string().regex(/^[\w.-]{1,64}$/, '--node-id (or NODE_ID) must be 1 to 64 letters, digits, dots, dashes or underscores').optional(),
  brokerShare: z.string().regex(/^[^/+#$]{1,64}$/, '--broker-share (or BROKER_SHARE) must be a name of 1 to 64 characters without /, +, # or $').optional(),
  commandTimeoutMs: z
    .string()
    .transform((text, ctx) => {
      const ms = parseDuration(text)
      if (ms === null || ms < 100 || ms > 300_000) ctx.addIssue({ code: 'custom', message: '--command-timeout (or COMMAND_TIMEOUT) must be a time from 100ms to 5m, such as 5s' })
      return ms ?? 0
    })
    .optional(),
  chatTopic: z
    .string()
    .superRefine((topic, ctx) => {
      const problem = topicError(topic)
      if (problem) ctx.addIssue({ code: 'custom', message: `--chat-topic (or CHAT_TOPIC): ${problem}` })
    })
    .default(bridgeDefaults.chatTopic),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
    error: '--log-level (or LOG_LEVEL) must be one of fatal, error, warn, info, debug, trace, silent',
  }).default('info'),
})

export type StartConfig = z.infer<typeof ConfigSchema> & LimitValues

/** Flags win over environment variables, which win over defaults. */
export function readConfig(argv: string[], env: NodeJS.ProcessEnv): StartConfig {
  const { values } = parse(argv, {
    port: { type: 'string', short: 'p' },
    'mqtt-port': { type: 'string' },
    host: { type: 'string' },
    'public-url': { type: 'string' },
    'data-dir': { type: 'string' },
    'no-store': { type: 'boolean' },
    retention: { type: 'string' },
    'log-retention': { type: 'string' },
    config: { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'mqtts-port': { type: 'string' },
    'allow-origin': { type: 'string', multiple: true },
    broker: { type: 'string' },
    'broker-username': { type: 'string' },
    'broker-password': { type: 'string' },
    'broker-password-file': { type: 'string' },
    'broker-ca': { type: 'string' },
    'broker-client-id': { type: 'string' },
    'broker-filters': { type: 'string' },
    'command-timeout': { type: 'string' },
    'broker-share': { type: 'string' },
    cluster: { type: 'string' },
    'node-id': { type: 'string' },
    history: { type: 'string' },
    'chat-topic': { type: 'string' },
    'log-level': { type: 'string' },
    ...Object.fromEntries(LIMIT_FLAGS.map((l) => [l.flag, { type: 'string' as const }])),
  })
  const flags = values as Record<string, string | string[] | boolean | undefined>
  const one = (name: string) => flags[name] as string | undefined
  const raw = {
    port: one('port') ?? env.PORT,
    mqttPort: one('mqtt-port') ?? env.MQTT_PORT,
    host: one('host') ?? env.HOST,
    publicUrl: one('public-url') ?? env.PUBLIC_URL,
    dataDir: one('data-dir') ?? env.DATA_DIR,
    noStore: flags['no-store'] === true,
    retentionMs: one('retention') ?? env.RETENTION,
    logRetentionMs: one('log-retention') ?? env.LOG_RETENTION,
    configFile: one('config') ?? env.PULSEBOARD_CONFIG,
    tlsCert: one('tls-cert') ?? env.TLS_CERT,
    tlsKey: one('tls-key') ?? env.TLS_KEY,
    mqttsPort: one('mqtts-port') ?? env.MQTTS_PORT,
    allowOrigins: (flags['allow-origin'] as string[] | undefined) ?? env.ALLOW_ORIGINS?.split(',').filter(Boolean),
    brokerUrl: one('broker') ?? env.BROKER_URL,
    brokerUsername: one('broker-username') ?? env.BROKER_USERNAME,
    brokerPassword: one('broker-password') ?? env.BROKER_PASSWORD,
    brokerPasswordFile: one('broker-password-file') ?? env.BROKER_PASSWORD_FILE,
    brokerCa: one('broker-ca') ?? env.BROKER_CA,
    brokerClientId: one('broker-client-id') ?? env.BROKER_CLIENT_ID,
    brokerFilters: (one('broker-filters') ?? env.BROKER_FILTERS)?.split(',').map((f) => f.trim()).filter(Boolean),
    commandTimeoutMs: one('command-timeout') ?? env.COMMAND_TIMEOUT,
    brokerShare: one('broker-share') ?? env.BROKER_SHARE,
    clusterUrl: one('cluster') ?? env.CLUSTER_URL,
    historyUrl: one('history') ?? env.HISTORY_URL,
    nodeId: one('node-id') ?? env.NODE_ID,
    chatTopic: one('chat-topic') ?? env.CHAT_TOPIC,
    logLevel: one('log-level') ?? env.LOG_LEVEL,
  }
  const result = ConfigSchema.safeParse(raw)
  if (!result.success) {
    const issue = result.error.issues[0]!
    const value = issue.path.reduce<unknown>((v, key) => (v as Record<PropertyKey, unknown>)?.[key], raw)
    throw new UsageError(`${issue.message}, got ${JSON.stringify(value)}`)
  }
  if (raw.brokerUrl === undefined) {
    const stray = (['broker-username', 'broker-password', 'broker-password-file', 'broker-ca', 'broker-client-id', 'broker-filters', 'broker-share'] as const).find((f) => one(f) !== undefined)
    if (stray) throw new UsageError(`--${stray} goes with --broker (or BROKER_URL)`)
  } else {
    const stray = (['mqtt-port', 'mqtts-port'] as const).find((f) => one(f) !== undefined)
    if (stray) throw new UsageError(`--${stray} does not go with --broker: devices connect to that broker, not to Pulseboard`)
    if (raw.brokerPassword !== undefined && raw.brokerPasswordFile !== undefined) {
      throw new UsageError('give --broker-password or --broker-password-file, not both')
    }
  }
  if (raw.clusterUrl === undefined && raw.nodeId !== undefined) throw new UsageError('--node-id goes with --cluster (or CLUSTER_URL)')
  // a cluster joins embedded brokers; on a broker of one's own, every node already meets every message there
  if (raw.clusterUrl !== undefined && raw.brokerUrl !== undefined) {
    throw new UsageError('--cluster joins embedded brokers and does not go with --broker; for several nodes on one broker use --broker-share (docs/scale.md)')
  }
  const limits: LimitValues = { broker: {}, registry: {}, store: {}, sqlite: {}, fanout: {}, app: {} }
  for (const l of LIMIT_FLAGS) {
    const text = one(l.flag) ?? env[envOf(l.flag)]
    if (text !== undefined) (limits[l.part] as Record<string, number>)[l.key] = limitValue(l, text)
  }
  return { ...result.data, ...limits }
}

/** One limit's value from its flag or environment variable, or a UsageError that names both. */
function limitValue(l: (typeof LIMIT_FLAGS)[number], text: string): number {
  const name = `--${l.flag} (or ${envOf(l.flag)})`
  const value =
    l.unit === 'bytes'
      ? parseBytes(text)
      : l.unit === 'duration'
        ? parseDuration(text)
        : l.unit === 'seconds'
          ? /^\d+$/.test(text.trim())
            ? Number(text)
            : ((ms) => (ms === null ? null : ms / 1000))(parseDuration(text))
          : /^\d+$/.test(text.trim())
            ? Number(text)
            : null
  const shown = l.unit === 'count' ? 'a whole number' : l.unit === 'bytes' ? 'a size such as 512KiB or 64MiB' : 'a time such as 30s or 10m'
  if (value === null || !Number.isInteger(value)) throw new UsageError(`${name} must be ${shown}, got ${JSON.stringify(text)}`)
  if (value < l.min || value > l.max) {
    throw new UsageError(`${name} must be from ${formatLimit(l.unit, l.min)} to ${formatLimit(l.unit, l.max)}, got ${JSON.stringify(text)}`)
  }
  return value
}

async function createLogger(level: string): Promise<Logger> {
  // people read a terminal; machines (systemd, docker) read JSON lines, and never load the pretty-printer
  if (!process.stdout.isTTY) return pino({ level })
  const { default: pretty } = await import('pino-pretty')
  return pino({ level }, pretty({ colorize: true, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss' }))
}

/** Addresses a device on the LAN can use, or the one address we are bound to. */
function reachableHosts(host: string | undefined): string[] {
  if (host && host !== '0.0.0.0' && host !== '::') return [host]
  return ['localhost', ...lanAddresses()]
}

/** "2 users, 3 devices, 1 token (/etc/pulseboard.json)", or that it is open. */
function describeAccess(config: AccessConfig, file: string | undefined, enabled: boolean): string {
  if (!enabled) return 'open: no users, everyone may do everything (pulseboard users add)'
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`
  const anonymous = config.anonymous.role ? `, anonymous: ${config.anonymous.role}` : ''
  return `${count(Object.keys(config.users).length, 'user')}, ${count(Object.keys(config.devices).length, 'device')}, ${count(Object.keys(config.tokens).length, 'token')}${anonymous} (${file})`
}

function banner(
  hosts: string[],
  ports: { port: number; mqttPort?: number; mqttsPort?: number },
  secure: boolean,
  memoryBound: number,
  data: string,
  access: string,
  source: string,
  cluster: string | null,
): string {
  const { port, mqttPort, mqttsPort } = ports
  const lan = hosts.find((h) => h !== 'localhost') ?? hosts[0]!
  const [http, ws] = secure ? ['https', 'wss'] : ['http', 'ws']
  const mqttRows: [string, string[]][] =
    mqttPort === undefined
      ? [['MQTT', [`${source}: devices connect there`]]]
      : [
          ['MQTT', hosts.map((h) => `mqtt://${h}:${mqttPort}`)],
          ...(mqttsPort !== undefined ? [['MQTT over TLS', hosts.map((h) => `mqtts://${h}:${mqttsPort}`)] as [string, string[]]] : []),
          ['MQTT over WS', [`${ws}://${lan}:${port}${MQTT_WS_PATH}`]],
        ]
  const rows: [string, string[]][] = [
    ['Dashboard', hosts.map((h) => `${http}://${h}:${port}/`)],
    ...mqttRows,
    ['socket.io', [`${http}://${lan}:${port}  (namespaces / and /live)`]],
    ['Data', [data]],
    ...(cluster ? [['Cluster', [cluster]] as [string, string[]]] : []),
    ['Access', [access]],
    ['Memory bound', [`${(memoryBound / 1024 ** 3).toFixed(1)} GiB more than idle, with these limits (docs/limits.md)`]],
  ]
  const lines = [`Pulseboard ${version} is running`, '']
  for (const [label, values] of rows) values.forEach((v, i) => lines.push(`  ${(i === 0 ? label : '').padEnd(14)}${v}`))
  if (mqttPort === undefined) {
    lines.push('', 'Point your devices at that broker as before; Pulseboard shows what they publish.')
  } else {
    lines.push(
      '',
      'Point a device at the MQTT address above, or try:',
      `  mosquitto_pub -h ${lan} -p ${mqttPort}${access.startsWith('open') ? '' : ' -u <device> -P <password>'} -t devices/demo/telemetry -m '{"temperature":21.5}'`,
      `  npx pulseboard simulate --devices 5${mqttPort === pulseboardDefaults.mqttPort ? '' : ` --url mqtt://localhost:${mqttPort}`}`,
    )
  }
  lines.push('', 'Press Ctrl-C to stop.')
  return lines.join('\n')
}

/** The external broker's options, its password and CA read from their files; a missing file is one line. */
function externalOptions(
  c: Pick<StartConfig, 'brokerUrl' | 'brokerUsername' | 'brokerPassword' | 'brokerPasswordFile' | 'brokerCa' | 'brokerClientId' | 'brokerFilters' | 'brokerShare'>,
): ExternalBrokerOptions {
  const read = (file: string, flag: string) => {
    try {
      return readFileSync(file)
    } catch (err) {
      throw new CliError(`${flag}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`)
    }
  }
  // a password file usually ends with a newline the password does not have
  const password = c.brokerPasswordFile !== undefined ? read(c.brokerPasswordFile, '--broker-password-file').toString('utf8').replace(/\r?\n$/, '') : c.brokerPassword
  if (password !== undefined && c.brokerUsername === undefined) throw new UsageError('a broker password goes with --broker-username (or BROKER_USERNAME)')
  return {
    url: c.brokerUrl!,
    ...(c.brokerUsername !== undefined && { username: c.brokerUsername }),
    ...(password !== undefined && { password }),
    ...(c.brokerCa !== undefined && { ca: read(c.brokerCa, '--broker-ca') }),
    ...(c.brokerClientId !== undefined && { clientId: c.brokerClientId }),
    ...(c.brokerFilters !== undefined && { filters: c.brokerFilters }),
    ...(c.brokerShare !== undefined && { share: c.brokerShare }),
  }
}

export const command: Command = {
  usage,
  async run(argv) {
    const config = readConfig(argv, process.env)
    const logger = await createLogger(config.logLevel)
    const {
      broker, registry, store, sqlite, fanout, app: appLimits, dataDir, noStore, retentionMs, logRetentionMs, configFile, tlsCert, tlsKey,
      brokerUrl, brokerUsername, brokerPassword, brokerPasswordFile, brokerCa, brokerClientId, brokerFilters, brokerShare, commandTimeoutMs, clusterUrl, nodeId, historyUrl, ...rest
    } = config
    const externalBroker = brokerUrl === undefined ? undefined : externalOptions({ brokerUrl, brokerUsername, brokerPassword, brokerPasswordFile, brokerCa, brokerClientId, brokerFilters, brokerShare })
    if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new UsageError('--tls-cert and --tls-key go together (or TLS_CERT and TLS_KEY)')
    const tls = tlsCert !== undefined && tlsKey !== undefined ? { certFile: path.resolve(tlsCert), keyFile: path.resolve(tlsKey) } : undefined
    for (const file of tls ? [tls.certFile, tls.keyFile] : []) {
      if (!existsSync(file)) throw new CliError(`${file}: no such file; make a test pair with \`pulseboard cert\`, or fix --tls-cert/--tls-key`)
    }
    // an explicit --config must exist; the default ./pulseboard.json is read when it does
    const accessFile = configFile !== undefined ? path.resolve(configFile) : existsSync('pulseboard.json') ? path.resolve('pulseboard.json') : undefined
    const readAccess = () => {
      try {
        return accessFile ? loadConfig(accessFile) : undefined
      } catch (err) {
        if (err instanceof ConfigError) throw new CliError(err.message)
        throw err
      }
    }
    let app
    try {
      app = await createPulseboard({
        ...rest,
        ...(externalBroker && { externalBroker }),
        ...(commandTimeoutMs !== undefined && { commandTimeoutMs }),
        ...(clusterUrl !== undefined && { cluster: { url: clusterUrl, ...(nodeId !== undefined && { nodeId }) } }),
        ...(tls && { tls }),
        ...(accessFile && { access: readAccess() }),
        ...broker,
        ...appLimits,
        registry,
        store,
        fanout,
        logger,
        ...(!noStore && { dataDir, sqlite: { ...sqlite, retentionMs, logRetentionMs } }),
        ...(historyUrl !== undefined && { postgres: { url: historyUrl, ...sqlite, retentionMs, logRetentionMs } }),
      })
    } catch (err) {
      // a database that is not ours, is damaged, or cannot be written: its message names the file and the fix
      if (err instanceof StoreOpenError) throw new CliError(err.message)
      if (err instanceof BrokerConnectError) throw new CliError(`--broker: ${err.message}`)
      if (err instanceof Error && err.name === 'ClusterConnectError') throw new CliError(`--cluster: ${err.message}`)
      throw err
    }
    // Whatever still escapes is logged with its stack and counted; one bad input must not end the server for everyone.
    process.on('uncaughtException', (err, origin) => app.uncaught(err, origin))
    process.on('unhandledRejection', (err) => app.uncaught(err, 'unhandledRejection'))
    let ports
    try {
      ports = await app.listen()
    } catch (err) {
      await app.close()
      if (err instanceof PortInUseError) {
        const flag = { mqtt: '--mqtt-port (or MQTT_PORT)', mqtts: '--mqtts-port (or MQTTS_PORT)', http: '--port (or PORT)' }[err.listener]
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
    const data =
      historyUrl !== undefined
        ? `history in ${historyUrl.replace(/\/\/[^@/]*@/, '//')}${noStore ? '' : `; broker state in ${path.resolve(dataDir, DATABASE_FILE)}`}`
        : noStore
          ? 'in memory only (--no-store): a restart forgets it'
          : `${path.resolve(dataDir, DATABASE_FILE)}`
    const accessLine = describeAccess(app.access.config, accessFile, app.access.enabled)
    const cluster = app.nodeId === null ? null : `node ${app.nodeId} on ${clusterUrl?.replace(/\/\/[^@/]*@/, '//')}`
    console.log(banner(reachableHosts(config.host), ports, tls !== undefined, memoryBudget(config).total, data, accessLine, app.source.description, cluster))
    if (!app.access.enabled) {
      logger.warn(`no users: anyone who reaches these ports can read and control every device. Add the first user with: pulseboard users add admin${accessFile ? ` --config ${accessFile}` : ''}`)
    }

    // users, devices and tokens added with \`pulseboard users|devices|tokens\` apply within 2 s; a bad edit keeps the old ones
    const reloadAccess = (why: string) => {
      try {
        const fresh = readAccess()
        if (!fresh) return
        app.reloadAccess(fresh)
        logger.info({ file: accessFile, why }, `access config reloaded: ${describeAccess(fresh, accessFile, app.access.enabled)}`)
      } catch (err) {
        logger.error(`${(err as Error).message}; keeping the access config read before`)
      }
    }
    if (accessFile) watchFile(accessFile, { interval: 1000 }, (now, before) => now.mtimeMs !== before.mtimeMs && reloadAccess('the file changed'))
    process.on('SIGHUP', () => {
      reloadAccess('SIGHUP')
      if (!tls) return
      try {
        app.reloadTls()
        logger.info({ cert: tls.certFile }, 'SIGHUP: certificate reloaded; new connections get it')
      } catch (err) {
        logger.error({ err }, `SIGHUP: cannot read ${tls.certFile} or ${tls.keyFile}; keeping the certificate loaded before`)
      }
    })

    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        process.off('SIGINT', stop)
        process.off('SIGTERM', stop)
        // a second Ctrl-C during a slow shutdown quits at once
        process.once('SIGINT', () => process.exit(130))
        logger.info(`${signal}: shutting down`)
        if (accessFile) unwatchFile(accessFile)
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
