import { hashSecret } from '../auth/secrets.ts'
import { NAME_PATTERN } from '../auth/config.ts'
import { ROLES, type Role } from '../protocol/access.ts'
import { CliError, UsageError, parse, type Command } from './args.ts'
import { PICKED_UP, configPath, readForChange, readPassword, write } from './config-file.ts'


const usage = `Usage: pulseboard users add <name> [--role <role>] [--password-stdin]
       pulseboard users remove <name>
       pulseboard users list

People who log in to the dashboard and the API (and may use MQTT with the same
name and password). Once a user exists, nobody gets in without credentials.

Roles:
  admin     everything, including users
  operator  the dashboard and API, and sends messages and commands
  viewer    the dashboard and API, read-only
  device    MQTT only (for a device, "pulseboard devices add" makes one for you)

Options:
      --role <role>     the user's role (default admin for the first user, else viewer)
      --password-stdin  read the password from the first line of stdin instead of asking
      --config <file>   the config file (env PULSEBOARD_CONFIG, default ./pulseboard.json)
  -h, --help            show this help

Examples:
  pulseboard users add admin
  echo "$PASSWORD" | pulseboard users add grafana --role viewer --password-stdin`

export const command: Command = {
  usage,
  async run(argv) {
    const { values, positionals } = parse(argv, { role: { type: 'string' }, 'password-stdin': { type: 'boolean' }, config: { type: 'string' } }, true)
    const [action, name, ...extra] = positionals
    if (extra.length > 0) throw new UsageError(`unexpected ${JSON.stringify(extra[0])}`)
    const file = configPath(values.config)
    const config = readForChange(file)
    if (action === 'list') {
      const users = Object.entries(config.users)
      if (users.length === 0) console.log(`no users in ${file}: Pulseboard runs open. Add one with: pulseboard users add <name>`)
      for (const [user, { role }] of users) console.log(`${user.padEnd(24)} ${role}`)
      return 0
    }
    if (action !== 'add' && action !== 'remove') throw new UsageError('say add, remove or list', true)
    if (name === undefined) throw new UsageError(`users ${action} needs a name`)
    if (!NAME_PATTERN.test(name)) throw new UsageError(`${JSON.stringify(name)}: a name is 1 to 64 letters, digits, ".", "_" or "-"`)
    if (action === 'remove') {
      if (!(name in config.users)) throw new CliError(`${file} has no user ${name}`)
      delete config.users[name]
      write(file, config)
      console.log(`removed user ${name} from ${file}; their sessions end. ${PICKED_UP}`)
      return 0
    }
    const role = (values.role ?? (Object.keys(config.users).length === 0 ? 'admin' : 'viewer')) as Role
    if (!ROLES.includes(role)) throw new UsageError(`--role must be one of ${ROLES.join(', ')}`)
    if (name in config.devices) throw new CliError(`${name} is a device in ${file}; choose another name`)
    const existed = name in config.users
    const password = await readPassword(values['password-stdin'] ?? false)
    // the same floor as at a terminal: a script's password is no less guessable
    if (password.length < 8) throw new CliError('the password must have at least 8 characters; nothing was changed')
    config.users[name] = { role, password: await hashSecret(password) }
    write(file, config)
    console.log(`${existed ? 'updated' : 'added'} user ${name} (${role}) in ${file}. ${PICKED_UP}`)
    return 0
  },
}
