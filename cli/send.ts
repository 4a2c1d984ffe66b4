import readline from 'node:readline'
import { CliError, UsageError, integer, parse, serverUrl, type Command } from './args.ts'
import { connectLive, type LiveClient } from './connect.ts'
import {
  MessagePropertiesSchema,
  topicError,
  type Ack,
  type MessageProperties,
  type PublishRequest,
} from '../protocol/index.ts'

const PROMPT = 'message to send : '

const usage = `Usage: pulseboard send [options] [text...]

Sends text to every socket client and MQTT subscriber. With text, sends it once
and exits; without, prompts "${PROMPT}" for one message per line.

Options:
  -t, --topic <topic>  publish to this MQTT topic (e.g. a device command)
                       instead of the chat topic
      --qos <0|1|2>    QoS of the MQTT publish (default 0; with --topic)
      --retain         ask the broker to retain it (with --topic)
      --url <url>      Pulseboard server (env PULSEBOARD_URL, default http://localhost:5000)
      --token <token>  an API token, when the server has users (env PULSEBOARD_TOKEN)
  -h, --help           show this help

MQTT 5 properties (with --topic; only an MQTT 5 broker, "pulseboard start --broker",
carries them: the embedded one refuses them with E_MQTT5_REQUIRED):
      --property <name=value>    a user property; repeat for several, a name
                                 given twice keeps both values in order
      --content-type <mime>      content type of the payload, e.g. application/json
      --response-topic <topic>   where the receiver should send its answer
      --correlation-data <text>  sent back with the answer, to match it (UTF-8)
      --expiry <seconds>         message expiry interval: subscribers away longer
                                 never get it

Examples:
  pulseboard send "hello"
  pulseboard send --topic devices/relay-1/commands '{"name":"relay","value":1}'
  pulseboard send --topic devices/relay-1/commands --content-type application/json \\
    --response-topic replies/me --correlation-data req-1 --property origin=cli \\
    '{"name":"relay","value":1}'`

export const command: Command = {
  usage,
  async run(argv) {
    const { values, positionals } = parse(
      argv,
      {
        topic: { type: 'string', short: 't' },
        qos: { type: 'string' },
        retain: { type: 'boolean' },
        url: { type: 'string' },
        token: { type: 'string' },
        property: { type: 'string', multiple: true },
        'content-type': { type: 'string' },
        'response-topic': { type: 'string' },
        'correlation-data': { type: 'string' },
        expiry: { type: 'string' },
      },
      true,
    )
    const url = serverUrl(values.url)
    const topic = values.topic
    if (topic !== undefined) {
      const problem = topicError(topic)
      if (problem) throw new UsageError(`--topic: ${problem}`)
    } else if (values.qos !== undefined || values.retain) {
      throw new UsageError('--qos and --retain go with --topic; chat text is sent at QoS 0')
    }
    const properties = publishProperties(values)
    if (topic === undefined && properties !== undefined) {
      throw new UsageError(`${PROPERTY_FLAGS.join(', ')} go with --topic; chat text has no MQTT 5 properties`)
    }
    const qos = integer(values.qos ?? '0', '--qos', 0, 2) as 0 | 1 | 2
    const toMessage = (text: string): PublishRequest | string =>
      topic === undefined
        ? text
        : { topic, payload: text, qos, retain: values.retain ?? false, ...(properties !== undefined && { properties }) }

    const token = values.token ?? process.env.PULSEBOARD_TOKEN
    const socket = await connectLive(url, token ? { token } : {})
    try {
      if (positionals.length > 0) {
        const error = await deliver(socket, toMessage(positionals.join(' ')))
        if (error) throw new CliError(error)
        return 0
      }
      return await prompt(socket, toMessage)
    } finally {
      socket.disconnect()
    }
  },
}

const PROPERTY_FLAGS = ['--property', '--content-type', '--response-topic', '--correlation-data', '--expiry']

interface PropertyFlags {
  property?: string[] | undefined
  'content-type'?: string | undefined
  'response-topic'?: string | undefined
  'correlation-data'?: string | undefined
  expiry?: string | undefined
}

/** The MQTT 5 properties the flags ask for, checked as the server will check them; undefined for none. */
function publishProperties(flags: PropertyFlags): MessageProperties | undefined {
  const properties: MessageProperties = {}
  if (flags.property !== undefined) {
    // a Map, so a name such as __proto__ is a name like any other
    const user = new Map<string, string[]>()
    for (const pair of flags.property) {
      const at = pair.indexOf('=')
      if (at < 0) throw new UsageError(`--property must be name=value, got ${JSON.stringify(pair)}`)
      if (at === 0) throw new UsageError(`--property needs a name before =, got ${JSON.stringify(pair)}`)
      const name = pair.slice(0, at)
      user.set(name, [...(user.get(name) ?? []), pair.slice(at + 1)])
    }
    properties.userProperties = Object.fromEntries([...user].map(([name, values]) => [name, values.length === 1 ? values[0]! : values]))
  }
  const contentType = flags['content-type']
  if (contentType !== undefined) {
    if (contentType.trim() === '') throw new UsageError('--content-type must not be empty')
    properties.contentType = contentType
  }
  const responseTopic = flags['response-topic']
  if (responseTopic !== undefined) {
    const problem = topicError(responseTopic)
    if (problem) throw new UsageError(`--response-topic: ${problem}`)
    properties.responseTopic = responseTopic
  }
  const correlation = flags['correlation-data']
  if (correlation !== undefined) properties.correlationData = Buffer.from(correlation, 'utf8').toString('base64')
  if (flags.expiry !== undefined) properties.messageExpiryInterval = integer(flags.expiry, '--expiry', 0, 0xffff_ffff)
  if (Object.keys(properties).length === 0) return undefined
  // the server's own bounds (lengths, counts), said here before anything is sent
  const checked = MessagePropertiesSchema.safeParse(properties)
  if (!checked.success) {
    const issue = checked.error.issues[0]!
    throw new UsageError(`MQTT 5 properties: ${[flagOf(issue.path), issue.message].filter(Boolean).join(': ')}`)
  }
  return properties
}

/** Which flag a schema issue is about, for the message. */
function flagOf(path: readonly PropertyKey[]): string {
  switch (path[0]) {
    case 'userProperties':
      return path.length > 1 ? `--property ${String(path[1])}` : '--property'
    case 'contentType':
      return '--content-type'
    case 'responseTopic':
      return '--response-topic'
    case 'correlationData':
      return '--correlation-data'
    default:
      return ''
  }
}

/** Sends one message and waits for the server's acknowledgement; returns an error line or null. */
async function deliver(socket: LiveClient, message: PublishRequest | string): Promise<string | null> {
  let ack: Ack
  try {
    ack = await socket.timeout(5000).emitWithAck('message', message)
  } catch {
    return 'the server did not acknowledge within 5 s; is it still running?'
  }
  return ack.ok ? null : `${ack.error.code}: ${ack.error.message}`
}

/** The seed's loop: one message per line until end of input. */
async function prompt(socket: LiveClient, toMessage: (text: string) => PublishRequest | string): Promise<number> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout, prompt: PROMPT })
  let failures = 0
  rl.prompt()
  for await (const line of rl) {
    if (line.length > 0) {
      const error = await deliver(socket, toMessage(line))
      if (error) {
        failures++
        console.error(`pulseboard send: ${error}`)
      }
    }
    rl.prompt()
  }
  if (process.stdout.isTTY) process.stdout.write('\n')
  return failures > 0 ? 1 : 0
}
