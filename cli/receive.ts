import { UsageError, parse, serverUrl, type Command } from './args.ts'
import { connectLive } from './connect.ts'
import { filterError, type Envelope } from '../protocol/index.ts'

const usage = `Usage: pulseboard receive [options]

Prints every message as it arrives: "receive message : <text>", as the seed's
receiver does, or one JSON envelope per line with --json.

Options:
  -t, --topic <filter>  only topics matching this MQTT filter (+ and # wildcards);
                        repeat for several (default: everything but $SYS)
      --json            print each /live envelope whole, one JSON object a line
                        (topic, payload, ts, source, clientId, qos, retain, encoding,
                        and the MQTT 5 properties when it has any), for jq
      --url <url>       Pulseboard server (env PULSEBOARD_URL, default http://localhost:5000)
      --token <token>   an API token, when the server has users (env PULSEBOARD_TOKEN)
  -h, --help            show this help

Examples:
  pulseboard receive
  pulseboard receive --json --topic 'devices/+/telemetry' | jq .payload
  pulseboard receive --json | jq -c 'select(.properties.contentType == "application/json")'`

export const command: Command = {
  usage,
  async run(argv) {
    const { values } = parse(argv, {
      topic: { type: 'string', short: 't', multiple: true },
      json: { type: 'boolean' },
      url: { type: 'string' },
      token: { type: 'string' },
    })
    const url = serverUrl(values.url)
    const filters = values.topic ?? []
    for (const filter of filters) {
      const problem = filterError(filter)
      if (problem) throw new UsageError(`--topic ${JSON.stringify(filter)}: ${problem}`)
    }
    const format = values.json
      ? (e: Envelope) => JSON.stringify(e)
      : (e: Envelope) => `receive message : ${e.payload}`
    // one write per line: a pipe (jq, grep --line-buffered) gets each line as it arrives, and
    // JSON.stringify escapes newlines, so a payload with them still makes one line
    const print = (e: Envelope) => {
      process.stdout.write(format(e) + '\n')
    }
    // `receive | head` closes the pipe; that is a normal way to stop
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(0)
    })

    // filters go in the handshake, so they hold from the first message and after every reconnect
    const token = values.token ?? process.env.PULSEBOARD_TOKEN
    const socket = await connectLive(url, { ...(token && { token }), ...(filters.length > 0 && { view: { filters } }) })
    socket.on('message', print)
    socket.on('messages', (batch) => batch.forEach(print))
    socket.io.on('reconnect', () => console.error('pulseboard receive: reconnected'))
    socket.on('disconnect', (reason) => {
      if (reason === 'io client disconnect') return
      console.error(`pulseboard receive: connection lost (${reason}); reconnecting`)
      // the server closed it on purpose (its access rules changed): socket.io leaves the reconnect to us
      if (reason === 'io server disconnect') setTimeout(() => socket.connect(), 1000)
    })
    socket.on('connect_error', (err) => {
      const code = (err as { data?: { code?: unknown } }).data?.code
      if (typeof code === 'string') console.error(`pulseboard receive: refused: ${code}: ${err.message}`)
    })

    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve)
      process.once('SIGTERM', resolve)
    })
    socket.disconnect()
  },
}
