import readline from 'node:readline'
import { CliError, UsageError, integer, parse, serverUrl, type Command } from './args.ts'
import { connectLive, type LiveClient } from './connect.ts'
import { topicError, type Ack, type PublishRequest } from '../protocol/index.ts'

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

Examples:
  pulseboard send "hello"
  pulseboard send --topic devices/relay-1/commands '{"name":"relay","value":1}'`

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
    const qos = integer(values.qos ?? '0', '--qos', 0, 2) as 0 | 1 | 2
    const toMessage = (text: string): PublishRequest | string =>
      topic === undefined ? text : { topic, payload: text, qos, retain: values.retain ?? false }

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
