import { CliError, UsageError, type Command } from './args.ts'
import { start } from './start.ts'
import { send } from './send.ts'
import { receive } from './receive.ts'
import { simulate } from './simulate.ts'
import { bench } from './bench.ts'
import pkg from '../package.json' with { type: 'json' }

const commands: Command[] = [start, send, receive, simulate, bench]

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length))
  return [
    `Usage: pulseboard <command> [options]`,
    ``,
    `Live IoT dashboard with its own MQTT broker.`,
    ``,
    `Commands:`,
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    ``,
    `Run "pulseboard <command> --help" for the options of a command.`,
  ].join('\n')
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage())
    return name === undefined ? 2 : 0
  }
  if (name === '--version' || name === '-v') {
    console.log(pkg.version)
    return 0
  }
  const command = commands.find((c) => c.name === name)
  if (!command) {
    console.error(`pulseboard: unknown command ${JSON.stringify(name)}\n\n${usage()}`)
    return 2
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(command.usage)
    return 0
  }
  try {
    return (await command.run(rest)) ?? 0
  } catch (err) {
    if (err instanceof UsageError) {
      const help = err.showUsage ? `\n\n${command.usage}` : `\nRun "pulseboard ${command.name} --help" for its options.`
      console.error(`pulseboard ${command.name}: ${err.message}${help}`)
      return 2
    }
    if (err instanceof CliError) {
      console.error(`pulseboard ${command.name}: ${err.message}`)
      return 1
    }
    // unexpected: still one line for the person, the stack only when asked for
    console.error(`pulseboard ${command.name}: ${(err as Error).message ?? String(err)}`)
    if (process.env.PULSEBOARD_DEBUG) console.error(err)
    return 1
  }
}

const code = await main(process.argv.slice(2))
// A command is done when it returns; a library's stray timer (mqtt.js keeps its
// connect timeout after a refused connection) must not hold the terminal.
// Exit once what was printed has been written out.
process.stdout.write('', () => process.stderr.write('', () => process.exit(code)))
