import type { Command } from './args.ts'

export const simulate: Command = {
  name: 'simulate',
  summary: 'run simulated devices',
  usage: 'Usage: pulseboard simulate [options]',
  async run() {},
}
