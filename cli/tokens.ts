import { randomBytes } from 'node:crypto'
import { hashSecret, newSecret } from '../auth/secrets.ts'
import { NAME_PATTERN } from '../auth/config.ts'
import { TOKEN_PREFIX } from '../auth/access.ts'
import { ROLES } from '../protocol/access.ts'
import { CliError, UsageError, parse, type Command } from './args.ts'
import { PICKED_UP, configPath, readForChange, write } from './config-file.ts'

/** A token is for the API and the CLIs: the device role is MQTT only. */
const TOKEN_ROLES = ROLES.filter((r) => r !== 'device')

const usage = `Usage: pulseboard tokens create --role <role> [--name <name>]
       pulseboard tokens revoke <name>
       pulseboard tokens list

API tokens for scripts, Prometheus and the CLIs: send one as
"Authorization: Bearer <token>", or give it to pulseboard send/receive as --token
or PULSEBOARD_TOKEN. The token is shown once; only its hash is kept.

Options:
      --role <role>    admin, operator (may send) or viewer (read-only)
      --name <name>    what the token is for (default: a random name)
      --config <file>  the config file (env PULSEBOARD_CONFIG, default ./pulseboard.json)
  -h, --help           show this help

Example:
  pulseboard tokens create --role viewer --name prometheus`

export const command: Command = {
  usage,
  async run(argv) {
    const { values, positionals } = parse(argv, { role: { type: 'string' }, name: { type: 'string' }, config: { type: 'string' } }, true)
    const [action, name, ...extra] = positionals
    if (extra.length > 0) throw new UsageError(`unexpected ${JSON.stringify(extra[0])}`)
    const file = configPath(values.config)
    const config = readForChange(file)
    if (action === 'list') {
      const tokens = Object.entries(config.tokens)
      if (tokens.length === 0) console.log(`no tokens in ${file}`)
      for (const [token, { role, created }] of tokens) console.log(`${token.padEnd(24)} ${role.padEnd(9)} ${created ?? ''}`)
      return 0
    }
    if (action === 'revoke') {
      if (name === undefined) throw new UsageError('tokens revoke needs the token name')
      if (!(name in config.tokens)) throw new CliError(`${file} has no token ${name}`)
      delete config.tokens[name]
      write(file, config)
      console.log(`revoked token ${name}. ${PICKED_UP}`)
      return 0
    }
    if (action !== 'create') throw new UsageError('say create, revoke or list', true)
    if (name !== undefined) throw new UsageError('give the name with --name')
    const role = TOKEN_ROLES.find((r) => r === values.role)
    if (role === undefined) throw new UsageError(`--role must be one of ${TOKEN_ROLES.join(', ')}`)
    const tokenName = values.name ?? `token-${randomBytes(3).toString('hex')}`
    if (!NAME_PATTERN.test(tokenName)) throw new UsageError(`--name: 1 to 64 letters, digits, ".", "_" or "-"`)
    if (tokenName in config.tokens) throw new CliError(`${file} already has a token ${tokenName}; revoke it first or choose another --name`)
    const secret = newSecret(24)
    config.tokens[tokenName] = { role, secret: await hashSecret(secret), created: new Date().toISOString() }
    write(file, config)
    console.log(`created token ${tokenName} (${role}) in ${file}. ${PICKED_UP}
It is shown only now:

  ${TOKEN_PREFIX}${tokenName}.${secret}`)
    return 0
  },
}
