import { createFleet } from '../simulators/fleet.ts'
import { FORMAT_NAMES, type FormatName } from '../simulators/formats.ts'
import { CliError, UsageError, duration, integer, parse, type Command } from './args.ts'

const FORMATS = [...FORMAT_NAMES, 'mixed'] as const

const usage = `Usage: pulseboard simulate [options]

Runs simulated devices, each its own MQTT connection with a last will, speaking
real firmware formats. They answer commands: a relay switches and reports back,
"interval" changes how often they publish. Ctrl-C disconnects them cleanly.

Options:
  -n, --devices <n>       how many devices (default 5)
  -i, --interval <time>   publish interval per device: 500ms, 1s, 2m (default 1s)
  -f, --format <name>     ${FORMATS.join(', ')} (default mixed)
      --url <url>[,<url>...]
                          broker (env MQTT_URL, default mqtt://127.0.0.1:1883); several,
                          separated by commas, are nodes of one cluster: each device connects
                          to the first and, whenever its connection drops, to the next in turn
                          (1 s later), so it fails over when its node dies. They share scheme,
                          path and credentials; write a comma in a password as %2C
      --prefix <text>     device id prefix, to run two fleets at once (default sim)
      --keepalive <s>     MQTT keepalive; a killed device shows offline after 1.5x (default 10)
      --mqtt <3.1.1|5>    MQTT version (default 3.1.1; 4 means 3.1.1). With 5, every publish
                          carries a content type and the user properties model and firmware,
                          and a command with a response topic is answered there with its
                          correlation data: {"ok":true,"name":...,"value":...}. The embedded
                          broker speaks 3.1.1 only: for 5, point --url at Mosquitto, which
                          "pulseboard start --broker" reads
  -h, --help              show this help

Examples:
  pulseboard simulate --devices 20 --interval 1s --format mixed
  pulseboard simulate --mqtt 5 --url mqtt://127.0.0.1:1883   # against Mosquitto
  pulseboard simulate --url mqtt://10.0.0.1:1883,mqtt://10.0.0.2:1883   # a cluster`

export const command: Command = {
  usage,
  async run(argv) {
    const { values } = parse(argv, {
      devices: { type: 'string', short: 'n' },
      interval: { type: 'string', short: 'i' },
      format: { type: 'string', short: 'f' },
      // repeated only to say that several go in one, comma-separated
      url: { type: 'string', multiple: true },
      prefix: { type: 'string' },
      keepalive: { type: 'string' },
      mqtt: { type: 'string' },
    })
    const devices = integer(values.devices ?? '5', '--devices', 1, 100_000)
    const intervalMs = duration(values.interval, '--interval', 1000)
    const format = values.format ?? 'mixed'
    if (!(FORMATS as readonly string[]).includes(format)) {
      throw new UsageError(`--format must be one of ${FORMATS.join(', ')}, got ${JSON.stringify(format)}`)
    }
    const keepalive = integer(values.keepalive ?? '10', '--keepalive', 1, 65535)
    if ((values.url?.length ?? 0) > 1) throw new UsageError('--url is given once; several brokers go in it separated by commas: --url mqtt://a:1883,mqtt://b:1883')
    const url = values.url?.[0] ?? process.env.MQTT_URL ?? 'mqtt://127.0.0.1:1883'
    const urls = url.split(',').map((u) => u.trim())
    if (urls.some((u) => u === '')) throw new UsageError(`--url has an empty broker URL, got ${JSON.stringify(url)}`)
    const protocolVersion = mqttVersion(values.mqtt)

    let fleet
    try {
      fleet = createFleet({
        // one URL as it always was; several for failover
        url: urls.length === 1 ? urls[0]! : urls,
        devices,
        intervalMs,
        format: format as FormatName | 'mixed',
        keepalive,
        protocolVersion,
        ...(values.prefix !== undefined && { prefix: values.prefix }),
      })
    } catch (err) {
      throw new UsageError((err as Error).message)
    }
    const tty = process.stderr.isTTY
    const line = () => {
      const s = fleet.status()
      return `${s.connected}/${s.devices} devices connected  ${s.messagesPerSecond.toFixed(0)} msg/s  ${s.published} published`
    }
    const speaking = protocolVersion === 5 ? ' (MQTT 5)' : ''
    const failover = urls.length > 1 ? ` (failing over to ${urls.slice(1).join(', ')})` : ''
    process.stderr.write(`Connecting ${devices} ${format} devices${speaking} to ${urls[0]}${failover} ...\n`)
    try {
      await fleet.start()
    } catch (err) {
      const refusal = protocolVersion === 5 ? refusedVersion(err) : null
      if (refusal !== null) {
        throw new CliError(
          `the broker at ${url} speaks only MQTT 3.1.1 (it refused MQTT 5: ${refusal}); ` +
            `use --mqtt 3.1.1, or run Pulseboard on Mosquitto with "pulseboard start --broker" (docs/devices.md)`,
        )
      }
      throw new CliError(`${(err as Error).message}; is "pulseboard start" running? Use --url to point elsewhere`)
    }
    process.stderr.write(`All connected. Publishing every ${intervalMs} ms; Ctrl-C to stop.\n`)
    // a live status line on a terminal, a line every 10 s in a log
    const timer = setInterval(() => process.stderr.write(tty ? `\r\x1b[K${line()}` : `${line()}\n`), tty ? 500 : 10_000)

    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve)
      process.once('SIGTERM', resolve)
    })
    clearInterval(timer)
    process.stderr.write(`${tty ? '\n' : ''}Disconnecting ...\n`)
    await fleet.close()
    process.stderr.write(`Stopped. ${line()}\n`)
  },
}

/** `--mqtt`: 3.1.1 (also written 4, its protocol level) or 5. */
function mqttVersion(value: string | undefined): 4 | 5 {
  switch (value?.trim()) {
    case undefined:
    case '3.1.1':
    case '4':
      return 4
    case '5':
    case '5.0':
      return 5
    default:
      throw new UsageError(`--mqtt must be 3.1.1 or 5, got ${JSON.stringify(value)}`)
  }
}

/**
 * The broker refused the protocol version: CONNACK return code 1 (3.1.1, "Unacceptable protocol
 * version", what aedes answers an MQTT 5 client) or reason code 0x84 (MQTT 5, "Unsupported Protocol Version").
 */
function refusedVersion(err: unknown): string | null {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (code === 1 || code === 0x84) return e.message.replace(/^Connection refused: /, '') || `CONNACK code ${code}`
  }
  return null
}
