#!/usr/bin/env -S node --max-semi-space-size=1
// The `pulseboard` command: plain JavaScript once built (dist/app/pulseboard.js); the tests run it through tsx.
// A 1 MB young generation keeps an idle server under 80 MB (docs/benchmarks.md, "Footprint").
import { CliError, UsageError, type Command } from './args.ts'
import { version } from '../server/package.ts'

/**
 * Every subcommand, loaded only when it runs: `pulseboard send` never loads the
 * broker, and nothing loads the benchmark or its browser until it is asked for.
 */
const commands: Record<string, { summary: string; load: () => Promise<{ command: Command }> }> = {
  start: { summary: 'start the broker, bridge and dashboard', load: () => import('./start.ts') },
  send: { summary: 'send messages to every socket client and MQTT device', load: () => import('./send.ts') },
  receive: { summary: 'print messages as they arrive', load: () => import('./receive.ts') },
  simulate: { summary: 'run simulated devices (Tasmota, ESPHome, Homie, generic)', load: () => import('./simulate.ts') },
  users: { summary: 'add, remove and list the people who may log in', load: () => import('./users.ts') },
  devices: { summary: 'give devices MQTT credentials, with the lines to paste into their firmware', load: () => import('./devices.ts') },
  tokens: { summary: 'create and revoke API tokens for scripts and the CLIs', load: () => import('./tokens.ts') },
  cert: { summary: 'write a self-signed TLS certificate for testing', load: () => import('./cert.ts') },
  bench: { summary: 'measure latency, throughput, CPU and memory, side by side', load: () => import('./bench.ts') },
}

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((name) => name.length))
  return [
    `Usage: pulseboard <command> [options]`,
    ``,
    `Live IoT dashboard with its own MQTT broker.`,
    ``,
    `Commands:`,
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    ``,
    `Run "pulseboard <command> --help" for the options of a command, "pulseboard --version" for the version.`,
  ].join('\n')
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage())
    return name === undefined ? 2 : 0
  }
  if (name === '--version' || name === '-v') {
    console.log(version)
    return 0
  }
  const entry = Object.hasOwn(commands, name) ? commands[name] : undefined
  if (!entry) {
    console.error(`pulseboard: unknown command ${JSON.stringify(name)}\n\n${usage()}`)
    return 2
  }
  const { command } = await entry.load()
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(command.usage)
    return 0
  }
  try {
    return (await command.run(rest)) ?? 0
  } catch (err) {
    if (err instanceof UsageError) {
      const help = err.showUsage ? `\n\n${command.usage}` : `\nRun "pulseboard ${name} --help" for its options.`
      console.error(`pulseboard ${name}: ${err.message}${help}`)
      return 2
    }
    if (err instanceof CliError) {
      console.error(`pulseboard ${name}: ${err.message}`)
      return 1
    }
    // unexpected: still one line for the person, the stack only when asked for
    console.error(`pulseboard ${name}: ${(err as Error).message ?? String(err)}`)
    if (process.env.PULSEBOARD_DEBUG) console.error(err)
    return 1
  }
}

const code = await main(process.argv.slice(2))
// A command is done when it returns; a library's stray timer (mqtt.js keeps its
// connect timeout after a refused connection) must not hold the terminal.
// Exit once what was printed has been written out.
process.stdout.write('', () => process.stderr.write('', () => process.exit(code)))
