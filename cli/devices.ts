import { lanAddresses } from './hosts.ts'
import { hashSecret, newSecret } from '../auth/secrets.ts'
import { NAME_PATTERN } from '../auth/config.ts'
import { CliError, UsageError, integer, parse, type Command } from './args.ts'
import { PICKED_UP, configPath, readForChange, write } from './config-file.ts'

const usage = `Usage: pulseboard devices add <id> [--host <host>] [--port <port>]
       pulseboard devices remove <id>
       pulseboard devices list

MQTT credentials for devices. "add" makes a password, keeps only its hash, and
prints the lines to paste into Tasmota, ESPHome, the Arduino sketch and
mosquitto_pub. The password is shown once.

A device may read and write its own topics: devices/<id>/#, tele|cmnd|stat/<id>/#,
<id>/#, homie/<id>/# and homeassistant/+/<id>/# (docs/security.md).

Options:
      --host <host>    the address devices use to reach this server (default: this
                       machine's first LAN address)
      --port <port>    its MQTT port (default 1883)
      --config <file>  the config file (env PULSEBOARD_CONFIG, default ./pulseboard.json)
  -h, --help           show this help`

export const command: Command = {
  usage,
  async run(argv) {
    const { values, positionals } = parse(argv, { host: { type: 'string' }, port: { type: 'string' }, config: { type: 'string' } }, true)
    const [action, id, ...extra] = positionals
    if (extra.length > 0) throw new UsageError(`unexpected ${JSON.stringify(extra[0])}`)
    const file = configPath(values.config)
    const config = readForChange(file)
    if (action === 'list') {
      const devices = Object.entries(config.devices)
      if (devices.length === 0) console.log(`no device credentials in ${file}`)
      for (const [device, { created }] of devices) console.log(`${device.padEnd(32)} ${created ?? ''}`)
      return 0
    }
    if (action !== 'add' && action !== 'remove') throw new UsageError('say add, remove or list', true)
    if (id === undefined) throw new UsageError(`devices ${action} needs a device id`)
    if (!NAME_PATTERN.test(id)) throw new UsageError(`${JSON.stringify(id)}: a device id is 1 to 64 letters, digits, ".", "_" or "-"`)
    if (action === 'remove') {
      if (!(id in config.devices)) throw new CliError(`${file} has no device ${id}`)
      delete config.devices[id]
      write(file, config)
      console.log(`removed device ${id} from ${file}; its next connect is refused. ${PICKED_UP}`)
      return 0
    }
    if (id in config.users) throw new CliError(`${id} is a user in ${file}; choose another id`)
    const host = values.host ?? lanAddresses()[0] ?? 'localhost'
    const port = integer(values.port ?? '1883', '--port', 1, 65535)
    const password = newSecret(18)
    const existed = id in config.devices
    config.devices[id] = { password: await hashSecret(password), created: new Date().toISOString() }
    write(file, config)
    console.log(`${existed ? 'new password for' : 'added'} device ${id} in ${file}. ${PICKED_UP}
The password is shown only now.

Tasmota (console):
  Backlog MqttHost ${host}; MqttPort ${port}; MqttUser ${id}; MqttPassword ${password}; Topic ${id}

ESPHome (YAML):
  mqtt:
    broker: ${host}
    port: ${port}
    username: ${id}
    password: "${password}"
    topic_prefix: ${id}

Arduino sketch (examples/esp32-dht22):
  const char* const MQTT_HOST = "${host}";
  const uint16_t MQTT_PORT = ${port};
  const char* const MQTT_USER = "${id}";
  const char* const MQTT_PASSWORD = "${password}";
  const char* const DEVICE_ID = "${id}";

mosquitto_pub:
  mosquitto_pub -h ${host} -p ${port} -u ${id} -P '${password}' -i ${id} -t devices/${id}/telemetry -m '{"temperature":21.5}'`)
    return 0
  },
}
